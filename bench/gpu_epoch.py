"""Seconds per epoch of the `reference` preset on a GPU, and the test error after those epochs.

Runs the first --epochs epochs of the 100-epoch recipe (same schedule), times each epoch
(evaluation included, as a full run pays it), and extrapolates the 100-epoch wall time.

    .venv/bin/python -m bench.gpu_epoch --data-dir ../shared/datasets [--epochs 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ffcore import RunConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu_epoch.json"))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible to PyTorch; run this on a GPU machine (or --device cpu)")

    config = RunConfig.from_preset("reference", data_dir=args.data_dir, device=args.device)
    trainer = Trainer(config, log_every=10**9)
    stamps = [time.perf_counter()]

    def on_epoch_end(t: Trainer) -> None:
        if args.device == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    trainer.fit(on_epoch_end=on_epoch_end, max_steps=args.epochs * trainer.steps_per_epoch)
    epoch_s = [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]
    errors = trainer.evaluate("test")
    steady = min(epoch_s[1:]) if len(epoch_s) > 1 else epoch_s[0]  # the first epoch pays warm-up
    result = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "epochs": len(epoch_s),
        "seconds_per_epoch": epoch_s,
        "projected_100_epochs_s": steady * config.epochs,
        "test_error_scan": errors["error_scan"],
        "test_error_softmax": errors["error_softmax"],
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
