"""Package one training run (a `python -m ffcore train --out` folder) as a result file for docs/results.

    python scripts/run_result.py runs/reference docs/results/reference_50k.json \\
        --command "python -m ffcore train --preset reference ..." --note "..."

A finished run's file holds the command and commit that made it, a note, the run's summary.json and its
evaluation records (the eval records of its metrics.jsonl, in order). A partial run's (--partial, or a
folder whose summary.json is missing or says stopped_early) holds, in place of the summary, epochs_done,
and its training curve thinned: one point per finished epoch, at most --curve-points of them.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sweep_result.py, beside this script
from sweep_result import read_records, write_result  # noqa: E402

SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
CURVE_POINTS = 100


class RefusedError(Exception):
    """A problem the user can fix: one line, exit status 2."""


def recorded_commit(run_dir: Path) -> str | None:
    """The commit the run's folder records (a git_commit in summary.json or config.json, at the top or
    under provenance), if any. `python -m ffcore train` records none today."""
    for name in (SUMMARY_FILE, "config.json"):
        path = run_dir / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        for holder in (data, data.get("provenance") or {}):
            if holder.get("git_commit"):
                return str(holder["git_commit"])
    return None


def head_commit() -> str:
    """The short sha of this repository's HEAD."""
    root = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except OSError as error:
        raise RefusedError(f"no git to read HEAD ({error}); pass --commit") from error
    if done.returncode != 0:
        raise RefusedError(f"cannot read {root}'s HEAD; pass --commit")
    return done.stdout.strip()


def curve_point(record: dict[str, Any]) -> dict[str, Any]:
    """A train record as a curve point: where it is, the head's and each layer's FF accuracy, throughput."""
    epoch = record["epoch"]
    return {
        "epoch": int(epoch) if float(epoch).is_integer() else epoch,
        "step": record["step"],
        "head_accuracy": record["head_accuracy"],
        "ff_accuracy": [layer["ff_accuracy"] for layer in record["layers"]],
        "samples_per_s": record["samples_per_s"],
    }


def train_curve(records: list[dict[str, Any]], points: int = CURVE_POINTS) -> list[dict[str, Any]]:
    """The train records thinned: those that end an epoch (all of them when none does), then, when more
    than `points` are left, every k-th counted back from the last (k = ceil(n / points)), so that the
    last is always kept."""
    train = [r for r in records if r.get("kind") == "train"]
    kept = [r for r in train if float(r["epoch"]).is_integer()] or train
    stride = max(1, math.ceil(len(kept) / points))
    return [curve_point(r) for r in kept[::-1][::stride][::-1]]


def package_run(
    run_dir: Path,
    command: str,
    commit: str | None,
    note: str,
    partial: bool = False,
    points: int = CURVE_POINTS,
) -> dict[str, Any]:
    metrics = run_dir / METRICS_FILE
    if not metrics.is_file():
        raise RefusedError(f"{run_dir}: no {METRICS_FILE}; expected a `python -m ffcore train --out` folder")
    records = read_records(metrics)
    summary_path = run_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    commit = commit or recorded_commit(run_dir) or head_commit()
    evaluations = [r for r in records if r.get("kind") == "eval"]
    if summary is not None and not partial and not summary.get("stopped_early"):
        return {
            "command": command,
            "commit": commit,
            "note": note,
            "summary": summary,
            "evaluations": evaluations,
        }
    if summary is not None:
        epochs_done = summary["epochs"]
    else:  # a killed run: the epochs whose every step its records show
        epochs_done = max((math.floor(r["epoch"]) for r in records if "epoch" in r), default=0)
    return {
        "command": command,
        "commit": commit,
        "note": note,
        "epochs_done": epochs_done,
        "evaluations": evaluations,
        "train_curve": train_curve(records, points),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", type=Path, help="the run's --out folder (metrics.jsonl, summary.json)"
    )
    parser.add_argument("out", metavar="OUT.json", type=Path, help="the result file to write (JSON)")
    parser.add_argument("--command", required=True, help="the command that ran the training")
    parser.add_argument(
        "--commit",
        help="the commit it ran at (default: the one RUN_DIR records, if any, which `python -m ffcore train` "
        "does not today; else this repository's HEAD, short, at packaging time: pass --commit when the run "
        "is older than HEAD)",
    )
    parser.add_argument("--note", default="", help="what else a reader should know")
    parser.add_argument(
        "--partial",
        action="store_true",
        help="write the partial layout (epochs_done, evaluations, train_curve) even for a finished run; "
        "the default for a folder whose summary.json is missing or says stopped_early",
    )
    parser.add_argument(
        "--curve-points",
        type=int,
        default=CURVE_POINTS,
        help="the partial layout's train_curve: the train records that end an epoch (all of them when none "
        "does), every k-th counted back from the last when more than this many (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.curve_points < 1:
        parser.error("--curve-points must be at least 1")
    try:
        result = package_run(
            args.run_dir, args.command, args.commit, args.note, args.partial, args.curve_points
        )
    except RefusedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_result(args.out, result)
    if "summary" in result:
        print(f"wrote {args.out}: finished run, {len(result['evaluations'])} evaluations")
    else:
        points = len(result["train_curve"])
        print(
            f"wrote {args.out}: partial run, {result['epochs_done']} epochs done, "
            f"{len(result['evaluations'])} evaluations, {points} curve points"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
