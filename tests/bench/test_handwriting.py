"""bench.handwriting's --model: a finished model file read on the styled set, its MNIST test error
measured, and what it cannot read refused with a clear message."""

from __future__ import annotations

import argparse
import json
import sys

import pytest

from bench.handwriting import main, model_argument
from ffcore import RunConfig, Trainer, load_dataset
from ffcore.checkpoint import save_model, save_model_dir


def tiny_config(mnist_dir: str, hidden: list[int]) -> RunConfig:
    return RunConfig.from_preset("quick", hidden=hidden, epochs=1, data_dir=mnist_dir, device="cpu")


def run_bench(monkeypatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["bench.handwriting", *argv])
    main()


def test_a_model_file_is_read_on_the_styled_set_with_its_mnist_error(mnist_dir, tmp_path, monkeypatch):
    config = tiny_config(mnist_dir, [64, 64])
    trainer = Trainer(config, load_dataset(config))
    trainer.fit(max_steps=300)
    model_file = tmp_path / "trained.safetensors"
    model_file.write_bytes(save_model(trainer.model, config))
    untrained = RunConfig.from_preset("quick", hidden=[64, 64], device="cpu")
    untrained_dir = tmp_path / "untrained"
    save_model_dir(untrained_dir, Trainer(untrained, load_dataset(config)).model, untrained)
    out = tmp_path / "handwriting.json"

    run_bench(
        monkeypatch,
        *("--data-dir", mnist_dir, "--runs", str(tmp_path / "runs"), "--train", ""),
        *("--count", "40", "--easy-count", "20", "--timing-steps", "0", "--out", str(out)),
        *("--model", f"trained={model_file}", "--model", f"untrained={untrained_dir}"),
    )

    models = json.loads(out.read_text())["models"]
    assert all(models[name]["status"] == "not finished" for name in ("quick", "reference_jitter"))
    trained, blank = models["trained"], models["untrained"]
    # 300 steps of a small net read half of MNIST or more (about 0.48 / 0.56 wrong, head / scan); an
    # untrained one is at chance.
    assert trained["mnist_test_error_softmax"] < 0.6
    assert trained["mnist_test_error_scan"] < blank["mnist_test_error_scan"] - 0.1
    assert blank["mnist_test_error_scan"] > 0.7 and blank["mnist_test_error_softmax"] > 0.7
    assert trained["config"]["hidden"] == [64, 64] and "data_dir" not in trained["config"]
    for entry in (trained, blank):
        assert 0 <= entry["styled"]["scan"] <= 1 and 0 <= entry["easy"]["head"] <= 1
        assert sum(kind["n"] for kind in entry["styled"]["by_kind"].values()) >= 40
    assert trained["easy"]["scan"] > blank["easy"]["scan"]


def test_a_fashion_model_is_refused(mnist_dir, tmp_path, monkeypatch, capsys):
    config = RunConfig.from_preset("quick", hidden=[16, 16], dataset="fashion-mnist", device="cpu")
    model_file = tmp_path / "fashion.safetensors"
    mnist_config = tiny_config(mnist_dir, [16, 16])
    model_file.write_bytes(save_model(Trainer(mnist_config, load_dataset(mnist_config)).model, config))
    with pytest.raises(SystemExit) as exit_info:
        run_bench(
            monkeypatch,
            *("--data-dir", mnist_dir, "--runs", str(tmp_path / "runs"), "--train", ""),
            *("--count", "5", "--easy-count", "5", "--timing-steps", "0", "--out", str(tmp_path / "o.json")),
            *("--model", f"fashion={model_file}"),
        )
    assert exit_info.value.code == 2
    assert "a fashion-mnist model; the styled set holds digits" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize(
    ("text", "message"), [("no-equals", "expected NAME=PATH"), ("x=/no/such", "no such file")]
)
def test_model_argument_says_what_is_wrong(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        model_argument(text)
