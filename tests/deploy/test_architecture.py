"""docs/architecture.md stays a true map: it names every module on disk, and nothing that is not there."""

from __future__ import annotations

import re

from tests.support.paths import REPO

# The folders whose modules the map lists, each module by its path inside the folder.
MAPPED = ["ffcore", "fflab", "worker", "api", "dashboard", "scripts", "tests/support"]


def modules_section() -> str:
    text = (REPO / "docs" / "architecture.md").read_text()
    return text.split("## Modules", 1)[1].split("\n## ", 1)[0]


def test_every_module_on_disk_is_on_the_map():
    section = modules_section()
    missing = [
        f"{folder}/{path.relative_to(REPO / folder)}"
        for folder in MAPPED
        for path in sorted((REPO / folder).rglob("*.py"))
        if path.name != "__init__.py"
        and "__pycache__" not in path.parts
        and not re.search(rf"(?<![\w/]){re.escape(str(path.relative_to(REPO / folder)))}\b", section)
    ]
    assert not missing, f"docs/architecture.md does not list {missing}"


def test_every_module_on_the_map_is_on_disk():
    on_disk = {
        str(path.relative_to(REPO / folder)) for folder in MAPPED for path in (REPO / folder).rglob("*.py")
    }
    named = set(re.findall(r"(?<![\w/.])((?:[a-z_]+/)?[a-z_]+\.py)\b", modules_section()))
    absent = named - on_disk
    assert not absent, f"docs/architecture.md lists modules that do not exist: {absent}"


def test_no_source_module_outgrows_one_job():
    # About 400 lines is where a module starts to hold two jobs; split it by owner before it grows.
    sources = [p for folder in MAPPED[:5] for p in (REPO / folder).rglob("*.py")]
    long = {str(p.relative_to(REPO)): n for p in sources if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"
