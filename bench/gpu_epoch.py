"""Seconds per epoch of a preset's recipe on a GPU (or the CPU), and the test error after those epochs.

Runs the first --epochs epochs of the recipe (same schedule), times each epoch (evaluation
included, as a full run pays it) and projects the whole recipe's wall time from the median epoch
after the first (the first pays for CUDA's and the allocator's warm-up; with one epoch, that one).
On a GPU, every clock is read after torch.cuda.synchronize(), so an epoch's time includes the work
queued in it. The JSON records the versions and the float32 matmul settings (TF32 or not), which
change GPU times by large factors.

    .venv/bin/python -m bench.gpu_epoch --data-dir ../shared/datasets [--epochs 5] [--device cuda]
    .venv/bin/python -m bench.gpu_epoch --data-dir ../shared/datasets --device cpu --preset quick --epochs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench._provenance import provenance
from ffcore import PRESETS, RunConfig, Trainer


def environment(device: torch.device) -> dict[str, Any]:
    """What the times depend on besides the code and machine (`provenance`): the device, float32 matmul
    settings, CUDA and cuDNN versions."""
    info: dict[str, Any] = {
        "cuda": torch.version.cuda,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info |= {
            "device": torch.cuda.get_device_name(device),
            "cudnn": torch.backends.cudnn.version(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            # Newer PyTorch's per-backend setting ("ieee" or "tf32"), where it has one.
            "fp32_precision_matmul": getattr(torch.backends.cuda.matmul, "fp32_precision", None),
        }
    else:
        info["device"] = "cpu"
    return info


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--preset", default="reference", choices=sorted(PRESETS))
    parser.add_argument("--epochs", type=int, default=5, help="epochs to time (default: %(default)s)")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: %(default)s)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu_epoch.json"))
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible to PyTorch; run this on a GPU machine (or --device cpu)")
    if args.device.startswith("cuda:"):
        torch.cuda.set_device(torch.device(args.device))
    device_name = "cuda" if args.device.startswith("cuda") else "cpu"

    config = RunConfig.from_preset(args.preset, data_dir=args.data_dir, device=device_name)
    trainer = Trainer(config, log_every=10**9)

    def clock() -> float:
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()  # the queued work belongs to the epoch it was queued in
        return time.perf_counter()

    stamps = [clock()]
    trainer.fit(
        on_epoch_end=lambda t: stamps.append(clock()),
        max_steps=min(args.epochs, config.epochs) * trainer.steps_per_epoch,
    )
    epoch_s = [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]
    steady = statistics.median(epoch_s[1:] if len(epoch_s) > 1 else epoch_s)
    errors = trainer.evaluate("test")
    result = {
        "preset": args.preset,
        **environment(trainer.device),
        "epochs_timed": len(epoch_s),
        "seconds_per_epoch": epoch_s,
        "median_epoch_s": steady,
        "median_of": "epochs 2.." if len(epoch_s) > 1 else "epoch 1",
        "recipe_epochs": config.epochs,
        "projected_recipe_s": steady * config.epochs,
        "test_error_scan": errors["error_scan"],
        "test_error_softmax": errors["error_softmax"],
        **provenance(),
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
