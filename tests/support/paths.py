"""Where things are: the repository's root and the bin folder of the venv the tests run in."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The venv the tests run in; `make up` puts the same bin folder first on PATH.
VENV_BIN = Path(sys.executable).parent
