"""Training throughput against the matmul-bound limit, measured in one run.

The limit is the time that the step's own matrix products alone take. They are recorded from a
real training step (every aten.mm and aten.addmm it dispatches, with their shapes and memory
layouts) and replayed with random operands of the same shapes and strides. For the reference
preset with hard negatives, per layer above the first: the neutral forward (B rows), the positive
and negative forward (2B rows) and the weight gradient (out x 2B @ 2B x in); the first layer does
its image product once for all three passes (B x 784 @ 784 x H) and its weight gradient once for
both (H x B @ B x 784), plus products with the ten label columns; then the head's forward (twice:
once to choose the negatives) and its gradient. Training rounds and matmul rounds alternate, so that
the noise of a shared machine hits both; the ratio of medians is the figure.

(Earlier versions of this benchmark timed a fixed list of products that gave the first layer
5·B·784·H multiply-adds, as if it did the work of the layers above, where the step does 2·B·784·H:
the "limit" held about 20% more arithmetic than the step does, so the fraction read high.)

    .venv/bin/python -m bench.train_throughput --data-dir ../shared/datasets [--preset reference]
    .venv/bin/python -m bench.train_throughput --data-dir ../shared/datasets --threads N
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench._provenance import provenance
from ffcore import RunConfig, Trainer

MATMULS = {torch.ops.aten.mm.default: "mm", torch.ops.aten.addmm.default: "addmm"}


@dataclass
class Product:
    """One matrix product of the step: 'mm' (a @ b) or 'addmm' (bias + a @ b), with its operands' layout."""

    op: str
    operands: list[tuple[tuple[int, ...], tuple[int, ...]]]  # (shape, strides) of [bias,] a, b

    @property
    def flops(self) -> int:
        (m, k), (_, n) = self.operands[-2][0], self.operands[-1][0]
        return 2 * m * k * n

    def describe(self) -> str:
        (m, k), (_, n) = self.operands[-2][0], self.operands[-1][0]
        return f"{self.op} {m}x{k} @ {k}x{n}"


class RecordProducts(TorchDispatchMode):
    """Records every matrix product dispatched while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.products: list[Product] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in MATMULS:
            layout = [(tuple(a.shape), tuple(a.stride())) for a in args if torch.is_tensor(a)]
            self.products.append(Product(MATMULS[func], layout))
        return func(*args, **(kwargs or {}))


def step_products(trainer: Trainer) -> list[Product]:
    """The matrix products of one real training step (the step is taken)."""
    train, batch = trainer.data.train, trainer.config.batch_size
    with RecordProducts() as recorder:
        trainer.train_step(train.images[:batch], train.labels[:batch])
    if not recorder.products:
        raise RuntimeError("recorded no matrix products: the step no longer dispatches aten.mm/addmm")
    return recorder.products


def replay_operands(products: list[Product]) -> list[tuple[str, list[torch.Tensor], torch.Tensor]]:
    """Random operands with each product's shapes and strides, and an output to write into."""
    prepared = []
    for product in products:
        tensors = [torch.empty_strided(shape, stride).normal_() for shape, stride in product.operands]
        (m, _), (_, n) = product.operands[-2][0], product.operands[-1][0]
        prepared.append((product.op, tensors, torch.empty(m, n)))
    return prepared


def time_matmuls(prepared, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        for op, tensors, out in prepared:
            if op == "mm":
                torch.mm(*tensors, out=out)
            else:
                torch.addmm(*tensors, out=out)
    return (time.perf_counter() - start) / steps


def time_training(trainer: Trainer, steps: int) -> float:
    start = time.perf_counter()
    trainer.fit(max_steps=trainer.step + steps)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="reference")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's)")
    parser.add_argument("--steps", type=int, default=60, help="steps per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_throughput.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = RunConfig.from_preset(args.preset, data_dir=args.data_dir, device="cpu", eval_every=10_000)
    trainer = Trainer(config, log_every=10**9)
    products = step_products(trainer)
    prepared = replay_operands(products)
    time_training(trainer, 10)  # warm up allocator and kernels
    time_matmuls(prepared, 10)

    train_s, matmul_s = [], []
    for _ in range(args.rounds):
        train_s.append(time_training(trainer, args.steps))
        matmul_s.append(time_matmuls(prepared, args.steps))
    train_step, matmul_step = statistics.median(train_s), statistics.median(matmul_s)
    ratios = [m / t for t, m in zip(train_s, matmul_s, strict=True)]
    step_flops = sum(p.flops for p in products)
    result = {
        "preset": args.preset,
        "hidden": config.hidden,
        "batch_size": config.batch_size,
        "negatives": config.negatives,
        "threads": torch.get_num_threads(),
        "train_samples_per_s": config.batch_size / train_step,
        "matmul_limit_samples_per_s": config.batch_size / matmul_step,
        "fraction_of_limit": matmul_step / train_step,
        "fraction_of_limit_per_round": ratios,
        "matmul_gflops": step_flops / matmul_step / 1e9,
        "train_gflops": step_flops / train_step / 1e9,
        "step_gflop": step_flops / 1e9,
        "step_products": [p.describe() for p in products],
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        **provenance(),
    }
    print(f"{args.preset} {config.hidden} batch {config.batch_size}, {result['threads']} threads")
    print(f"  the step's own products: {len(products)}, {result['step_gflop']:.3f} GFLOP a step")
    print(f"  training     {result['train_samples_per_s']:8.0f} samples/s")
    print(
        f"  matmul limit {result['matmul_limit_samples_per_s']:8.0f} samples/s "
        f"({result['matmul_gflops']:.0f} GFLOP/s in torch.mm)"
    )
    print(
        f"  fraction of the limit (the step's own products alone): {result['fraction_of_limit']:.1%} "
        f"(rounds: {min(ratios):.1%} .. {max(ratios):.1%})"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
