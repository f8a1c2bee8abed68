"""`python -m worker`'s command line: defaults from the FF_* settings, clear usage errors, the queues
of its device, and a clear stop when the GPU it was asked for is not there."""

import subprocess
import sys

import pytest
import torch
from celery import Celery

import worker.context
from ffcore.device import DeviceError
from tests.support.paths import REPO
from tests.support.processes import environment_without
from worker.__main__ import main, parse_args, worker_device
from worker.context import get_context


def test_threads_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FF_WORKER_THREADS", "3")
    assert parse_args([])[0].threads == 3
    monkeypatch.delenv("FF_WORKER_THREADS")
    assert parse_args([])[0].threads is None


def test_name_and_device_come_from_the_environment_and_the_command_line_wins(monkeypatch):
    monkeypatch.setenv("FF_WORKER_NAME", "box-1")
    monkeypatch.setenv("FF_WORKER_DEVICE", "cpu")
    args, settings = parse_args([])
    assert (args.name, args.device) == ("box-1", "cpu") == (settings.worker_name, settings.worker_device)
    assert parse_args(["--name", "box-2", "--device", "cuda:1"])[0].device == "cuda:1"
    monkeypatch.delenv("FF_WORKER_DEVICE")
    assert parse_args([])[0].device == "auto"


def test_zero_threads_is_refused_with_the_reason(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--threads", "0"])
    assert exit_.value.code == 2
    assert "--threads must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "message"), [("many", "valid integer"), ("0", "greater than or equal to 1")]
)
def test_a_bad_thread_count_in_the_environment_is_a_usage_error(monkeypatch, capsys, value, message):
    monkeypatch.setenv("FF_WORKER_THREADS", value)
    with pytest.raises(SystemExit) as exit_:
        parse_args([])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"FF_WORKER_THREADS={value!r}" in err and message in err


def test_an_unknown_device_is_a_usage_error_that_says_what_to_use(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--device", "tpu"])
    assert exit_.value.code == 2
    assert "unknown device 'tpu'; use auto, cpu, cuda or cuda:N" in capsys.readouterr().err


def test_the_worker_names_its_device_cpu_or_cuda_n_and_makes_its_gpu_the_current_one(monkeypatch):
    assert worker_device("cpu") == "cpu"
    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    assert [worker_device(d) for d in ("auto", "cuda", "cuda:1")] == ["cuda:0", "cuda:0", "cuda:1"]
    assert current == [0, 0, 1]
    with pytest.raises(DeviceError, match="sees 2 CUDA GPU"):
        worker_device("cuda:2")


def test_the_task_outside_python_m_worker_says_how_to_start_it():
    with pytest.raises(RuntimeError, match="python -m worker"):
        get_context()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the worker would start")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_a_worker_asked_for_a_gpu_it_cannot_use_stops_with_one_line_saying_why(device):
    """A real `python -m worker` process; Redis is not even reachable: the check comes first."""
    env = environment_without("FF_") | {"FF_REDIS_URL": "redis://127.0.0.1:1/0", "FF_WORKER_DEVICE": device}
    result = subprocess.run(
        [sys.executable, "-m", "worker"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "usage:" not in result.stderr, result.stderr
    (line,) = errors
    assert f"worker not started: device {device!r} was asked for, but PyTorch sees no CUDA GPU" in line
    built = f"is built for CUDA {torch.version.cuda}" if torch.version.cuda else "is a CPU build"
    assert built in line and "--device cpu" in line


@pytest.mark.parametrize(
    ("device", "queues", "device_line"),
    [
        ("cuda:0", "fflab.train.cuda,fflab.train", "training on cuda:0: a stand-in GPU"),
        ("cpu", "fflab.train", "training on the CPU, "),
    ],
)
def test_a_worker_takes_the_queues_of_its_kind_of_device(
    monkeypatch, redis_url, caplog, device, queues, device_line
):
    """main() up to Celery's worker, with a GPU stood in for: the worker's arguments and its first lines."""
    monkeypatch.setattr(worker.context, "_context", None)  # main() installs one; put it back afterwards
    monkeypatch.setenv("FF_REDIS_URL", redis_url)
    monkeypatch.setattr("worker.__main__.worker_device", lambda requested: device)
    if device != "cpu":
        monkeypatch.setattr("worker.__main__.describe_device", lambda d: f"{d}: a stand-in GPU")
    argv: list[str] = []
    monkeypatch.setattr(Celery, "worker_main", lambda app, args: argv.extend(args))
    caplog.set_level("INFO", logger="worker")
    assert main(["--name", "queues-test", "--device", "auto"]) == 0
    assert f"--queues={queues}" in argv and "--pool=solo" in argv
    assert get_context().device == device
    assert device_line in caplog.text
