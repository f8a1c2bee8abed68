"""A run's folder on the command line (ffcore/run_folder.py): resuming the run saved there as asked, never
mixing two runs in one folder, and one clear line, not a traceback, for what cannot be done."""

import json
import shutil
import signal
import subprocess
import sys

import pytest

from ffcore.config import RunConfig
from tests.ffcore.test_cli import CLI_ENV, ffcore, trained_dir  # noqa: F401 - the module's finished run

pytestmark = pytest.mark.timeout(300)

TINY = ("--preset", "quick", "--set", "hidden=[30,30]", "--no-progress", "--threads", "1", "--device", "cpu")


def assert_one_line(result, status: int, words: str) -> None:
    assert result.returncode == status, result.stderr
    assert words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def stopped_run(mnist_dir, tmp_path):
    """A run stopped at step 10 in tmp_path/run, its data folder given relative to tmp_path."""
    (tmp_path / "data").symlink_to(mnist_dir)
    out = tmp_path / "run"
    result = ffcore(
        "train", *TINY, "--data-dir", "data", "--out", str(out), "--max-steps", "10", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    return out


def test_resume_takes_another_data_dir_and_refuses_another_configuration(stopped_run, mnist_dir, tmp_path):
    # Saved as "data" (relative): resumed from elsewhere, the run finds its data where --data-dir says.
    result = ffcore(
        "train", "--resume", "--out", str(stopped_run), "--data-dir", mnist_dir, "--max-steps", "20"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((stopped_run / "summary.json").read_text())["steps"] == 20
    # The same --preset and --set as saved resume it; others would train another run under its name.
    same = ffcore(
        "train", "--resume", *TINY, "--out", str(stopped_run), "--data-dir", mnist_dir, "--max-steps", "25"
    )
    assert same.returncode == 0, same.stderr
    other = ffcore(
        "train", "--resume", *TINY, "--set", "lr=5", "--out", str(stopped_run), "--data-dir", mnist_dir
    )
    assert_one_line(other, 2, "--preset and --set ask for another run than the one saved in")
    assert f"lr {RunConfig.from_preset('quick').lr!r} there, 5.0 asked" in other.stderr


def test_a_folder_holding_a_run_is_not_trained_into_again_without_resume(stopped_run, mnist_dir):
    before = {path.name: path.read_bytes() for path in stopped_run.iterdir()}
    result = ffcore("train", *TINY, "--data-dir", mnist_dir, "--out", str(stopped_run), "--max-steps", "5")
    assert_one_line(result, 2, "already holds a run (state.safetensors, model.safetensors, config.json")
    assert {path.name: path.read_bytes() for path in stopped_run.iterdir()} == before


def test_resuming_a_finished_run_reports_it_and_changes_nothing(trained_dir, tmp_path):  # noqa: F811
    run = tmp_path / "finished"
    shutil.copytree(trained_dir, run)
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    result = ffcore("train", "--resume", "--out", str(run), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["test_error_scan"] == json.loads(before["summary.json"])["test_error_scan"]
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda data: b"", "not a training state this version can resume"),
        (lambda data: data[: len(data) // 2], "not a training state this version can resume"),
        (lambda data: b"{not safetensors", "not a training state this version can resume"),
    ],
)
def test_a_damaged_state_is_one_line(stopped_run, mnist_dir, damage, words):
    state = stopped_run / "state.safetensors"
    state.write_bytes(damage(state.read_bytes()))
    result = ffcore("train", "--resume", "--out", str(stopped_run), "--data-dir", mnist_dir)
    assert_one_line(result, 2, words)


def test_a_damaged_model_is_one_line(trained_dir, tmp_path):  # noqa: F811
    model = tmp_path / "model"
    shutil.copytree(trained_dir, model)
    (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes()[:100_000])
    assert_one_line(
        ffcore("eval", "--model", str(model), "--device", "cpu"), 2, "not a model this version can load"
    )
    picture = tmp_path / "cut.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    assert_one_line(ffcore("predict", "--model", str(trained_dir), str(picture)), 2, "cut.png")
    assert_one_line(ffcore("predict", "--model", str(trained_dir), str(tmp_path)), 2, str(tmp_path))


@pytest.mark.parametrize("flag", ["--log-every", "--threads", "--max-steps"])
@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_counts_must_be_at_least_one(flag, value, tmp_path):
    result = ffcore("train", flag, value, "--out", str(tmp_path / "run"))
    assert_one_line(result, 2, f"argument {flag}: must be a whole number of at least 1, got '{value}'")
    assert not (tmp_path / "run").exists()


def test_an_out_that_cannot_be_written_is_one_line(mnist_dir, tmp_path):
    (tmp_path / "a-file").write_text("x")
    result = ffcore(
        "train", *TINY, "--data-dir", mnist_dir, "--out", str(tmp_path / "a-file"), "--max-steps", "1"
    )
    assert_one_line(result, 1, "a-file")


def test_an_invalid_configuration_leaves_no_folder_behind(tmp_path):
    result = ffcore("train", "--preset", "quick", "--set", "epochs=0", "--out", str(tmp_path / "run"))
    assert_one_line(result, 2, "epochs: Input should be greater than or equal to 1")
    assert not (tmp_path / "run").exists()


def test_ctrl_c_while_training_is_one_line_that_says_how_to_go_on(mnist_dir, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "ffcore", "train", *TINY, "--data-dir", mnist_dir, "--out", str(out)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=CLI_ENV)
    assert process.stderr is not None
    lines = []
    for line in process.stderr:  # until it trains
        lines.append(line)
        if " training [30, 30] on " in line:
            break
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 130, "".join(lines) + rest
    assert "interrupted (train --resume, or sweep --resume, with the same --out continues it)" in rest
    assert "Traceback" not in rest
