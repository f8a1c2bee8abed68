"""Package a finished (or partial) experiment as a result file for docs/results: a
`python -m ffcore sweep` folder, or an experiment the service ran (its API URL).

    python scripts/sweep_result.py runs/exp_reference_50k docs/results/experiment_reference_50k.json \
        --command "python -m ffcore sweep ..." --commit 472cf66 --note "..."
    python scripts/sweep_result.py http://127.0.0.1:8000/api/v1/experiments/2fea2b160330 \
        docs/results/experiment_fashion.json --command "POST /api/v1/experiments ..." --commit ...

The file holds the command and commit that made it, a note, the experiment's table (every run, and
the mean and standard deviation per setting) and every run's evaluation records (its curves), keyed
`<setting>-seed<seed>` as the sweep's run folders are. From the API, FF_API_KEY (or FF_READ_KEY) in
the environment is sent as X-API-Key when set.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import httpx


def read_records(path: Path) -> list[dict[str, Any]]:
    """A run's metrics.jsonl, one record a line; a last line cut short (a killed run) is left out.
    Shared with scripts/run_result.py."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise
    return records


def write_result(out: Path, result: dict[str, Any]) -> None:
    """A result file as docs/results holds them: JSON, one space an indent level."""
    out.write_text(json.dumps(result, indent=1) + "\n")


def package(sweep_dir: Path, command: str, commit: str, note: str) -> dict[str, Any]:
    table = json.loads((sweep_dir / "table.json").read_text())
    evaluations = {}
    for run_dir in sorted((sweep_dir / "runs").iterdir()):
        records = read_records(run_dir / "metrics.jsonl")
        evaluations[run_dir.name] = [r for r in records if r["kind"] == "eval"]
    return {"command": command, "commit": commit, "note": note, "table": table, "evaluations": evaluations}


def surviving_evaluations(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A run's eval records as its final history holds them: a resumed attempt's rewind record drops
    the evaluations the dead attempt logged past the checkpoint it resumed from."""
    kept: list[dict[str, Any]] = []
    for record in records:
        if record.get("kind") == "rewind":
            kept = [r for r in kept if r["step"] <= record["step"]]
        elif record.get("kind") == "eval":
            kept.append({k: v for k, v in record.items() if k != "id"})  # the stream id is the store's
    return kept


def package_from_api(experiment_url: str, command: str, commit: str, note: str) -> dict[str, Any]:
    key = os.environ.get("FF_API_KEY") or os.environ.get("FF_READ_KEY")
    headers = {"X-API-Key": key} if key else {}
    base = experiment_url.split("/experiments/")[0]
    with httpx.Client(headers=headers, timeout=60) as client:
        experiment = client.get(experiment_url).raise_for_status().json()
        table = experiment["table"]
        evaluations = {}
        for setting in table["settings"]:
            for run in setting["runs"]:
                if run["run_id"] is None:
                    continue
                page = client.get(f"{base}/runs/{run['run_id']}/metrics", params={"max_points": 2})
                records = page.raise_for_status().json()["records"]
                evaluations[f"{setting['trial']:03d}-seed{run['seed']}"] = surviving_evaluations(records)
    return {
        "command": command,
        "commit": commit,
        "note": note,
        "experiment": {k: experiment[k] for k in ("id", "name", "status", "created_at", "finished_at")},
        "table": table,
        "evaluations": evaluations,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "source",
        help="the sweep's --out folder, or the experiment's URL (http://HOST:PORT/api/v1/experiments/ID)",
    )
    parser.add_argument("out", type=Path, help="the result file to write (JSON)")
    parser.add_argument("--command", required=True, help="the command that ran the experiment")
    parser.add_argument("--commit", required=True, help="the commit it ran at")
    parser.add_argument("--note", default="", help="what else a reader should know")
    args = parser.parse_args(argv)
    if args.source.startswith(("http://", "https://")):
        result = package_from_api(args.source, args.command, args.commit, args.note)
    else:
        result = package(Path(args.source), args.command, args.commit, args.note)
    write_result(args.out, result)


if __name__ == "__main__":
    main()
