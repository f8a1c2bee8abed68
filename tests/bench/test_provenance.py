"""The provenance block the benchmarks write: real values from this checkout, interpreter and machine."""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench._provenance import checkout_commit, command_line, provenance, uncommitted_changes
from tests.support.paths import REPO


def head(root: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_the_block_names_this_checkouts_commit_torch_python_and_machine():
    before = head(REPO)
    block = provenance(load_before=[0.5, 0.25, 0.125])
    # Others may commit meanwhile: the commit is HEAD's just before or just after.
    assert block["commit"] in {before, head(REPO)} and len(block["commit"]) == 40
    assert isinstance(block["uncommitted_changes"], bool)
    assert block["torch"] == torch.__version__
    assert block["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert abs(calendar.timegm(time.strptime(block["at"], "%Y-%m-%dT%H:%M:%SZ")) - time.time()) < 60
    machine = block["machine"]
    assert 1 <= machine["cpus"] <= os.cpu_count()
    assert machine["cpu"] and machine["platform"]
    assert machine["load_average_before"] == [0.5, 0.25, 0.125]
    assert len(machine["load_average_after"]) == 3 and all(x >= 0 for x in machine["load_average_after"])
    assert json.loads(json.dumps(block)) == block
    assert "load_average_before" not in provenance()["machine"]


def test_commit_and_uncommitted_changes_follow_the_checkout(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, check=True)

    assert (checkout_commit(tmp_path), uncommitted_changes(tmp_path)) == (None, None)  # not a checkout
    git("init", "-q")
    (tmp_path / "a.txt").write_text("one\n")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "one")
    assert checkout_commit(tmp_path) == head(tmp_path)
    assert uncommitted_changes(tmp_path) is False
    (tmp_path / "a.txt").write_text("two\n")
    assert uncommitted_changes(tmp_path) is True


def test_a_bench_module_is_written_as_the_python_dash_m_command_that_runs_it():
    python = Path(sys.executable).name
    argv = [str(REPO / "bench" / "sse_load.py"), "--streams", "300", "--label", "after fix"]
    assert command_line(argv) == f"{python} -m bench.sse_load --streams 300 --label 'after fix'"
    assert command_line(["/usr/bin/tool.py", "-q"]) == f"{python} /usr/bin/tool.py -q"
