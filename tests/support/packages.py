"""Python packages as the deploy tests see them: what a source file imports, one spelling of a name."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path


def absolute_imports(path: Path) -> Iterator[tuple[str, int]]:
    """(module, line) for every `import x.y` and `from x.y import z` in the file (not relative ones)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno


def canonical(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503): lower case, runs of -_. as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()
