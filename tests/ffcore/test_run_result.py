"""scripts/run_result.py: one `python -m ffcore train --out` folder packaged for docs/results, from tiny
real runs (a 20-unit network, 20 steps an epoch on the full training set)."""

import json
import shutil
import subprocess
import sys

import pytest

from tests.support.paths import REPO, load_script

pytestmark = pytest.mark.timeout(120)

SCRIPT = REPO / "scripts" / "run_result.py"
TINY = ("--set", "hidden=[20,20]", "--set", "epochs=2", "--set", "batch_size=2500", "--set", "eval_every=1")


def train(mnist_dir, out, *args: str) -> None:
    command = [sys.executable, "-m", "ffcore", "train", "--preset", "quick", *TINY, "--data-dir", mnist_dir]
    command += ["--out", str(out), "--device", "cpu", "--threads", "1", "--no-progress", "--log-every", "5"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr


def records(run_dir, kind):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.fixture(scope="module")
def runs(mnist_dir, tmp_path_factory):
    """A finished run of two epochs, and the same run stopped at step 30 (half way through epoch 2)."""
    finished, stopped = tmp_path_factory.mktemp("finished"), tmp_path_factory.mktemp("stopped")
    train(mnist_dir, finished)
    train(mnist_dir, stopped, "--max-steps", "30")
    return finished, stopped


def test_a_finished_run_is_its_summary_and_every_evaluation(runs, tmp_path):
    finished, _ = runs
    out = tmp_path / "result.json"
    script = [sys.executable, str(SCRIPT), str(finished), str(out), "--command", "c", "--note", "n"]
    done = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

    result = json.loads(out.read_text())
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    assert list(result) == ["command", "commit", "note", "summary", "evaluations"]
    assert (result["command"], result["commit"], result["note"]) == ("c", head.stdout.strip(), "n")
    assert result["summary"] == json.loads((finished / "summary.json").read_text())
    assert result["evaluations"] == records(finished, "eval")
    assert [(r["epoch"], r["split"]) for r in result["evaluations"]] == [(1, "val"), (2, "val"), (2, "test")]


def test_a_stopped_run_is_written_as_a_partial_one(runs, tmp_path):
    _, stopped = runs
    run_result = load_script("run_result")
    out = tmp_path / "partial.json"
    assert run_result.main([str(stopped), str(out), "--command", "c", "--commit", "abc1234"]) == 0

    result = json.loads(out.read_text())
    assert list(result) == ["command", "commit", "note", "epochs_done", "evaluations", "train_curve"]
    assert (result["commit"], result["epochs_done"]) == ("abc1234", 1)
    assert result["evaluations"] == records(stopped, "eval") and len(result["evaluations"]) == 1
    # Train records at steps 5, 10, ..., 30: only step 20 ends an epoch. The items are shaped as
    # paper_reference_lrs_partial.json's.
    [point] = result["train_curve"]
    [at_20] = [r for r in records(stopped, "train") if r["step"] == 20]
    assert point == {
        "epoch": 1,
        "step": 20,
        "head_accuracy": at_20["head_accuracy"],
        "ff_accuracy": [layer["ff_accuracy"] for layer in at_20["layers"]],
        "samples_per_s": at_20["samples_per_s"],
    }
    paper = json.loads((REPO / "docs" / "results" / "paper_reference_lrs_partial.json").read_text())
    assert list(result) == list(paper) and list(point) == list(paper["train_curve"][0])

    # A killed run (no summary.json, a torn last line) is partial too, its epochs read from its records.
    killed = tmp_path / "killed"
    shutil.copytree(stopped, killed)
    (killed / "summary.json").unlink()
    with open(killed / "metrics.jsonl", "a") as metrics:
        metrics.write('{"kind": "train", "st')
    assert run_result.main([str(killed), str(out), "--command", "c", "--commit", "x"]) == 0
    assert json.loads(out.read_text()) == result | {"commit": "x"}


def test_a_finished_run_can_be_written_partial_with_a_thinned_curve(runs, tmp_path):
    finished, _ = runs
    run_result = load_script("run_result")
    out = tmp_path / "partial.json"
    argv = [str(finished), str(out), "--command", "c", "--commit", "x", "--partial", "--curve-points", "1"]
    assert run_result.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["epochs_done"] == 2 and [p["step"] for p in result["train_curve"]] == [40]


def test_the_curve_keeps_every_kth_epoch_end_counted_back_from_the_last():
    run_result = load_script("run_result")
    point = {"head_accuracy": 0.9, "samples_per_s": 1.0, "layers": [{"ff_accuracy": 0.5}]}
    # 10 steps an epoch, a record every 5: 25 epoch ends, every third kept, counted back from 25.
    train = [{"kind": "train", "step": s, "epoch": s / 10, **point} for s in range(5, 255, 5)]
    assert [p["epoch"] for p in run_result.train_curve(train, points=10)] == list(range(1, 26, 3))
    assert [p["step"] for p in run_result.train_curve(train[:1], points=10)] == [5]  # no epoch end yet


def test_a_commit_the_folder_records_wins_over_head(tmp_path):
    run_result = load_script("run_result")
    (tmp_path / "summary.json").write_text(json.dumps({"provenance": {"git_commit": "feedbee"}}))
    assert run_result.recorded_commit(tmp_path) == "feedbee"


def test_a_folder_without_metrics_is_refused_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), str(tmp_path / "r.json"), "--command", "c"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"error: {tmp_path}: no metrics.jsonl")
    assert not (tmp_path / "r.json").exists()
