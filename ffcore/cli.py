"""The command line: `python -m ffcore train | predict | eval | sweep`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ffcore.config import DEFAULT_PRESET, PRESETS, RunConfig, format_validation_error, parse_override
from ffcore.run_folder import (
    METRICS_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    RunFolderError,
    drop_metrics_after,
    files_of_a_run,
    resume,
)

log = logging.getLogger("ffcore")


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2 (as are DataError and DeviceError)."""


def positive_int(text: str) -> int:
    """argparse's type for counts: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ffcore",
        description="Train, evaluate and query Forward-Forward networks (Hinton, 2022) on MNIST.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train a network",
        description="Train a network and write summary.json, metrics.jsonl, model.safetensors, "
        "config.json and state.safetensors (the resumable state, refreshed every epoch) into --out.",
    )
    train.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help=f"starting configuration (default: {DEFAULT_PRESET})",
    )
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set epochs=10 --set hidden=[500,500]; "
        "values are read as JSON when they parse. Repeatable.",
    )
    train.add_argument(
        "--data-dir",
        help="torchvision root holding MNIST/raw (default: download into ~/.cache/fflab/datasets)",
    )
    train.add_argument(
        "--device",
        metavar="DEVICE",
        help="where to train: auto, cpu, cuda or cuda:N (default: auto; with --resume, where the run "
        "trained before; a run resumed on another kind of device goes on, but not bit-exactly)",
    )
    train.add_argument("--out", default="runs/latest", help="output folder (default: %(default)s)")
    train.add_argument(
        "--max-steps",
        type=positive_int,
        help="stop once the run has taken this many optimizer steps, counted from its start (a resumed "
        "run's earlier steps count too); for benchmarks",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in --out (its state.safetensors), or start it there when there is "
        "none yet; --preset and --set must then agree with the saved run's configuration, and "
        "--data-dir and --device may change where it reads its data and trains",
    )
    train.add_argument(
        "--log-every",
        type=positive_int,
        default=50,
        help="steps between two records in metrics.jsonl (default: %(default)s)",
    )
    train.add_argument(
        "--threads", type=positive_int, help="CPU threads for PyTorch (default: PyTorch's choice)"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar (logs instead)")

    predict = sub.add_parser(
        "predict",
        help="classify digit images with a trained model",
        description="Classify image files (any size, PNG/JPEG; preprocessed as the model's data set was) "
        "with a "
        "trained model. Prints one JSON object per image: image (the file), scan_label (the label "
        "scan's prediction), head_label (the softmax head's prediction), scan_class and head_class "
        "(the same by name: a digit, or a Fashion-MNIST garment), scan_scores (each label's "
        "goodness, summed over the scan layers) and head_probs (the softmax head's probabilities).",
    )
    predict.add_argument("--model", required=True, help="model folder (or its model.safetensors)")
    predict.add_argument("images", nargs="+", help="image files")

    evaluate = sub.add_parser(
        "eval",
        help="test error of a trained model",
        description="Print the label-scan and softmax-head error on a split.",
    )
    evaluate.add_argument("--model", required=True, help="model folder (or its model.safetensors)")
    evaluate.add_argument("--data-dir", help="torchvision root holding MNIST/raw (default: the model's)")
    evaluate.add_argument("--split", choices=["test", "val"], default="test", help="default: %(default)s")
    evaluate.add_argument(
        "--device", metavar="DEVICE", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)"
    )

    sweep = sub.add_parser(
        "sweep",
        help="run an experiment (seed group or sweep) here, one run at a time",
        description="Validate the experiment spec SPEC.json (see ffcore/experiment.py), train each setting "
        "it tries once per seed, one run after another (the spec's max_parallel is for the service), and "
        "write table.json and table.csv into --out (rewritten after every run). Prints the best setting "
        "(the lowest mean objective among settings whose seeds all succeeded) with its mean ± standard "
        "deviation over the seeds.",
    )
    sweep.add_argument("spec", metavar="SPEC.json", help="the experiment spec (JSON)")
    sweep.add_argument(
        "--data-dir", help="torchvision root holding MNIST/raw, for every run (default: the spec's base)"
    )
    sweep.add_argument(
        "--device",
        metavar="DEVICE",
        help="where to train: auto, cpu, cuda or cuda:N (default: the spec's base configuration's, auto "
        "unless it says otherwise)",
    )
    sweep.add_argument(
        "--out",
        default="runs/sweep",
        help="output folder: spec.json, table.json, table.csv and runs/<setting>-seed<seed>/ with each "
        "run's metrics.jsonl, outcome.json and, while it trains, its resumable state (default: %(default)s)",
    )
    sweep.add_argument(
        "--resume",
        action="store_true",
        help="continue the sweep in --out: finished runs are kept, an interrupted one continues from its "
        "last epoch, failed ones are tried again (without it, a --out that holds a sweep is refused)",
    )
    sweep.add_argument(
        "--threads", type=positive_int, help="CPU threads for PyTorch (default: PyTorch's choice)"
    )
    return parser


def make_config(args: argparse.Namespace) -> RunConfig:
    overrides: dict[str, Any] = {}
    try:
        for text in args.overrides:
            key, value = parse_override(text)
            overrides[key] = value
    except ValueError as error:
        raise CliError(str(error)) from error
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.device is not None:
        overrides["device"] = args.device
    try:
        return RunConfig.from_preset(args.preset or DEFAULT_PRESET, **overrides)
    except ValidationError as error:
        raise CliError(f"invalid configuration: {format_validation_error(error)}") from error


def cmd_train(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ffcore.checkpoint import save_model_dir, save_training_state, write_atomically
    from ffcore.device import run_device
    from ffcore.train import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device is not None:  # checked before anything is loaded or written
        args.device = run_device(args.device)
    out = Path(args.out)
    state_path = out / STATE_FILE
    if args.resume and state_path.is_file():
        asked = make_config(args) if args.preset is not None or args.overrides else None
        trainer = resume(
            state_path, asked, device=args.device, data_dir=args.data_dir, log_every=args.log_every
        )
        if trainer.step >= trainer.total_steps and (out / SUMMARY_FILE).is_file():
            # Evaluating again would only append a second final record and overwrite its timings.
            log.info("the run in %s has finished; nothing to resume", out)
            summary = json.loads((out / SUMMARY_FILE).read_text())
            print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
            return 0
        log.info("resuming from %s at epoch %d, step %d", state_path, trainer.epoch, trainer.step)
        drop_metrics_after(out / METRICS_FILE, trainer.step)
        metrics_mode = "a"
    else:
        held = files_of_a_run(out)
        if held and not args.resume:  # a new run's files must not mix with (and replace) another's
            raise CliError(
                f"{out} already holds a run ({', '.join(held)}); pass --resume to continue it, or give "
                "another --out"
            )
        if args.resume:
            log.info("no training state in %s: starting the run there", out)
        trainer = Trainer(make_config(args), log_every=args.log_every)
        metrics_mode = "w"
    out.mkdir(parents=True, exist_ok=True)  # only once the configuration and the data are good
    config = trainer.config
    log.info("training %s on %s: %d steps", config.hidden, trainer.device, trainer.total_steps)

    bar = tqdm(
        total=trainer.total_steps,
        initial=trainer.step,
        unit="step",
        disable=args.no_progress,
        dynamic_ncols=True,
    )
    latest: dict[str, str] = {}
    with open(out / METRICS_FILE, metrics_mode) as metrics_file:

        def on_metrics(record: dict[str, Any]) -> None:
            metrics_file.write(json.dumps(record) + "\n")
            if record["kind"] == "train":
                bar.update(record["step"] - bar.n)
                latest["head_acc"] = f"{record['head_accuracy']:.3f}"
                latest["samples/s"] = f"{record['samples_per_s']:.0f}"
            else:
                latest[f"{record['split']}_err_scan"] = f"{record['error_scan']:.4f}"
                latest[f"{record['split']}_err_softmax"] = f"{record['error_softmax']:.4f}"
                if args.no_progress:
                    log.info("epoch %d: %s", record["epoch"], latest)
            bar.set_postfix(latest, refresh=False)

        def on_epoch_end(t: Trainer) -> None:
            metrics_file.flush()
            write_atomically(state_path, save_training_state(t))
            save_model_dir(out, t.model, t.config)

        result = trainer.fit(on_metrics=on_metrics, on_epoch_end=on_epoch_end, max_steps=args.max_steps)
    bar.close()
    save_model_dir(out, trainer.model, config)
    if result.stopped:
        write_atomically(state_path, save_training_state(trainer))
    summary = {
        "test_error_scan": result.test_error_scan,
        "test_error_softmax": result.test_error_softmax,
        "epochs": result.epochs,
        "steps": result.steps,
        "stopped_early": result.stopped,
        "samples_per_s": result.samples_per_s,
        "wall_s": result.wall_s,
        "device": result.device,
        "torch_threads": torch.get_num_threads(),
        "config": config.model_dump(),
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from ffcore.checkpoint import load_model_dir
    from ffcore.images import preprocess_picture
    from ffcore.model import predict

    model, config = _load(args.model, load_model_dir)
    digits = []
    for path in args.images:
        try:
            with Image.open(path) as image:
                digits.append(preprocess_picture(image, config.dataset))
        # OSError: a missing file, a folder, a truncated picture.
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise CliError(f"{path}: {error}") from error
    result = predict(model, np.stack(digits))
    for i, path in enumerate(args.images):
        answer = {
            "image": path,
            "scan_label": int(result.scan_label[i]),
            "head_label": int(result.head_label[i]),
            "scan_class": config.class_names[int(result.scan_label[i])],
            "head_class": config.class_names[int(result.head_label[i])],
            "scan_scores": [round(float(s), 3) for s in result.scan_scores[i]],
            "head_probs": [round(float(p), 4) for p in result.head_probs[i]],
        }
        print(json.dumps(answer))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ffcore.checkpoint import load_model_dir
    from ffcore.data import load_dataset
    from ffcore.device import resolve_device
    from ffcore.evaluation import evaluate

    device = resolve_device(args.device)
    model, config = _load(args.model, lambda path: load_model_dir(path, device))
    if args.data_dir is not None:
        config = config.model_copy(update={"data_dir": args.data_dir})
    try:
        split = load_dataset(config, device).split(args.split)
    except ValueError as error:  # --split val of a model trained on all 60k
        raise CliError(str(error)) from error
    errors = evaluate(model, split)
    print(json.dumps({"split": args.split, **errors}))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from ffcore import sweep
    from ffcore.device import run_device

    if args.device is not None:
        args.device = run_device(args.device)
    try:
        spec = sweep.load_spec(args.spec)
        sweep.prepare_out(spec, Path(args.out), args.resume)
    except ValueError as error:
        raise CliError(str(error)) from error
    try:
        return sweep.cmd_sweep(spec, args)
    except sweep.ResumeMismatch as error:
        raise CliError(str(error)) from error


def _load(path: str, loader):
    from safetensors import SafetensorError

    try:
        return loader(path)
    except FileNotFoundError as error:
        raise CliError(str(error)) from error
    except ValidationError as error:  # a model whose stored configuration this version refuses
        raise CliError(f"{path}: its configuration is invalid: {format_validation_error(error)}") from error
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:  # RuntimeError: other shapes
        raise CliError(f"{path}: not a model this version can load ({str(error).splitlines()[0]})") from error


def main(argv: list[str] | None = None) -> int:
    from ffcore.data import DataError
    from ffcore.device import DeviceError
    from ffcore.train import DivergedError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    commands = {"train": cmd_train, "predict": cmd_predict, "eval": cmd_eval, "sweep": cmd_sweep}
    try:
        return commands[args.command](args)
    except (CliError, DataError, DeviceError, RunFolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except DivergedError as error:  # the run cannot succeed; its last saved state is left as it was
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # e.g. an --out that cannot be written
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = " (train --resume, or sweep --resume, with the same --out continues it)"
        print(f"interrupted{hint if args.command in ('train', 'sweep') else ''}", file=sys.stderr)
        return 130
