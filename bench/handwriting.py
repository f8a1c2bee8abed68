r"""How well do trained networks read digits in other styles than MNIST's, and does augmentation help?

Six networks: the `quick` preset, the `reference` preset at 15 epochs, the same two with
`augment=styles` (ffcore/augment.py), and the 15-epoch `reference` with two-pixel jitter, alone or
with `augment=styles` (the choice the `jitter` preset was made from). Each trains with `python -m
ffcore train --resume` into its folder under --runs, or is loaded from there when it has finished (a
folder that holds another configuration is refused). Each is then asked to read a generated set of
styled digits (tests/support/styled_digits.py: fonts and synthetic pen strokes, thin and thick,
slanted, small and off-centre, blurred, low-resolution, both polarities, PNG and JPEG), every
picture going through the predict path (`preprocess_digit(Image.open(file))`, as the API does), and
a set of easy ones. It reports each network's accuracy there (label scan and softmax head, overall
and per kind of picture) and its MNIST test error, and times training steps with and without
augmentation in alternating rounds. `--model NAME=PATH` also reads the set with any finished model
(a `.safetensors` downloaded from `GET /api/v1/runs/{id}/model`, or a `--out` folder): the presets
trained in full by the service, say, its MNIST test error measured here. The styled set is synthetic,
not the held-out set of real handwriting.

    .venv/bin/python -m bench.handwriting --data-dir ../shared/datasets
    .venv/bin/python -m bench.handwriting --data-dir ../shared/datasets --train quick,quick_styles
    # the two reference networks again, trained with seed 1, in folders of their own:
    .venv/bin/python -m bench.handwriting --data-dir ../shared/datasets --train-seed 1 --runs runs/hw-seed1 \
        --train reference,reference_styles --timing-steps 0 --out bench/results/handwriting_seed1.json
    # only the jittered networks (the others are reported as not finished unless --runs holds them):
    .venv/bin/python -m bench.handwriting --data-dir ../shared/datasets \
        --train reference_jitter,reference_jitter_styles --timing-steps 0 \
        --out bench/results/handwriting_jitter.json

    # the `jitter` preset's two 60k runs, downloaded from the API (no training here):
    .venv/bin/python -m bench.handwriting --data-dir ../shared/datasets --train '' --timing-steps 0 \
        --model jitter_seed0=runs/jitter_0.safetensors --model jitter_seed1=runs/jitter_1.safetensors \
        --out bench/results/handwriting_presets.json

The JSON goes to bench/results/handwriting.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench._provenance import provenance
from ffcore import RunConfig, Trainer, load_dataset, load_model_dir, predict
from ffcore.augment import augment_styles
from ffcore.data import Split
from ffcore.evaluation import evaluate
from ffcore.images import EmptyImageError, preprocess_digit
from tests.support.paths import REPO
from tests.support.styled_digits import EASY, VARIED, StyledDigit, available_fonts, styled_digits

RESULTS = REPO / "bench" / "results" / "handwriting.json"
# name: (preset, overrides)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "quick": ("quick", {}),
    "quick_styles": ("quick", {"augment": "styles"}),
    "reference": ("reference", {"epochs": 15}),
    "reference_styles": ("reference", {"epochs": 15, "augment": "styles"}),
    # The two augmentations the jitter preset was chosen between (docs/experiments/jitter_select.json).
    "reference_jitter": ("reference", {"epochs": 15, "jitter": 2}),
    "reference_jitter_styles": ("reference", {"epochs": 15, "jitter": 2, "augment": "styles"}),
}
# Settings that say where a run trained, not what it learned.
PLACE_SETTINGS = ("data_dir", "device")


def variant_overrides(name: str, train_seed: int) -> dict[str, Any]:
    """The variant's overrides of its preset, with the training seed when it is not the default."""
    return {**VARIANTS[name][1], **({"seed": train_seed} if train_seed else {})}


def expected_config(name: str, data_dir: str, train_seed: int) -> RunConfig:
    preset, overrides = VARIANTS[name][0], variant_overrides(name, train_seed)
    return RunConfig.from_preset(preset, **overrides, data_dir=data_dir)


def finished_summary(folder: Path, expected: RunConfig) -> dict[str, Any] | None:
    """The folder's summary.json when its run finished with the expected configuration; None while it
    has not finished; ValueError when it holds another configuration."""
    summary_path = folder / "summary.json"
    config_path = folder / "config.json"
    if config_path.is_file():
        found = RunConfig.from_json(config_path.read_text()).model_dump(exclude=set(PLACE_SETTINGS))
        wanted = expected.model_dump(exclude=set(PLACE_SETTINGS))
        if found != wanted:
            differ = sorted(k for k in wanted if found.get(k) != wanted[k])
            raise ValueError(
                f"{folder} holds another configuration (differs in {differ}); use another --runs"
            )
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    return None if summary["stopped_early"] else summary


def train(name: str, folder: Path, data_dir: str, threads: int, train_seed: int) -> None:
    """Train (or go on training) the variant with the real command line, resumable in `folder`."""
    preset, overrides = VARIANTS[name][0], variant_overrides(name, train_seed)
    command = [sys.executable, "-m", "ffcore", "train", "--preset", preset, "--out", str(folder)]
    for key, value in overrides.items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    command += ["--data-dir", data_dir, "--threads", str(threads), "--resume", "--no-progress"]
    print(f"training {name}: {' '.join(command)}", flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def preprocessed(digits: list[StyledDigit]) -> tuple[np.ndarray, np.ndarray]:
    """Every picture through the predict path's preprocessing: (N, 28, 28), and which of them it
    found a digit in (N,); a picture it refuses (the API's 422) stays blank and counts as misread."""
    pixels = np.zeros((len(digits), 28, 28), dtype=np.float32)
    found = np.ones(len(digits), dtype=bool)
    for i, digit in enumerate(digits):
        try:
            pixels[i] = preprocess_digit(digit.picture())
        except EmptyImageError:
            found[i] = False
    return pixels, found


def categories(digit: StyledDigit) -> list[str]:
    """The kinds of picture a styled digit counts towards in the breakdown."""
    style = digit.style
    kinds = ["pen" if style["source"].startswith("pen") else "font"]
    kinds.append("light_on_dark" if style["light_on_dark"] else "dark_on_light")
    if style["stroke"] < 0.05:
        kinds.append("thin_stroke")
    elif style["stroke"] > 0.12:
        kinds.append("thick_stroke")
    if style["low_resolution_height"] is not None:
        kinds.append("low_resolution")
    if style["blur"] > 0.6:
        kinds.append("blurred")
    if abs(style["slant"]) > 0.2 or abs(style["rotation"]) > 10:
        kinds.append("slanted_or_rotated")
    if style["digit_fraction"] < 0.3:
        kinds.append("small_in_picture")
    if style["format"] == "JPEG":
        kinds.append("jpeg")
    return kinds


def accuracy(
    model, pictures: tuple[np.ndarray, np.ndarray], labels: np.ndarray, kinds: list[list[str]] | None
) -> dict[str, Any]:
    """The fraction of pictures each classifier reads right, overall and per kind of picture."""
    pixels, found = pictures
    prediction = predict(model, pixels)
    scan_right = (prediction.scan_label == labels) & found
    head_right = (prediction.head_label == labels) & found
    result: dict[str, Any] = {"scan": float(scan_right.mean()), "head": float(head_right.mean())}
    if kinds is not None:
        breakdown = {}
        for kind in sorted({k for ks in kinds for k in ks}):
            mask = np.array([kind in ks for ks in kinds])
            breakdown[kind] = {
                "n": int(mask.sum()),
                "scan": float(scan_right[mask].mean()),
                "head": float(head_right[mask].mean()),
            }
        result["by_kind"] = breakdown
    return result


def model_argument(text: str) -> tuple[str, Path]:
    name, separator, path = text.partition("=")
    if not separator or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=PATH")
    if not Path(path).exists():
        raise argparse.ArgumentTypeError(f"{path}: no such file or folder")
    return name, Path(path)


def print_reading(name: str, entry: dict[str, Any]) -> None:
    print(
        f"{name}: styled accuracy scan {entry['styled']['scan']:.1%} head {entry['styled']['head']:.1%}; "
        f"easy scan {entry['easy']['scan']:.1%} head {entry['easy']['head']:.1%}; MNIST test error "
        f"scan {entry['mnist_test_error_scan']:.2%} softmax {entry['mnist_test_error_softmax']:.2%}"
    )


def mnist_test_errors(model, test: Split) -> dict[str, float]:
    """The model's error rates on the MNIST test set, measured here (a downloaded model file carries
    its configuration, not its results)."""
    errors = evaluate(model, test)
    return {
        "mnist_test_error_scan": errors["error_scan"],
        "mnist_test_error_softmax": errors["error_softmax"],
    }


def time_augmentation(data_dir: str, preset: str, steps: int, rounds: int) -> dict[str, Any]:
    """Training samples per second of the preset with augment='none' and 'styles', in alternating
    rounds on one process (neighbouring rounds see the same machine), and augment_styles alone."""
    base = RunConfig.from_preset(preset, data_dir=data_dir, device="cpu")
    data = load_dataset(base)
    trainers = {
        "none": Trainer(base, data),
        "styles": Trainer(base.model_copy(update={"augment": "styles"}), data),
    }
    per_round = max(1, steps // rounds)
    seconds = {"none": 0.0, "styles": 0.0}
    for _ in range(rounds):
        for augment, trainer in trainers.items():
            start = time.perf_counter()
            trainer.fit(max_steps=trainer.step + per_round)
            seconds[augment] += time.perf_counter() - start
    samples = per_round * rounds * base.batch_size
    batch = data.train.images[: base.batch_size]
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        augment_styles(batch, base.augment_fraction, generator)
    augment_ms = (time.perf_counter() - start) / steps * 1000
    rates = {augment: samples / s for augment, s in seconds.items()}
    return {
        "preset": preset,
        "steps_each": per_round * rounds,
        "rounds": rounds,
        "samples_per_s_none": rates["none"],
        "samples_per_s_styles": rates["styles"],
        "slowdown": rates["none"] / rates["styles"] - 1,
        "augment_styles_ms_per_batch": augment_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", required=True, help="torchvision root holding MNIST/raw")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "handwriting", help="training folders")
    parser.add_argument(
        "--train",
        default=",".join(VARIANTS),
        help="variants to train when their folder has not finished (comma-separated; others are only "
        "evaluated when finished); default: all",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads, here and in trainings")
    parser.add_argument("--count", type=int, default=3000, help="styled pictures")
    parser.add_argument("--easy-count", type=int, default=500, help="easy styled pictures")
    parser.add_argument("--seed", type=int, default=0, help="seed of the styled pictures")
    parser.add_argument("--train-seed", type=int, default=0, help="seed of every training (default: 0)")
    parser.add_argument("--timing-steps", type=int, default=300, help="steps timed per setting (0: skip)")
    parser.add_argument("--timing-rounds", type=int, default=6)
    parser.add_argument(
        "--model",
        type=model_argument,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also read the styled set with this finished model: a .safetensors file (GET "
        "/api/v1/runs/{id}/model) or a --out folder; repeatable",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    to_train = [name for name in args.train.split(",") if name]
    unknown = sorted(set(to_train) - set(VARIANTS))
    if unknown:
        parser.error(f"--train: unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    loaded = [(name, path, *load_model_dir(path)) for name, path in args.model]
    for name, _, _, config in loaded:
        if config.dataset != "mnist":
            parser.error(f"--model {name}: a {config.dataset} model; the styled set holds digits")

    summaries: dict[str, dict[str, Any] | None] = {}
    for name in VARIANTS:
        folder = args.runs / name
        expected = expected_config(name, args.data_dir, args.train_seed)
        summary = finished_summary(folder, expected)
        if summary is None and name in to_train:
            train(name, folder, args.data_dir, args.threads, args.train_seed)
            summary = finished_summary(folder, expected)
        summaries[name] = summary

    start = time.perf_counter()
    varied = styled_digits(args.count, seed=args.seed, ranges=VARIED)
    easy = styled_digits(args.easy_count, seed=args.seed + 1, ranges=EASY)
    varied_pixels, easy_pixels = preprocessed(varied), preprocessed(easy)
    refused = int((~varied_pixels[1]).sum() + (~easy_pixels[1]).sum())
    print(
        f"{len(varied)} styled and {len(easy)} easy pictures in {time.perf_counter() - start:.0f} s; "
        f"preprocessing found no digit in {refused}"
    )
    varied_labels = np.array([d.label for d in varied])
    easy_labels = np.array([d.label for d in easy])
    kinds = [categories(d) for d in varied]

    models: dict[str, Any] = {}
    for name, summary in summaries.items():
        preset, overrides = VARIANTS[name][0], variant_overrides(name, args.train_seed)
        entry: dict[str, Any] = {"preset": preset, "overrides": overrides, "folder": str(args.runs / name)}
        if summary is None:
            entry["status"] = "not finished"
            models[name] = entry
            print(f"{name}: not finished")
            continue
        model, _ = load_model_dir(args.runs / name)
        entry.update(
            status="finished",
            mnist_test_error_scan=summary["test_error_scan"],
            mnist_test_error_softmax=summary["test_error_softmax"],
            train_wall_s=summary["wall_s"],
            styled=accuracy(model, varied_pixels, varied_labels, kinds),
            easy=accuracy(model, easy_pixels, easy_labels, None),
        )
        models[name] = entry
        print_reading(name, entry)

    # MNIST's test split, loaded once for every --model
    mnist_test = load_dataset(RunConfig(data_dir=args.data_dir)).test if loaded else None
    for name, path, model, config in loaded:
        entry = {
            "status": "finished",
            "file": str(path),
            "config": config.model_dump(exclude=set(PLACE_SETTINGS)),
            **mnist_test_errors(model, mnist_test),
            "styled": accuracy(model, varied_pixels, varied_labels, kinds),
            "easy": accuracy(model, easy_pixels, easy_labels, None),
        }
        models[name] = entry
        print_reading(name, entry)

    timing = []
    if args.timing_steps:
        for preset in ("quick", "reference"):
            timing.append(time_augmentation(args.data_dir, preset, args.timing_steps, args.timing_rounds))
            t = timing[-1]
            print(
                f"timing {preset}: {t['samples_per_s_none']:.0f} samples/s without augmentation, "
                f"{t['samples_per_s_styles']:.0f} with (the step {t['slowdown']:.1%} slower); augment_styles "
                f"{t['augment_styles_ms_per_batch']:.1f} ms per batch"
            )

    result = {
        "styled_set": {
            "count": args.count,
            "easy_count": args.easy_count,
            "seed": args.seed,
            "refused_by_preprocessing": refused,
        },
        "fonts": [font.name for font in available_fonts()],
        "train_seed": args.train_seed,
        "models": models,
        "timing": timing,
        "threads": args.threads,
        **provenance(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
