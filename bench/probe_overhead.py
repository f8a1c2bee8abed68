"""What do the per-layer probes add to training time? (The target: at most 5%.)

Every evaluation runs the probes (ffcore.probes) on its own pass. This times, in alternating rounds
on one network, an evaluation of the validation split without probes and one with them, and a
block of training steps; the probes' extra time over the training time between two evaluations
(an epoch at `eval_every=1`, the default) is the overhead. Neighbouring measurements see the same
machine, so the ratio is less sensitive to a shared machine's load than the absolute times. It
prints the figures; the JSON goes to bench/results/probe_overhead.json.

    .venv/bin/python -m bench.probe_overhead --data-dir ../shared/datasets            # reference
    .venv/bin/python -m bench.probe_overhead --data-dir ../shared/datasets --preset paper
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from bench._provenance import provenance
from ffcore import RunConfig, Trainer, load_dataset
from ffcore.evaluation import evaluate
from ffcore.probes import PROBE_IMAGES
from tests.support.paths import REPO

RESULTS = REPO / "bench" / "results" / "probe_overhead.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--preset", default="reference")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50, help="training steps timed per round")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = RunConfig.from_preset(args.preset, data_dir=args.data_dir, device="cpu")
    data = load_dataset(config)
    trainer = Trainer(config, data)
    trainer.fit(max_steps=200)  # a network past its first steps, as an evaluation would meet it
    val = data.split("val")

    plain_s, probes_s, step_s = [], [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        evaluate(trainer.model, val)
        plain_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        evaluate(trainer.model, val, probes=True)
        probes_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        trainer.fit(max_steps=trainer.step + args.steps)
        step_s.append((time.perf_counter() - start) / args.steps)

    epoch_s = statistics.median(step_s) * trainer.steps_per_epoch
    extra_s = statistics.median(p - q for p, q in zip(probes_s, plain_s, strict=True))
    overhead = extra_s / (epoch_s + statistics.median(plain_s))
    result = {
        "preset": args.preset,
        "hidden": config.hidden,
        "threads": args.threads,
        "val_images": len(val),
        "probe_images": PROBE_IMAGES,
        "eval_plain_s": statistics.median(plain_s),
        "eval_probes_s": statistics.median(probes_s),
        "probes_extra_s": extra_s,
        "epoch_s": epoch_s,
        "overhead_per_epoch": overhead,
        "rounds": {"eval_plain_s": plain_s, "eval_probes_s": probes_s, "step_s": step_s},
        **provenance(),
    }
    print(
        f"{args.preset} {config.hidden}, {args.threads} thread(s): "
        f"evaluation {result['eval_plain_s']:.2f} s, "
        f"with probes {result['eval_probes_s']:.2f} s (+{extra_s:.2f} s); an epoch {epoch_s:.1f} s; "
        f"overhead {overhead:.1%} of training time at one evaluation per epoch"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
