"""Where things are: the repository's root, the bin folder of the venv the tests run in, and the
scripts under scripts/ (not a package) as modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
# The venv the tests run in; `make up` puts the same bin folder first on PATH.
VENV_BIN = Path(sys.executable).parent


def load_script(name: str) -> ModuleType:
    """scripts/`name`.py imported as a module, for tests of its functions."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
