"""The command line, run as users run it: `python -m ffcore ...` in a subprocess."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ffcore.data import load_arrays
from tests.support.paths import REPO

pytestmark = pytest.mark.timeout(300)


# The command line's subprocesses find this checkout's ffcore from any working directory.
CLI_ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def ffcore(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ffcore", *args],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=cwd,
        env=CLI_ENV,
    )


@pytest.fixture(scope="module")
def trained_dir(mnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = ffcore(
        "train",
        "--preset",
        "quick",
        "--set",
        "epochs=1",
        "--set",
        "hidden=[200,200]",
        "--data-dir",
        mnist_dir,
        "--out",
        str(out),
        "--no-progress",
        "--threads",
        "1",
        "--device",
        "cpu",
    )
    assert result.returncode == 0, result.stderr
    return out


def test_train_writes_summary_metrics_and_model(trained_dir):
    summary = json.loads((trained_dir / "summary.json").read_text())
    for key in (
        "test_error_scan",
        "test_error_softmax",
        "epochs",
        "steps",
        "samples_per_s",
        "wall_s",
        "device",
        "config",
    ):
        assert key in summary
    assert summary["epochs"] == 1 and summary["device"] == "cpu"
    assert summary["config"]["hidden"] == [200, 200]
    assert summary["test_error_softmax"] < 0.2  # it learned something in one epoch
    records = [json.loads(line) for line in (trained_dir / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records} == {"train", "eval"}
    assert records[-1] == {**records[-1], "kind": "eval", "split": "test", "final": True}
    assert (trained_dir / "model.safetensors").stat().st_size > 100_000
    assert (trained_dir / "config.json").is_file()


def test_predict_reads_real_digits_from_png_files(trained_dir, mnist_dir, tmp_path):
    arrays = load_arrays("mnist", mnist_dir)
    paths, labels = [], []
    for i in range(10):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(arrays["test_images"][i]).resize((112, 112)).save(path)
        paths.append(str(path))
        labels.append(int(arrays["test_labels"][i]))
    result = ffcore("predict", "--model", str(trained_dir), *paths)
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["image"] for a in answers] == paths
    fields = {"image", "scan_label", "head_label", "scan_class", "head_class", "scan_scores", "head_probs"}
    assert all(set(a) == fields for a in answers)
    assert all(
        a["scan_class"] == str(a["scan_label"]) and a["head_class"] == str(a["head_label"]) for a in answers
    )
    correct = sum(a["head_label"] == label for a, label in zip(answers, labels, strict=True))
    assert correct >= 8
    assert sum(a["scan_label"] == label for a, label in zip(answers, labels, strict=True)) >= 6
    assert all(len(a["scan_scores"]) == 10 and abs(sum(a["head_probs"]) - 1) < 1e-3 for a in answers)
    assert all(a["head_label"] == int(np.argmax(a["head_probs"])) for a in answers)


def test_eval_matches_the_training_summary(trained_dir, mnist_dir):
    result = ffcore("eval", "--model", str(trained_dir), "--data-dir", mnist_dir)
    assert result.returncode == 0, result.stderr
    errors = json.loads(result.stdout)
    summary = json.loads((trained_dir / "summary.json").read_text())
    assert errors["error_scan"] == pytest.approx(summary["test_error_scan"], abs=1e-4)
    assert errors["error_softmax"] == pytest.approx(summary["test_error_softmax"], abs=1e-4)


def test_max_steps_stops_early_and_leaves_a_resumable_state(mnist_dir, tmp_path):
    args = (
        "train",
        "--preset",
        "quick",
        "--set",
        "hidden=[30,30]",
        "--data-dir",
        mnist_dir,
        "--out",
        str(tmp_path),
        "--no-progress",
        "--threads",
        "1",
        "--log-every",
        "5",
    )
    result = ffcore(*args, "--max-steps", "15")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 15 and summary["stopped_early"] and summary["test_error_scan"] is None
    # A run killed after its last saved state has written records that the resumed run repeats.
    with open(tmp_path / "metrics.jsonl", "a") as metrics:
        metrics.write(json.dumps({"kind": "train", "step": 20, "killed": True}) + "\n")
    result = ffcore(*args, "--resume", "--device", "cpu", "--max-steps", "25")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 25
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [5, 10, 15, 20, 25]
    assert not any(r.get("killed") for r in records)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "lr=-1"), "lr: Input should be greater than 0"),
        (("--set", "hiden=[10]"), "unknown setting 'hiden'"),
        (("--set", "epochs"), "key=value"),
        (("--data-dir", "/nonexistent/mnist"), "data directory /nonexistent/mnist does not exist"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, tmp_path):
    result = ffcore("train", "--preset", "quick", "--out", str(tmp_path), *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_predict_on_a_missing_model_or_non_image(tmp_path):
    result = ffcore("predict", "--model", str(tmp_path), "x.png")
    assert result.returncode == 2 and "model.safetensors" in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_of_a_split_the_model_has_not_is_one_clear_line(mnist_dir, tmp_path):
    train = ("train", "--preset", "quick", "--set", "hidden=[10,10]", "--set", "validation=none")
    result = ffcore(*train, "--data-dir", mnist_dir, "--out", str(tmp_path), "--max-steps", "1")
    assert result.returncode == 0, result.stderr
    result = ffcore("eval", "--model", str(tmp_path), "--split", "val", "--device", "cpu")
    assert result.returncode == 2
    assert "no validation split" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
@pytest.mark.parametrize("command", ["train", "eval", "sweep"])
def test_cuda_without_a_gpu_is_one_clear_line(command, device, tmp_path):
    args = {
        "train": ("--out", str(tmp_path)),
        "eval": ("--model", str(tmp_path)),
        "sweep": (str(tmp_path / "spec.json"), "--out", str(tmp_path / "sweep")),
    }[command]
    result = ffcore(command, "--device", device, *args)
    assert result.returncode == 2
    assert f"error: device '{device}' was asked for, but PyTorch sees no CUDA GPU" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


@pytest.mark.parametrize("command", ["train", "eval"])
def test_an_unknown_device_is_one_clear_line(command, tmp_path):
    args = ("--out", str(tmp_path)) if command == "train" else ("--model", str(tmp_path))
    result = ffcore(command, "--device", "tpu", *args)
    assert result.returncode == 2
    assert "error: unknown device 'tpu'; use auto, cpu, cuda or cuda:N" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_index_past_the_last_is_one_clear_line(tmp_path):
    device = f"cuda:{torch.cuda.device_count()}"
    result = ffcore("train", "--device", device, "--out", str(tmp_path))
    assert result.returncode == 2
    assert f"error: device '{device}' was asked for, but PyTorch sees" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_saved_on_a_gpu_resumes_on_the_cpu_with_a_warning(mnist_dir, tmp_path):
    # A GPU worker's state as a CPU machine sees it: config device cuda, a 16-byte Philox generator.
    from safetensors.torch import load, save

    from ffcore import RunConfig, Trainer, load_dataset, save_training_state
    from ffcore.checkpoint import read_metadata

    config = RunConfig.from_preset("quick", hidden=[30, 30], data_dir=mnist_dir, device="cpu")
    trainer = Trainer(config, load_dataset(config), log_every=5)
    trainer.fit(max_steps=10)
    state = save_training_state(trainer)
    on_gpu = config.model_copy(update={"device": "cuda"}).model_dump_json()
    fields = read_metadata(state) | {"config": on_gpu, "rng_device": "cuda"}
    (tmp_path / "state.safetensors").write_bytes(
        save(load(state) | {"rng": torch.arange(16, dtype=torch.uint8)}, metadata=fields)
    )
    args = (
        "train",
        "--out",
        str(tmp_path),
        "--resume",
        "--no-progress",
        "--threads",
        "1",
        "--max-steps",
        "15",
    )
    if not torch.cuda.is_available():
        result = ffcore(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "PyTorch sees no CUDA GPU; --device cpu continues the run on the CPU" in result.stderr
    result = ffcore(*args, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "resume at step 10 is not bit-exact" in result.stderr and "saved on cuda" in result.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 15


def test_help_lists_the_subcommands_and_options():
    result = ffcore("train", "--help")
    for option in ("--preset", "--set", "--data-dir", "--device", "--out", "--max-steps"):
        assert option in result.stdout
    assert np.all([name in result.stdout for name in ("paper", "quick", "reference")])
