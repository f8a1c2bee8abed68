"""bench.gpu_epoch on the CPU: a tiny recipe timed in process and run through a real worker, and the
JSON's figures consistent with each other."""

from __future__ import annotations

import json
import os

import pytest

from bench.gpu_epoch import child_cpu_s, epoch_ends, main, parse_args


def test_epoch_ends_are_dated_by_the_stream_and_skip_train_records():
    started = 1_700_000_000.0
    records = [
        ("1700000001000-0", {"kind": "status", "status": "running"}),
        ("1700000002500-0", {"kind": "train", "step": 25}),
        ("1700000004000-0", {"kind": "eval", "epoch": 1, "split": "val"}),
        ("1700000006000-1", {"kind": "eval", "epoch": 2, "split": "val"}),
        ("1700000006250-0", {"kind": "eval", "epoch": 2, "split": "test"}),
    ]
    ends = epoch_ends(records, started)
    assert [(e["epoch"], e["split"]) for e in ends] == [(1, "val"), (2, "val"), (2, "test")]
    assert [e["after_claim_s"] for e in ends] == pytest.approx([4.0, 6.0, 6.25])


def test_child_cpu_seconds_read_from_proc():
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("no /proc")
    sum(i * i for i in range(300_000))  # some CPU of our own
    assert child_cpu_s(os.getpid()) > 0
    assert child_cpu_s(2**22 + 12345) is None  # no such process


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--through-worker"], "needs --data-dir"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--set", "no_such_field=1"], "no_such_field"),
        (["--through-worker", "--worker-only", "--data-dir", "d"], "not allowed with"),
    ],
)
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_tiny_recipe_in_process_and_through_a_worker(mnist_dir, tmp_path):
    out = tmp_path / "gpu_epoch.json"
    argv = [
        "--data-dir", mnist_dir, "--device", "cpu", "--preset", "quick", "--threads", "1",
        "--set", "hidden=[40,40]", "--set", "epochs=1", "--epochs", "1", "--through-worker",
        "--out", str(out),
    ]  # fmt: skip
    result = main(argv)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["command"] and result["commit"] is not None
    assert result["config"]["hidden"] == [40, 40] and result["config"]["epochs"] == 1

    # In process: one epoch, the whole (one-epoch) recipe, on one thread.
    assert result["device"] == "cpu" and result["threads"] == 1
    assert result["epochs_timed"] == 1 and result["whole_recipe_timed"]
    (epoch_s,), (epoch_cpu_s,) = result["seconds_per_epoch"], result["cpu_seconds_per_epoch"]
    assert epoch_s > 0 and epoch_cpu_s > 0
    assert result["median_epoch_s"] == epoch_s and result["median_epoch_cpu_s"] == epoch_cpu_s
    # The timed span holds the epoch and the test evaluation after it; the process's CPU holds all.
    assert result["timed_s"] >= epoch_s and result["timed_cpu_s"] >= epoch_cpu_s
    assert result["setup_s"] > 0 and result["setup_cpu_s"] > 0
    cpu = result["process_cpu_s"]
    assert cpu["user"] + cpu["system"] >= result["setup_cpu_s"] + result["timed_cpu_s"]
    assert result["projected_recipe_s"] == pytest.approx(epoch_s)
    assert 0 <= result["test_error_scan"] <= 1 and 0 <= result["test_error_softmax"] <= 1

    # Through the worker: the same recipe, from submit to succeeded.
    worker = result["through_worker"]
    assert worker["status"] == "succeeded" and worker["attempts"] == 1
    assert worker["epochs"] == 1 and worker["steps"] > 0
    assert worker["worker_threads"] == 1 and worker["run_provenance"]["cpu_threads"] == 1
    assert 0 <= worker["queue_wait_s"] < worker["submit_to_finished_s"]
    assert worker["submit_to_finished_s"] >= worker["worker_attempt_s"] > 0
    assert worker["submit_to_finished_recorded_s"] == pytest.approx(
        worker["queue_wait_s"] + worker["worker_attempt_s"], abs=0.05
    )
    assert worker["worker_cpu_s"] > 0
    ends = worker["epoch_ends"]
    assert [(e["epoch"], e["split"]) for e in ends] == [(1, "val"), (1, "test")]
    times = [e["after_claim_s"] for e in ends]
    # Stream ids are whole milliseconds of Redis's clock; the attempt ends after the test evaluation.
    assert 0 < times[0] <= times[1] <= worker["worker_attempt_s"] + 0.01
    assert worker["median_epoch_s"] is None  # one epoch: no gap between two epochs' ends
    assert 0 <= worker["test_error_scan"] <= 1 and 0 <= worker["test_error_softmax"] <= 1
    # Same recipe, seed, device and thread count: the worker trains what was timed here.
    assert worker["test_error_scan"] == result["test_error_scan"]
    assert worker["test_error_softmax"] == result["test_error_softmax"]
