import pytest

from worker.__main__ import build_parser, main


def test_threads_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FF_WORKER_THREADS", "3")
    assert build_parser().parse_args([]).threads == 3
    monkeypatch.delenv("FF_WORKER_THREADS")
    assert build_parser().parse_args([]).threads is None


def test_zero_threads_is_refused_with_the_reason(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--threads", "0"])
    assert exit_.value.code == 2
    assert "--threads must be at least 1, got 0" in capsys.readouterr().err


def test_a_non_number_in_the_environment_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv("FF_WORKER_THREADS", "many")
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([])
    assert exit_.value.code == 2
    assert "invalid int value: 'many'" in capsys.readouterr().err
