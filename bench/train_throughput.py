"""Training throughput against the matmul-bound limit, measured in one run.

The limit is the time that the step's matrix products alone take in torch.mm at the recipe's
shapes (batch B, widths 784 -> hidden...): per layer the neutral forward (B rows), the positive
and negative forward (2B rows) and the weight gradient (out x 2B @ 2B x in), plus the head's
forward and gradient. Training rounds and matmul rounds alternate, so that the noise of a shared
machine hits both; the ratio of medians is the figure.

    .venv/bin/python -m bench.train_throughput --data-dir ../shared/datasets [--preset reference]
    .venv/bin/python -m bench.train_throughput --data-dir ../shared/datasets --threads N
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from ffcore import RunConfig, Trainer
from ffcore.config import NUM_PIXELS


def matmul_operands(config: RunConfig) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (left, right) operands of every matrix product in one training step."""
    batch = config.batch_size
    widths = [NUM_PIXELS, *config.hidden]
    operands = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        weight_t = torch.randn(fan_in, fan_out)
        operands.append((torch.randn(batch, fan_in), weight_t))  # neutral pass
        operands.append((torch.randn(2 * batch, fan_in), weight_t))  # positive + negative pass
        operands.append((torch.randn(fan_out, 2 * batch), torch.randn(2 * batch, fan_in)))  # dW
    head_in = sum(config.hidden[i] for i in config.head_layer_indices)
    operands.append((torch.randn(batch, head_in), torch.randn(head_in, 10)))
    operands.append((torch.randn(10, batch), torch.randn(batch, head_in)))
    return operands


def step_flops(operands: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return float(sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in operands))


def time_matmuls(operands, steps: int) -> float:
    outs = [torch.empty(a.shape[0], b.shape[1]) for a, b in operands]
    start = time.perf_counter()
    for _ in range(steps):
        for (a, b), out in zip(operands, outs, strict=True):
            torch.mm(a, b, out=out)
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
    operands = matmul_operands(config)
    time_training(trainer, 10)  # warm up allocator and kernels
    time_matmuls(operands, 10)

    train_s, matmul_s = [], []
    for _ in range(args.rounds):
        train_s.append(time_training(trainer, args.steps))
        matmul_s.append(time_matmuls(operands, args.steps))
    train_step, matmul_step = statistics.median(train_s), statistics.median(matmul_s)
    ratios = [m / t for t, m in zip(train_s, matmul_s, strict=True)]
    result = {
        "preset": args.preset,
        "hidden": config.hidden,
        "batch_size": config.batch_size,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "train_samples_per_s": config.batch_size / train_step,
        "matmul_limit_samples_per_s": config.batch_size / matmul_step,
        "fraction_of_limit": matmul_step / train_step,
        "fraction_of_limit_per_round": ratios,
        "matmul_gflops": step_flops(operands) / matmul_step / 1e9,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
    }
    print(f"{args.preset} {config.hidden} batch {config.batch_size}, {result['threads']} threads")
    print(f"  training     {result['train_samples_per_s']:8.0f} samples/s")
    print(
        f"  matmul limit {result['matmul_limit_samples_per_s']:8.0f} samples/s "
        f"({result['matmul_gflops']:.0f} GFLOP/s in torch.mm)"
    )
    print(
        f"  fraction of the limit: {result['fraction_of_limit']:.1%} "
        f"(rounds: {min(ratios):.1%} .. {max(ratios):.1%})"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
