"""Read the Dockerfiles as the deploy tests check them: instructions, the final stage, its ENV."""

from __future__ import annotations

import re
import shlex
from pathlib import Path


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def final_stage(path: Path) -> list[tuple[str, str]]:
    instructions = dockerfile_instructions(path)
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def dockerfile_env(path: Path) -> dict[str, str]:
    env = {}
    for keyword, rest in final_stage(path):
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
    return env
