"""The README stays true: its settings table, its links, and its API examples run as written."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from dashboard.settings import DashboardSettings
from ffcore.experiment import ExperimentSpec
from fflab.settings import Settings
from tests.support.paths import REPO
from tests.support.settings import TestSettings
from tests.support.stack import start_stack

README = (REPO / "README.md").read_text()
# Where the examples expect the API; the test points them at the stack it started instead.
README_API = "http://localhost:8000/api/v1"
# The examples' run, and a tiny one that trains in seconds on a busy CI machine: what is tested here
# is that the commands work; learning is tested in tests/ffcore and tests/worker.
README_RUN = '"overrides": {"epochs": 1}'
TINY_RUN = '"overrides": {"epochs": 1, "hidden": [32, 32], "batch_size": 1000}'


def code_block(language: str, containing: str) -> str:
    """The README's fenced code block in `language` that contains `containing`."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.DOTALL | re.MULTILINE)
    matching = [block for block in blocks if containing in block]
    assert len(matching) == 1, f"expected one {language} block with {containing!r}, found {len(matching)}"
    return matching[0]


def test_settings_table_gives_the_code_defaults():
    rows = dict(re.findall(r"^\| `(FF_[A-Z0-9_]+)` \| ([^|]+) \|", README, flags=re.MULTILINE))
    fields = set()
    for settings_class in (Settings, DashboardSettings, TestSettings):
        prefix = settings_class.model_config["env_prefix"]
        for name, field in settings_class.model_fields.items():
            variable = f"{prefix}{name}".upper()
            fields.add(variable)
            assert variable in rows, f"{variable} is missing from the README's settings table"
            expected = "unset" if field.default is None else f"`{field.default}`"
            assert rows[variable].strip() == expected, variable
    # And the other way round: every variable the table lists is read through a settings class.
    assert not set(rows) - fields, f"the README lists variables no settings class reads: {set(rows) - fields}"


def test_local_links_and_files_in_the_readme_exist():
    targets = re.findall(r"\]\(((?!https?://|#)[^)\s]+)\)", README)  # [text](path), ![alt](path)
    targets += re.findall(r"@?\b((?:docs|docker|scripts|bench)/[\w./-]+\.\w+)", README)
    assert "docs/examples/digit-7.png" in targets
    missing = sorted(
        {t for t in targets if "*" not in t and not (REPO / t).exists()} - {"bench/results/NAME.json"}
    )
    assert not missing, f"the README refers to files that do not exist: {missing}"
    unlisted = sorted(
        p.name
        for p in (REPO / "bench").glob("[!_]*.py")  # the benchmarks, not the package's __init__.py
        if f"bench/{p.name}" not in README and f"bench.{p.stem}" not in README  # a path or `-m bench.NAME`
    )
    assert not unlisted, f"benchmarks the README does not mention: {unlisted}"


def test_procfile_and_compose_commands_in_the_readme_are_the_real_ones():
    assert "docker compose -f docker-compose.yml -f docker-compose.cpu.yml up --build" in README
    assert "\nmake up\n" in README
    makefile = (REPO / "Makefile").read_text()
    for target in ("up", "test", "lint", "system-deps"):
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), target


@pytest.mark.slow
@pytest.mark.timeout(420)
def run_bash_example(example: str, stack, timeout_s: float) -> str:
    """A bash example of the README, verbatim but for the API's address and the run's size, run against
    the stack; its standard output."""
    example = example.replace(README_API, stack.api_url)
    assert README_RUN in example
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example.replace(README_RUN, TINY_RUN)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert result.returncode == 0, result.stderr + stack.log()[-3000:]
    return result.stdout


def test_rest_api_examples_run_as_written(tmp_path, mnist_dir):
    """Both API examples, verbatim but for the API's address and the run's size, against the whole
    local stack."""
    if shutil.which("jq") is None or shutil.which("curl") is None:
        pytest.fail("the curl example needs curl and jq (apt-get install curl jq)")
    with start_stack(tmp_path, data_dir=mnist_dir) as stack:
        python_example = code_block("python", "api.stream(").replace(README_API, stack.api_url)
        assert README_RUN in python_example
        python_example = python_example.replace(README_RUN, TINY_RUN)
        result = subprocess.run(
            [sys.executable, "-c", python_example], cwd=REPO, capture_output=True, text=True, timeout=200
        )
        assert result.returncode == 0, result.stderr + stack.log()[-3000:]
        out = result.stdout
        assert re.search(r"^run [0-9a-f]+ queued$", out, flags=re.MULTILINE), out
        assert "status running" in out and "status succeeded" in out, out
        assert re.search(r"^epoch 1: val error \d+\.\d\d%$", out, flags=re.MULTILINE), out
        assert re.search(r"^label scan: \d - softmax head: \d$", out, flags=re.MULTILINE), out

        out = run_bash_example(code_block("bash", "curl -sN"), stack, timeout_s=200)
        assert "event: metric" in out and "event: end" in out, out[-2000:]
        assert '"kind":"eval"' in out.replace(" ", ""), out[-2000:]
        assert re.search(r'"scan_label":\s*\d,', out), out[-2000:]
        assert re.search(r'"head_probs":\s*\[', out), out[-2000:]

        out = run_bash_example(code_block("bash", "/experiments"), stack, timeout_s=300)
        summary, table = out.split("trial,status,lr,")
        assert json.loads(summary)["status"] == "succeeded", summary
        assert json.loads(summary)["progress"]["runs_finished"] == 4, summary
        assert len(table.strip().splitlines()) == 3, table  # the header's rest and two settings


def test_ffcore_commands_in_the_readme_parse_with_the_real_cli():
    from ffcore.cli import build_parser, make_config
    from ffcore.config import DEFAULT_PRESET, RunConfig

    parser = build_parser()
    commands = re.findall(
        r"^python -m ffcore (.+)$", code_block("bash", "python -m ffcore train"), re.MULTILINE
    )
    assert {command.split()[0] for command in commands} == {"train", "eval", "predict"}
    for command in commands:
        try:
            parser.parse_args(shlex.split(command))
        except SystemExit:
            pytest.fail(f"the README's `python -m ffcore {command}` does not parse")
    defaults = parser.parse_args(["train"])
    assert f"default `{defaults.out}`" in README
    # No --preset given is None to the parser (so that --resume can tell one given from none); the run
    # then starts from make_config's preset.
    assert defaults.preset is None and make_config(defaults) == RunConfig.from_preset(DEFAULT_PRESET)
    assert f"`--preset` defaults to `{DEFAULT_PRESET}`" in README


def test_presets_table_matches_the_presets():
    from ffcore.config import PRESETS, RunConfig

    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+\|[^|]+) \|$", README, flags=re.MULTILINE))
    assert set(PRESETS) <= set(rows)
    for name in PRESETS:
        config = RunConfig.from_preset(name)
        network, recipe = (cell.strip() for cell in rows[name].split("|"))
        assert network == f"{len(config.hidden)} × {config.hidden[0]}", name
        assert f"{config.epochs} epochs" in recipe, name
        if "negatives" in recipe:
            assert f"{config.negatives} negatives" in recipe, name


def test_the_experiment_example_is_a_valid_spec():
    spec = ExperimentSpec.model_validate(json.loads(code_block("json", '"search": "tpe"')))
    assert (spec.search, spec.seeds, spec.objective) == ("tpe", [0, 1, 2], "val_error_scan")
    assert spec.params["lr"].log and spec.params["negatives"].values == ["random", "hard"]
