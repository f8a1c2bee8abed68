"""The start-run form's view of RunConfig, and the dashboard's independence from PyTorch and Redis."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dashboard import run_schema
from tests.conftest import REPO


def test_presets_and_limits_come_from_ffcore_config():
    from ffcore.config import PRESETS, RunConfig

    assert run_schema.preset_names() == list(PRESETS)
    assert run_schema.preset_config("quick") == RunConfig.from_preset("quick").model_dump()
    infos = run_schema.field_infos()
    assert infos["epochs"].limits == "1 to 10,000"
    assert infos["lr"].limits == "more than 0 and at most 10"
    assert infos["momentum"].limits == "at least 0 and below 1"
    assert infos["negatives"].choices == ("random", "hard")
    assert "Allowed: 1 to 10,000." in infos["epochs"].help


def test_overrides_are_only_the_changed_values():
    quick = run_schema.preset_config("quick")
    values = {"epochs": quick["epochs"] + 1, "hidden": quick["hidden"], "lr": quick["lr"]}
    assert run_schema.overrides_against("quick", values) == {"epochs": quick["epochs"] + 1}


@pytest.mark.parametrize(("text", "widths"), [("500, 500", [500, 500]), (" 1000 ;2000 ", [1000, 2000])])
def test_parse_hidden(text, widths):
    assert run_schema.parse_hidden(text) == widths


@pytest.mark.parametrize("text", ["", "500, big", "1.5"])
def test_parse_hidden_says_what_is_wrong(text):
    with pytest.raises(ValueError, match="hidden layers"):
        run_schema.parse_hidden(text)


def test_the_dashboard_imports_no_torch_fflab_or_redis():
    code = (
        "import sys\n"
        "import dashboard.client, dashboard.charts, dashboard.live_feed, dashboard.run_table\n"
        "import dashboard.api_session, dashboard.__main__\n"
        "from dashboard import run_schema\n"
        "run_schema.preset_names(); run_schema.field_infos()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'fflab', 'redis', 'ffcore'})\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
