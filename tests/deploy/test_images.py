"""What the images hold: does the dashboard run in its image (no PyTorch, Redis client or service code),
and does each image install every package its code imports?

Without a Docker engine the image is not built; instead its /app is rebuilt from the Dockerfile's
COPY lines in a temporary folder, and the app runs from there in Streamlit's AppTest with every
module the image lacks made unimportable. Its third-party imports are checked against what
`pip install '.[dashboard]'` installs.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.support.dockerfiles import final_stage
from tests.support.packages import absolute_imports, canonical
from tests.support.paths import REPO
from tests.support.ports import free_port

DOCKERFILE = REPO / "docker" / "dashboard.Dockerfile"
# What the image does not have: PyTorch, the Redis client, Celery, and the service and training code.
NOT_IN_IMAGE = [
    "torch", "torchvision", "safetensors", "redis", "celery", "kombu", "fflab", "api", "worker", "ffcore",
]  # fmt: skip

RUN_PAGES = """
import json, sys
import importlib.abc

class NotInImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the dashboard image)")
        return None

sys.meta_path.insert(0, NotInImage())
from streamlit.testing.v1 import AppTest

app = AppTest.from_file("dashboard/app.py", default_timeout=120).run()
report = {{}}
for page in (None, "views/live.py", "views/draw.py"):
    if page is not None:
        app.switch_page(page).run()
    report[page or "runs"] = {{
        "exceptions": [e.value for e in app.exception],
        "errors": [e.value for e in app.error],
    }}
print(json.dumps(report))
"""


def image_app(tmp_path: Path) -> Path:
    """/app of the dashboard image: the files its Dockerfile copies from the repository."""
    app = tmp_path / "app"
    for keyword, rest in final_stage(DOCKERFILE):
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        *sources, destination = shlex.split(rest)
        for source in sources:
            target = app / destination / Path(source).name if destination.endswith("/") else app / destination
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO / source).is_dir():
                shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(REPO / source, target)
    return app


@pytest.mark.timeout(300)
def test_dashboard_pages_run_with_only_what_the_image_holds(tmp_path):
    app = image_app(tmp_path)
    assert (app / "dashboard" / "app.py").is_file()
    env = {
        "PATH": str(Path(sys.executable).parent),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(app),  # as in the image
        "FF_API_URL": f"http://127.0.0.1:{free_port()}",  # nothing there: pages must say so, not crash
    }
    result = subprocess.run(
        [sys.executable, "-c", RUN_PAGES.format(blocked=NOT_IN_IMAGE)],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for page, outcome in report.items():
        assert outcome["exceptions"] == [], (page, outcome["exceptions"])
        assert any("Cannot reach the FF Lab API" in error for error in outcome["errors"]), (page, outcome)


def requirement_closure(project: dict, extra: str) -> set[str]:
    """Every distribution that `pip install '.[extra]'` installs: the project's requirements from
    pyproject.toml (self-references like fflab[core] included), the rest per the venv's metadata."""
    seen: set[tuple[str, str]] = set()  # (distribution, extra or "")
    pending = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"][extra]]
    while pending:
        requirement = pending.pop()
        name = canonical(requirement.name)
        for wanted in {"", *requirement.extras}:
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            if name == canonical(project["name"]):
                pending += [Requirement(r) for r in project["optional-dependencies"].get(wanted, [])]
                continue
            for child in map(Requirement, metadata.requires(name) or []):
                # A dependency of the distribution itself, or of this extra of it.
                if child.marker is None or child.marker.evaluate({"extra": wanted}):
                    pending.append(child)
    return {name for name, _ in seen}


def third_party_imports(paths: list[Path], local: set[str]) -> dict[str, str]:
    """Top-level modules imported by the files, other than the standard library's and `local`:
    module -> where (file:line) it is first imported."""
    found: dict[str, str] = {}
    for path in paths:
        for module, line in absolute_imports(path):
            top = module.split(".")[0]
            if top not in local and top not in sys.stdlib_module_names:
                found.setdefault(top, f"{path.relative_to(REPO)}:{line}")
    return found


@pytest.mark.parametrize(
    ("image", "extra", "packages"),
    [
        ("dashboard", "dashboard", ["dashboard"]),
        ("api and worker", "service", ["api", "worker", "fflab", "ffcore"]),
    ],
)
def test_code_imports_only_what_its_image_installs(image, extra, packages):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    installed = requirement_closure(project, extra)
    if image == "dashboard":
        assert "torch" not in installed and "redis" not in installed

    module_owners = metadata.packages_distributions()
    paths = []
    for package in packages:
        path = REPO / package
        paths += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    local = {"dashboard", "ffcore", "fflab", "api", "worker"}
    for module, where in third_party_imports(paths, local).items():
        owners = {canonical(d) for d in module_owners.get(module, [])}
        assert owners & installed, (
            f"{where} imports {module}, which pip install '.[{extra}]' (the {image} image) does not install; "
            "add its distribution to that extra in pyproject.toml"
        )
