"""ffcore.sweep: experiments run here with tiny real trainings, and `python -m ffcore sweep`."""

import csv
import json
import statistics
import subprocess
import sys

import pytest

from ffcore import Dataset, Trainer, sweep
from ffcore.cli import build_parser
from ffcore.experiment import ExperimentSpec
from ffcore.experiment_table import ERRORS
from ffcore.sweep import run_sweep
from tests.support.paths import REPO, load_script

pytestmark = pytest.mark.timeout(300)

# One hidden layer of 32 units, 10 steps an epoch on the 2,000-digit slice: a run takes a fraction
# of a second.
TINY = {
    "hidden": [32],
    "scan_layers": [0],
    "head_layers": [0],
    "batch_size": 200,
    "epochs": 2,
    "device": "cpu",
}
# Wide enough, and enough steps, for the label scan to learn within an epoch (about 40-50% validation
# error after one epoch at lr 3e-3, where lr 1e-7 stays at chance, about 90%).
LEARNS = TINY | {"hidden": [128], "batch_size": 20}


def tiny_spec(**fields) -> ExperimentSpec:
    return ExperimentSpec.model_validate({"base": {"preset": "quick", "overrides": TINY}} | fields)


def test_a_grid_trains_every_setting_once_per_seed_as_a_lone_trainer_would(mnist_slice):
    spec = tiny_spec(params={"lr": {"values": [3e-3, 1e-2]}}, seeds=[0, 1], prune=False)
    ended = []
    table = run_sweep(
        spec, dataset=mnist_slice, device="cpu", on_run_end=lambda t, s, r: ended.append((s.trial, r.seed))
    )

    assert sorted(s.params["lr"] for s in table.settings) == [3e-3, 1e-2]
    assert ended == [(s.trial, seed) for s in table.settings for seed in (0, 1)]
    for setting in table.settings:
        assert setting.status == "succeeded" and [r.seed for r in setting.runs] == [0, 1]
        for run in setting.runs:
            # The same run trained alone: the same errors, to the last digit (one thread, fixed seeds).
            records = []
            alone = Trainer(spec.run_config(setting.params, run.seed), dataset=mnist_slice)
            result = alone.fit(on_metrics=records.append)
            last_val = [r for r in records if r["kind"] == "eval" and r["split"] == "val"][-1]
            assert (run.status, run.epochs) == ("succeeded", 2)
            assert (run.val_error_scan, run.val_error_softmax) == (
                last_val["error_scan"],
                last_val["error_softmax"],
            )
            assert (run.test_error_scan, run.test_error_softmax) == (
                result.test_error_scan,
                result.test_error_softmax,
            )
        for name in ERRORS:
            values = [getattr(run, name) for run in setting.runs]
            assert setting.stats[name].mean == statistics.mean(values)
            assert setting.stats[name].std == statistics.stdev(values)
    means = [s.stats["val_error_scan"].mean for s in table.settings]
    assert table.best == means.index(min(means))


def test_a_hopeless_setting_is_pruned_after_the_first_seeds_first_evaluation(mnist_slice):
    # start_with makes the order certain: the good setting completes first, then the hopeless one
    # (lr 1e-7: the label scan stays at chance) is compared with it after one epoch.
    spec = ExperimentSpec.model_validate(
        {
            "base": {"preset": "quick", "overrides": LEARNS},
            "search": "tpe",
            "params": {"lr": {"low": 1e-7, "high": 1e-2, "log": True}},
            "seeds": [0, 1],
            "max_trials": 2,
            "start_with": [{"lr": 3e-3}, {"lr": 1e-7}],
        }
    )
    table = run_sweep(spec, dataset=mnist_slice, device="cpu", prune_startup_trials=1, prune_warmup_epochs=0)

    good, hopeless = table.settings
    assert good.params == {"lr": 3e-3} and good.status == "succeeded" and len(good.runs) == 2
    assert hopeless.params == {"lr": 1e-7} and hopeless.status == "pruned"
    [run] = hopeless.runs  # its second seed never ran
    assert (run.seed, run.status, run.epochs, run.test_error_scan) == (0, "pruned", 1, None)
    assert run.val_error_scan > 0.8 > good.runs[0].val_error_scan
    assert hopeless.stats["val_error_scan"].n == 0 and table.best == 0


def test_random_search_trains_a_setting_drawn_twice_only_once(mnist_slice):
    spec = tiny_spec(
        search="random", params={"lr": {"values": [3e-3, 1e-2]}}, seeds=[0, 1], max_trials=5, prune=False
    )
    runs = []
    table = run_sweep(spec, dataset=mnist_slice, device="cpu", on_run_end=lambda t, s, r: runs.append(r))
    # Five draws from two values repeat one: each value drawn is trained once per seed and listed once.
    values = [s.params["lr"] for s in table.settings]
    assert len(set(values)) == len(values) <= 2
    assert len(runs) == 2 * len(values) and all(len(s.runs) == 2 for s in table.settings)


def test_a_failed_run_marks_its_setting_failed_and_the_sweep_goes_on(mnist_slice, monkeypatch):
    spec = tiny_spec(
        params={"jitter": {"values": [0, 1]}}, seeds=[0, 1], prune=False, objective="val_error_softmax"
    )
    original = Trainer.fit

    def fit(self, *args, **kwargs):
        if self.config.jitter == 1 and self.config.seed == 1:
            raise RuntimeError("out of memory")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", fit)
    table = run_sweep(spec, dataset=mnist_slice, device="cpu")
    by_jitter = {s.params["jitter"]: s for s in table.settings}
    assert by_jitter[0].status == "succeeded"
    assert by_jitter[1].status == "failed"
    assert [(r.seed, r.status) for r in by_jitter[1].runs] == [(0, "succeeded"), (1, "failed")]
    assert by_jitter[1].runs[1].error == "RuntimeError: out of memory"
    assert table.best_setting is by_jitter[0]


def ffcore(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ffcore", *args], capture_output=True, text=True, timeout=280
    )


def test_a_sweep_killed_mid_run_resumes_where_it_stopped_and_ends_as_an_unbroken_one(
    mnist_slice, tmp_path, monkeypatch
):
    spec = tiny_spec(params={"lr": {"values": [3e-3, 1e-2]}}, seeds=[0, 1], prune=False)
    unbroken = run_sweep(spec, dataset=mnist_slice, device="cpu")

    # The first time the second setting's seed-1 run saves its state (after epoch 1), the process dies.
    real_write = sweep.write_atomically
    killed = []

    def write_then_die(path, data):
        real_write(path, data)
        if path.name == sweep.STATE_FILE and path.parent.name == "001-seed1" and not killed:
            killed.append(path)
            raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "write_atomically", write_then_die)
    out = tmp_path / "sweep"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, dataset=mnist_slice, device="cpu", out=out)
    assert killed and (out / "runs" / "001-seed1" / sweep.STATE_FILE).is_file()
    assert not (out / "runs" / "001-seed1" / sweep.OUTCOME_FILE).exists()

    built = []
    monkeypatch.setattr(sweep, "Trainer", lambda *a, **k: built.append(a) or Trainer(*a, **k))
    resumed = run_sweep(spec, dataset=mnist_slice, device="cpu", out=out)

    assert built == []  # three runs read back, the fourth continued from its state: none started over
    assert resumed.model_dump() == unbroken.model_dump()
    folder = out / "runs" / "001-seed1"
    assert not (folder / sweep.STATE_FILE).exists()
    records = [json.loads(line) for line in (folder / sweep.METRICS_FILE).read_text().splitlines()]
    assert [(r["split"], r["epoch"]) for r in records] == [("val", 1), ("val", 2), ("test", 2)]


def test_the_cli_refuses_a_bad_spec_in_one_line(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"params": {"lr": {"values": [1e-3]}}, "seeds": [1, 1]}))
    result = ffcore("sweep", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {path}: invalid experiment spec: seeds: each seed may appear once, got [1, 1]"
    ]
    path.write_text("{not json")
    result = ffcore("sweep", str(path))
    assert result.returncode == 2 and result.stderr.startswith(f"error: {path}: not valid JSON")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_cli_runs_a_spec_and_writes_the_table(mnist_dir, tmp_path):
    # 20 steps of a 16-unit layer on the full training set, one setting x two seeds.
    base = {"hidden": [16], "scan_layers": [0], "head_layers": [0], "batch_size": 2500, "epochs": 1}
    spec = {
        "base": {"preset": "quick", "overrides": base},
        "params": {"lr": {"values": [3e-3]}},
        "seeds": [0, 1],
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "out"
    result = ffcore(
        "sweep", str(path), "--data-dir", mnist_dir, "--device", "cpu", "--out", str(out), "--threads", "1"
    )
    assert result.returncode == 0, result.stderr

    table = json.loads((out / "table.json").read_text())
    [setting] = table["settings"]
    assert setting["params"] == {"lr": 3e-3} and [r["seed"] for r in setting["runs"]] == [0, 1]
    assert table["best"] == 0
    [row] = list(csv.DictReader((out / "table.csv").read_text().splitlines()))
    assert float(row["val_error_scan_mean"]) == setting["stats"]["val_error_scan"]["mean"]
    assert row["runs"] == row["succeeded"] == "2"
    stat = setting["stats"]["val_error_scan"]
    assert f"val_error_scan {stat['mean']:.4f} ± {stat['std']:.4f} over 2 seeds" in result.stdout

    # scripts/sweep_result.py packages the folder for docs/results: the table and every run's curve.
    packaged = tmp_path / "result.json"
    script = [sys.executable, str(REPO / "scripts" / "sweep_result.py"), str(out), str(packaged)]
    script += ["--command", "c", "--commit", "x"]
    assert subprocess.run(script, capture_output=True, timeout=60).returncode == 0
    result = json.loads(packaged.read_text())
    assert (result["command"], result["commit"], result["table"]) == ("c", "x", table)
    assert sorted(result["evaluations"]) == ["000-seed0", "000-seed1"]
    assert [r["split"] for r in result["evaluations"]["000-seed0"]] == ["val", "test"]

    # The same --out again: refused without --resume; with it, the finished runs are read back.
    again = ["sweep", str(path), "--data-dir", mnist_dir, "--device", "cpu", "--out", str(out)]
    refused = ffcore(*again)
    assert refused.returncode == 2
    assert refused.stderr == (
        f"error: {out} already holds a sweep; pass --resume to continue it, or choose another --out\n"
    )
    resumed = ffcore(*again, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "table.json").read_text()) == table
    path.write_text(json.dumps(spec | {"seeds": [0, 1, 2]}))
    other = ffcore(*again, "--resume")
    assert other.returncode == 2 and "holds a sweep of another spec" in other.stderr


def test_sweep_help_names_its_options(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "--help"])
    text = capsys.readouterr().out
    options = ("SPEC.json", "--data-dir", "--device", "--out", "--resume", "--threads", "table.json")
    for option in (*options, "max_parallel"):
        assert option in text


def test_a_seed_group_without_a_validation_set_ranks_nothing_and_reports_its_test_errors(mnist_slice):
    on_all = Dataset(mnist_slice.name, mnist_slice.train, None, mnist_slice.test)
    spec = ExperimentSpec.model_validate(
        {
            "base": {"preset": "quick", "overrides": TINY | {"validation": "none"}},
            "params": {"lr": {"values": [3e-3]}},
            "seeds": [0, 1],
        }
    )
    table = run_sweep(spec, dataset=on_all, device="cpu")
    [group] = table.settings
    assert group.status == "succeeded" and group.stats["val_error_scan"].mean is None
    assert group.stats["test_error_scan"].n == 2 and table.best is None


def test_a_resumed_sweep_that_draws_other_settings_is_refused(mnist_slice, tmp_path):
    spec = tiny_spec(params={"lr": {"values": [3e-3, 1e-2]}}, seeds=[0], prune=False)
    out = tmp_path / "sweep"
    run_sweep(spec, dataset=mnist_slice, device="cpu", out=out)
    # As if the interrupted sweep had drawn another setting first.
    (out / "runs" / "000-seed0" / sweep.SETTING_FILE).write_text('{"lr": 0.5}\n')
    with pytest.raises(sweep.ResumeMismatch, match="holds a run of {'lr': 0.5}"):
        run_sweep(spec, dataset=mnist_slice, device="cpu", out=out)


def test_a_sweep_resumes_with_another_device_option(mnist_slice, tmp_path, monkeypatch):
    # Started with --device cpu, continued with --device auto (on a GPU machine: the GPU).
    spec = tiny_spec(params={"lr": {"values": [3e-3]}}, seeds=[0], prune=False)
    real_write = sweep.write_atomically

    def write_then_die(path, data):
        real_write(path, data)
        if path.name == sweep.STATE_FILE:
            raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "write_atomically", write_then_die)
    out = tmp_path / "sweep"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, dataset=mnist_slice, device="cpu", out=out)
    monkeypatch.setattr(sweep, "write_atomically", real_write)
    built = []
    monkeypatch.setattr(sweep, "Trainer", lambda *a, **k: built.append(a) or Trainer(*a, **k))
    table = run_sweep(spec, dataset=mnist_slice, device="auto", out=out)
    assert built == [] and table.settings[0].status == "succeeded"


def test_a_packaged_curve_drops_the_evaluations_a_dead_attempt_logged_past_its_checkpoint():
    sweep_result = load_script("sweep_result")
    records = [
        {"id": "1-0", "kind": "eval", "split": "val", "step": 50, "error_scan": 0.5},
        {"id": "2-0", "kind": "train", "step": 60},
        {"id": "3-0", "kind": "eval", "split": "val", "step": 100, "error_scan": 0.4},  # the dead attempt's
        {"id": "4-0", "kind": "rewind", "step": 50, "epoch": 1},
        {"id": "5-0", "kind": "eval", "split": "val", "step": 100, "error_scan": 0.3},
    ]
    assert sweep_result.surviving_evaluations(records) == [
        {"kind": "eval", "split": "val", "step": 50, "error_scan": 0.5},
        {"kind": "eval", "split": "val", "step": 100, "error_scan": 0.3},
    ]
