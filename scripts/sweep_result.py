"""Package a finished (or partial) `python -m ffcore sweep` folder as a result file for docs/results.

    python scripts/sweep_result.py runs/exp_reference_50k docs/results/experiment_reference_50k.json \
        --command "python -m ffcore sweep ..." --commit 472cf66 --note "..."

The file holds the command and commit that made it, a note, the sweep's table (every run, and the
mean and standard deviation per setting) and every run's evaluation records (its curves), keyed
`<setting>-seed<seed>` as the sweep's run folders are.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def package(sweep_dir: Path, command: str, commit: str, note: str) -> dict[str, Any]:
    table = json.loads((sweep_dir / "table.json").read_text())
    evaluations = {}
    for run_dir in sorted((sweep_dir / "runs").iterdir()):
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        evaluations[run_dir.name] = [r for r in map(json.loads, filter(None, lines)) if r["kind"] == "eval"]
    return {"command": command, "commit": commit, "note": note, "table": table, "evaluations": evaluations}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep's --out folder")
    parser.add_argument("out", type=Path, help="the result file to write (JSON)")
    parser.add_argument("--command", required=True, help="the command that ran the sweep")
    parser.add_argument("--commit", required=True, help="the commit it ran at")
    parser.add_argument("--note", default="", help="what else a reader should know")
    args = parser.parse_args(argv)
    result = package(args.sweep_dir, args.command, args.commit, args.note)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
