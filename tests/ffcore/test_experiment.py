"""The experiment spec's checks and the results table's statistics and CSV (no training here)."""

import ast
import csv
import io
import json
import statistics
from pathlib import Path

import pytest
from pydantic import ValidationError

from ffcore.config import RunConfig
from ffcore.experiment import MAX_TRIALS, ExperimentSpec, check_limits, describe_spec_error
from ffcore.experiment_table import ERRORS, ExperimentTable, RunOutcome, SettingResult

LR = {"lr": {"values": [1e-3, 1e-2]}}


def spec(**fields) -> ExperimentSpec:
    return ExperimentSpec.model_validate({"params": LR, **fields})


def refusal(data: dict, **context) -> str:
    with pytest.raises(ValidationError) as caught:
        ExperimentSpec.model_validate(data, context=context or None)
    return describe_spec_error(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"params": {}}, "params: name at least one setting to vary"),
        ({"params": {"hiden": {"values": [[10]]}}}, "params: unknown setting 'hiden'; allowed are dataset,"),
        ({"params": {"seed": {"values": [1, 2]}}}, "params.seed: may not be varied (use `seeds`"),
        ({"params": {"device": {"values": ["cpu"]}}}, "params.device: may not be varied"),
        (
            {"params": {"lr": {"values": [1e-3, 20]}}},
            "params.lr: {'lr': 20} is not allowed: lr: Input should be",
        ),
        ({"params": {"lr": {"values": [1e-3, 1e-3]}}}, "params.lr: values: each value may appear once"),
        (
            {"params": {"hidden": {"values": [[32]]}}, "base": {"preset": "quick"}},
            "params.hidden: {'hidden': [32]} is not allowed: scan_layers: layers [1] do not exist; allowed",
        ),
        ({"params": {"lr": {"low": 1e-4, "high": 1e-2}}}, "params.lr: grid search takes listed values only"),
        (
            {"params": {"lr": {"low": 1e-4, "high": 20}}, "search": "tpe", "max_trials": 5},
            "params.lr: {'lr': 20.0} is not allowed: lr: Input should be less than or equal to 10",
        ),
        (
            {"params": {"optimizer": {"low": 0, "high": 1}}, "search": "random", "max_trials": 5},
            "params.optimizer: a range needs a numeric setting; list the `values` to try",
        ),
        (
            {"params": {"lr": {"low": 1e-2, "high": 1e-4}}, "search": "tpe", "max_trials": 5},
            "params.lr: low must be below high, got low=0.01, high=0.0001",
        ),
        (
            {"params": {"lr": {"low": 1e-2, "high": 1e-2}}, "search": "tpe", "max_trials": 5},
            "params.lr: low must be below high",
        ),
        (
            {
                "params": {"peer_norm_weight": {"low": 0, "high": 1, "log": True}},
                "search": "tpe",
                "max_trials": 5,
            },
            "params.peer_norm_weight: a log range needs low > 0, got low=0.0",
        ),
        (
            {"params": {"epochs": {"low": 1, "high": 2.5}}, "search": "tpe", "max_trials": 5},
            "params.epochs: an integer setting's range needs whole numbers, got [2.5]",
        ),
        ({"params": LR, "seeds": [0, 1, 0]}, "seeds: each seed may appear once, got [0, 1, 0]"),
        ({"params": LR, "seeds": []}, "seeds: List should have at least 1 item"),
        (
            {"params": LR, "base": {"preset": "quick", "overrides": {"validation": "none"}}},
            "base: validation='none' leaves no validation set, but the objective val_error_scan is a "
            "validation error that chooses between settings; keep validation='holdout' (only a seed "
            "group, one listed value per param, may train on all 60k)",
        ),
        (
            {"params": LR, "base": {"config": {"validation": "none"}}, "objective": "val_error_softmax"},
            "keep validation='holdout'",
        ),
        ({"params": LR, "base": {"preset": "fast"}}, "base.preset: unknown preset 'fast'; choose one of"),
        ({"params": LR, "base": {"preset": "quick", "overrides": {"epochs": 0}}}, "base.overrides: epochs:"),
        (
            {"params": LR, "base": {"preset": "quick", "config": {}}},
            "base: give either `config` or `preset` with `overrides`, not both",
        ),
        ({"params": LR, "search": "random"}, "max_trials: random search needs the most settings to try"),
        ({"params": LR, "max_trials": 1}, "max_trials: the grid has 2 settings, more than 1"),
        (
            {"params": LR, "search": "tpe", "max_trials": MAX_TRIALS + 1},
            f"max_trials: at most {MAX_TRIALS} settings allowed, got {MAX_TRIALS + 1}",
        ),
        (
            {
                "params": {
                    "lr": {"values": [1e-3 * (i + 1) for i in range(40)]},
                    "jitter": {"values": list(range(5))},
                }
                | {"momentum": {"values": [0.1 * i for i in range(6)]}}
            },
            f"params: the grid has 1200 settings; at most {MAX_TRIALS} allowed",
        ),
        ({"params": LR, "objective": "test_error_scan"}, "objective: Input should be 'val_error_scan'"),
        (
            {"params": LR, "search": "tpe", "max_trials": 4, "start_with": [{"lr": 5e-3}]},
            "start_with[0].lr: 0.005 is not one of the listed values [0.001, 0.01]",
        ),
        ({"params": LR, "start_with": [{"lr": 1e-3}]}, "start_with: grid search tries every setting"),
        (
            {
                "params": {"epochs": {"low": 1, "high": 4}},
                "search": "tpe",
                "max_trials": 4,
                "start_with": [{"epochs": 9}],
            },
            "start_with[0].epochs: 9 is outside 1.0..4.0",
        ),
        (
            {
                "params": {"epochs": {"low": 1, "high": 4}},
                "search": "tpe",
                "max_trials": 4,
                "start_with": [{"epochs": 2.5}],
            },
            "start_with[0].epochs: epochs takes whole numbers, got 2.5",
        ),
        (
            {"params": LR, "search": "tpe", "max_trials": 1, "start_with": [{"lr": 1e-3}, {"lr": 1e-2}]},
            "start_with: 2 settings, more than max_trials=1",
        ),
        (
            {"params": {"validation": {"values": ["holdout"]}}},
            "params.validation: may not be varied (the objective",
        ),
    ],
)
def test_refusals_say_what_is_wrong_and_what_is_allowed(data, message):
    assert message in refusal(data)


def test_a_caller_can_allow_fewer_trials_than_the_ceiling():
    data = {"params": LR, "search": "random", "max_trials": 50}
    assert "max_trials: at most 20 settings allowed, got 50" in refusal(data, max_trials=20)
    assert "params: the grid has 2 settings; at most 1 allowed" in refusal({"params": LR}, max_trials=1)
    loose = ExperimentSpec.model_validate(data)
    with pytest.raises(ValueError, match="max_trials: at most 20 settings allowed, got 50"):
        check_limits(loose, max_trials=20)
    check_limits(loose, max_trials=50)
    with pytest.raises(ValueError, match=f"at most {MAX_TRIALS} settings"):  # never above the ceiling
        check_limits(loose.model_copy(update={"max_trials": MAX_TRIALS + 1}), max_trials=10**6)


def test_a_seed_group_may_train_on_all_60k_without_a_validation_set():
    on_all = {"preset": "quick", "overrides": {"validation": "none"}}
    group = ExperimentSpec.model_validate({"base": on_all, "params": {"epochs": {"values": [60]}}})
    assert group.is_seed_group() and group.planned_trials() == 1
    assert group.run_config({"epochs": 60}, seed=2).validation == "none"
    assert not spec().is_seed_group()
    assert not ExperimentSpec.model_validate(
        {"params": {"lr": {"low": 1e-3, "high": 1e-2}}, "search": "random", "max_trials": 1}
    ).is_seed_group()


def test_defaults_grid_and_run_configs():
    s = ExperimentSpec.model_validate(
        {
            "base": {"preset": "quick", "overrides": {"epochs": 2, "scan_layers": [0], "head_layers": [0]}},
            "params": {"lr": {"values": [1e-3, 1e-2]}, "hidden": {"values": [[64], [32, 32]]}},
        }
    )
    assert (s.search, s.seeds, s.objective, s.prune, s.max_trials) == (
        "grid",
        [0, 1, 2],
        "val_error_scan",
        True,
        None,
    )
    assert s.grid_size() == 4 == s.planned_trials()
    assert s.grid() == [
        {"lr": 1e-3, "hidden": [64]},
        {"lr": 1e-3, "hidden": [32, 32]},
        {"lr": 1e-2, "hidden": [64]},
        {"lr": 1e-2, "hidden": [32, 32]},
    ]
    config = s.run_config({"lr": 1e-2, "hidden": [64]}, seed=7, data_dir="/data")
    expected = RunConfig.from_preset(
        "quick", epochs=2, scan_layers=[0], head_layers=[0], lr=1e-2, hidden=[64], seed=7, data_dir="/data"
    )
    assert config == expected
    with pytest.raises(ValueError, match="not params of this experiment"):
        s.run_config({"momentum": 0.5}, seed=0)


def test_a_full_config_as_base_and_ranges_for_random_search():
    s = ExperimentSpec.model_validate(
        {
            "base": {"config": {"hidden": [100], "scan_layers": [0], "head_layers": [0]}},
            "search": "random",
            "max_trials": 3,
            "params": {
                "lr": {"low": 1e-4, "high": 1e-1, "log": True},
                "epochs": {"low": 1, "high": 9, "step": 2},
            },
            "start_with": [{"lr": 1e-3, "epochs": 3}],
        }
    )
    assert s.planned_trials() == 3 and s.base_config().hidden == [100]
    assert s.run_config({"epochs": 3}, seed=1).epochs == 3


def test_the_spec_module_and_the_table_module_import_neither_torch_nor_optuna():
    for name in ("experiment.py", "experiment_table.py"):
        tree = ast.parse((Path(__file__).parents[2] / "ffcore" / name).read_text())
        imported = {
            alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert {m.split(".")[0] for m in imported if m} <= {
            "__future__",
            "csv",
            "io",
            "itertools",
            "json",
            "math",
            "statistics",
            "types",
            "typing",
            "pydantic",
            "ffcore",
        }, imported
        assert {m for m in imported if m and m.startswith("ffcore")} <= {"ffcore.config", "ffcore.experiment"}


# --- the table ---------------------------------------------------------------------------------


def run(seed: int, status: str = "succeeded", scan: float = 0.1, softmax: float = 0.2) -> RunOutcome:
    tests = (
        {"test_error_scan": scan + 0.01, "test_error_softmax": softmax + 0.01}
        if status == "succeeded"
        else {}
    )
    return RunOutcome(
        seed=seed, status=status, val_error_scan=scan, val_error_softmax=softmax, epochs=2, **tests
    )


@pytest.fixture
def table() -> ExperimentTable:
    s = ExperimentSpec.model_validate(
        {
            "params": {"lr": {"values": [1e-3, 1e-2, 3e-2]}, "hidden": {"values": [[500, 500]]}},
            "seeds": [0, 1, 2],
        }
    )
    return ExperimentTable(
        spec=s,
        settings=[
            SettingResult(
                trial=0,
                params={"lr": 1e-3, "hidden": [500, 500]},
                status="succeeded",
                runs=[
                    run(0, scan=0.12, softmax=0.15),
                    run(1, scan=0.10, softmax=0.1),
                    run(2, scan=0.17, softmax=0.05),
                ],
            ),
            SettingResult(
                trial=1,
                params={"lr": 1e-2, "hidden": [500, 500]},
                status="pruned",
                runs=[run(0, "pruned", 0.05)],
            ),
            SettingResult(
                trial=2,
                params={"lr": 3e-2, "hidden": [500, 500]},
                status="succeeded",
                runs=[run(0, scan=0.09), run(1, scan=0.11), run(2, scan=0.13)],
            ),
        ],
    )


def test_stats_are_the_mean_and_sample_std_of_the_succeeded_runs(table):
    for setting in table.settings:
        completed = [r for r in setting.runs if r.status == "succeeded"]
        for name in ERRORS:
            values = [getattr(r, name) for r in completed]
            stat = setting.stats[name]
            assert stat.n == len(values)
            assert stat.mean == (statistics.mean(values) if values else None)
            assert stat.std == (statistics.stdev(values) if len(values) > 1 else None)
    one = SettingResult(trial=0, params={"lr": 1e-3}, status="succeeded", runs=[run(0)])
    assert one.stats["val_error_scan"].mean == 0.1 and one.stats["val_error_scan"].std is None


def test_the_best_setting_has_the_lowest_mean_objective_among_completed_settings(table):
    # The pruned setting's one run is the lowest error of all, but it did not run all its seeds.
    assert table.best == 2 and table.best_setting.params["lr"] == 3e-2
    # By the softmax head's error the first setting is best (mean 0.1 against 0.2).
    by_softmax = table.spec.model_copy(update={"objective": "val_error_softmax"})
    assert table.model_copy(update={"spec": by_softmax}).best == 0
    assert ExperimentTable(spec=table.spec).best is None


def test_json_round_trips_and_csv_agrees_with_it(table):
    data = json.loads(table.to_json())
    assert data["best"] == 2 and data["settings"][0]["stats"]["val_error_scan"]["n"] == 3
    assert ExperimentTable.model_validate_json(table.to_json()) == table
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert list(rows[0]) == table.csv_columns()
    assert len(rows) == len(data["settings"])
    for row, setting in zip(rows, data["settings"], strict=True):
        assert int(row["trial"]) == setting["trial"] and row["status"] == setting["status"]
        assert {name: json.loads(row[name]) for name in setting["params"]} == setting["params"]
        assert int(row["runs"]) == len(setting["runs"])
        assert int(row["succeeded"]) == sum(r["status"] == "succeeded" for r in setting["runs"])
        for name, stat in setting["stats"].items():
            for key in ("mean", "std"):
                cell = row[f"{name}_{key}"]
                assert (float(cell) if cell else None) == stat[key]
