"""`python -m worker`'s command line: defaults from the FF_* settings, clear usage errors."""

import pytest
import torch

from ffcore.device import DeviceError
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
