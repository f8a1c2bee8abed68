"""The start-run form's reading of GET /run-options, and the dashboard's independence from PyTorch,
Redis and ffcore."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dashboard import run_schema
from tests.support.paths import REPO

DASHBOARD = REPO / "dashboard"


@pytest.fixture(scope="module")
def config_schema() -> dict:
    """The schema the API answers for a server with FF_MAX_LAYERS=4, FF_MAX_UNITS=2000, FF_MAX_EPOCHS=50."""
    from api.routes.options import config_schema
    from fflab.settings import Settings

    return config_schema(Settings(max_layers=4, max_units=2000, max_epochs=50))


def test_bounds_and_choices_come_from_the_apis_schema(config_schema):
    infos = run_schema.field_infos(config_schema)
    assert infos["epochs"].limits == "1 to 50"  # the server's limit, tighter than RunConfig's own
    assert infos["hidden"].limits == "1 to 4 values, each 1 to 2,000"
    assert infos["lr"].limits == "more than 0 and at most 10"
    assert infos["momentum"].limits == "at least 0 and below 1"
    assert infos["threshold"].limits == "more than 0 and at most 1,000,000"
    assert infos["negatives"].choices == ("random", "hard")
    assert "Allowed: 1 to 50." in infos["epochs"].help


def test_overrides_are_only_the_changed_values():
    quick = {"epochs": 3, "hidden": [500, 500], "lr": 0.001, "seed": 0}
    values = {"epochs": 4, "hidden": [500, 500], "lr": 0.001}
    assert run_schema.overrides_against(quick, values) == {"epochs": 4}


def test_preset_summary():
    config = {"hidden": [500, 500], "epochs": 3, "negatives": "random"}
    assert run_schema.preset_summary("quick", config) == "quick — 2x500, 3 epochs, random negatives"
    config = {"hidden": [784, 500], "epochs": 1, "negatives": "hard"}
    assert run_schema.preset_summary("odd", config) == "odd — 784-500, 1 epochs, hard negatives"
    config = {
        "dataset": "fashion-mnist",
        "hidden": [1000] * 3,
        "epochs": 100,
        "negatives": "hard",
        "flip": True,
    }
    assert run_schema.preset_summary("fashion", config) == (
        "fashion — Fashion-MNIST, 3x1000, 100 epochs, hard negatives, mirrored"
    )
    config = {"hidden": [1000] * 3, "epochs": 300, "negatives": "hard", "jitter": 2, "augment": "styles"}
    assert run_schema.preset_summary("jitter", config) == (
        "jitter — 3x1000, 300 epochs, hard negatives, shifted up to 2 px, styles augmentation"
    )


@pytest.mark.parametrize(("text", "widths"), [("500, 500", [500, 500]), (" 1000 ;2000 ", [1000, 2000])])
def test_parse_hidden(text, widths):
    assert run_schema.parse_hidden(text) == widths


@pytest.mark.parametrize("text", ["", "500, big", "1.5"])
def test_parse_hidden_says_what_is_wrong(text):
    with pytest.raises(ValueError, match="hidden layers"):
        run_schema.parse_hidden(text)


def test_the_dashboard_imports_no_torch_fflab_redis_or_ffcore():
    code = (
        "import sys\n"
        "import dashboard.client, dashboard.charts, dashboard.live_feed, dashboard.run_table\n"
        "import dashboard.api_session, dashboard.models, dashboard.run_schema, dashboard.__main__\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'fflab', 'redis', 'ffcore'})\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "needle",
    [
        "importlib",  # nothing loaded by path: the run schema comes from the API
        "ffcore",
        "streamlit.runtime",  # no internal Streamlit state (PagesManager flags and the like)
        'switch_page("',  # pages link through dashboard/navigation.py's Page objects, not file paths
        'page_link("',
    ],
)
def test_the_dashboard_code_has_no(needle):
    found = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted(DASHBOARD.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if needle in line
    ]
    assert found == []


def test_tags_are_typed_separated_by_commas_or_spaces():
    assert run_schema.parse_tags(" base, lr=1e-3  seed:1,,") == ["base", "lr=1e-3", "seed:1"]
    assert run_schema.parse_tags("  ") == []
