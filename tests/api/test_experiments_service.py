"""Experiments through real parts: the uvicorn API, redis-server, real Celery workers training on MNIST.

A grid fanned out over two workers, a TPE study that prunes a hopeless setting, and a worker SIGKILLed
(and the API killed) mid-experiment without losing a trial or training one twice.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import subprocess
import sys

import httpx
import pytest
from optuna.trial import TrialState

from ffcore.experiment import ExperimentSpec
from fflab.study import load_study
from tests.support.api import RunningApi, start_api
from tests.support.paths import REPO
from tests.support.store import TestStore
from tests.support.waiting import wait_for
from tests.support.worker import start_worker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Two small layers, 50 steps an epoch on the 50k training digits: a run takes seconds.
TINY = {"hidden": [32, 32], "batch_size": 1000, "epochs": 2}
ERRORS = ("val_error_scan", "val_error_softmax", "test_error_scan", "test_error_softmax")


def wait_until_ended(http: httpx.Client, experiment_id: str, timeout_s: float) -> dict:
    def ended() -> dict | None:
        body = http.get(f"/experiments/{experiment_id}").json()
        return body if body["status"] != "running" else None

    return wait_for(ended, timeout_s, f"experiment {experiment_id} to end", interval_s=0.5)


def test_a_grid_over_two_workers_gives_a_table_that_agrees_with_its_runs(
    api_server: RunningApi, redis_url: str, mnist_dir: str, tmp_path
) -> None:
    http = httpx.Client(base_url=api_server.base_url, timeout=30)
    spec = {
        "name": "lr grid",
        "base": {"preset": "quick", "overrides": TINY},
        "params": {"lr": {"values": [3e-3, 1e-2]}},
        "seeds": [0, 1],
        "prune": False,
        "max_parallel": 2,
    }
    with start_worker(redis_url, mnist_dir, name="exp-a"), start_worker(redis_url, mnist_dir, name="exp-b"):
        created = http.post("/experiments", json=spec)
        assert created.status_code == 201, created.text
        experiment_id = created.json()["id"]
        body = wait_until_ended(http, experiment_id, 300)

    assert body["status"] == "succeeded", body
    assert body["progress"] == {
        "settings_planned": 2,
        "settings_started": 2,
        "settings_finished": 2,
        "runs_queued": 0,
        "runs_running": 0,
        "runs_finished": 4,
    }
    runs = http.get("/runs", params={"experiment": experiment_id}).json()
    assert runs["total"] == 4
    by_id = {run["id"]: run for run in runs["runs"]}
    assert {run["worker"] for run in by_id.values()} == {"exp-a", "exp-b"}, "both workers trained"
    table = body["table"]
    assert sorted(s["params"]["lr"] for s in table["settings"]) == [3e-3, 1e-2]
    for index, setting in enumerate(table["settings"]):
        assert setting["status"] == "succeeded" and [r["seed"] for r in setting["runs"]] == [0, 1]
        trained = [by_id[r["run_id"]] for r in setting["runs"]]
        for run in trained:
            assert run["status"] == "succeeded" and run["config"]["lr"] == setting["params"]["lr"]
            assert run["experiment"] == experiment_id and run["setting"] == index
            assert {f"experiment:{experiment_id}", f"setting:{index}"} <= set(run["tags"])
        for name in ERRORS:
            values = [run[name] for run in trained]
            assert setting["stats"][name]["mean"] == pytest.approx(statistics.mean(values), abs=1e-12)
            assert setting["stats"][name]["std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
    means = [s["stats"]["val_error_scan"]["mean"] for s in table["settings"]]
    assert body["best"] == table["best"] == means.index(min(means))
    assert body["best_objective"]["mean"] == min(means)

    exported = http.get(f"/experiments/{experiment_id}/table.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 2
    for row, setting in zip(rows, table["settings"], strict=True):
        assert float(row["lr"]) == setting["params"]["lr"] and row["status"] == "succeeded"
        for name in ERRORS:
            assert float(row[f"{name}_mean"]) == setting["stats"][name]["mean"]
            assert float(row[f"{name}_std"]) == setting["stats"][name]["std"]
    listed = http.get("/experiments").json()
    assert [e["id"] for e in listed["experiments"]] == [experiment_id]
    assert listed["experiments"][0]["best_params"] == table["settings"][body["best"]]["params"]

    # scripts/sweep_result.py packages it for docs/results from the API: the table and every run's curve.
    packaged = tmp_path / "result.json"
    url = f"{api_server.base_url}/experiments/{experiment_id}"
    script = [sys.executable, str(REPO / "scripts" / "sweep_result.py"), url, str(packaged)]
    done = subprocess.run([*script, "--command", "c", "--commit", "x"], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(packaged.read_text())
    assert (result["command"], result["commit"], result["table"]) == ("c", "x", table)
    assert result["experiment"]["id"] == experiment_id and result["experiment"]["status"] == "succeeded"
    assert sorted(result["evaluations"]) == ["000-seed0", "000-seed1", "001-seed0", "001-seed1"]
    for setting in table["settings"]:
        for run in setting["runs"]:
            curve = result["evaluations"][f"{setting['trial']:03d}-seed{run['seed']}"]
            assert [(r["split"], r["epoch"]) for r in curve] == [("val", 1), ("val", 2), ("test", 2)]
            assert curve[-2]["error_scan"] == run["val_error_scan"]  # each curve is its own run's
            assert curve[-1]["error_softmax"] == run["test_error_softmax"]

    assert http.post(f"/experiments/{experiment_id}/cancel").status_code == 409
    assert http.delete(f"/experiments/{experiment_id}").status_code == 204
    assert http.get(f"/experiments/{experiment_id}").status_code == 404
    assert http.get("/runs", params={"experiment": experiment_id}).json()["total"] == 0


def test_a_tpe_study_prunes_a_hopeless_setting(
    api_server: RunningApi, redis_url: str, mnist_dir: str
) -> None:
    http = httpx.Client(base_url=api_server.base_url, timeout=30)
    # Three sound learning rates complete first (the pruner's startup); 1e-7 learns nothing and is
    # stopped at epoch 2, the earliest the pruner's warm-up allows.
    lrs = [3e-3, 5e-3, 2e-3, 1e-7]
    spec = {
        "base": {"preset": "quick", "overrides": TINY | {"epochs": 4}},
        "search": "tpe",
        "params": {"lr": {"values": lrs}},
        "start_with": [{"lr": lr} for lr in lrs],
        "max_trials": 4,
        "seeds": [0],
    }
    with start_worker(redis_url, mnist_dir):
        experiment_id = http.post("/experiments", json=spec).json()["id"]
        body = wait_until_ended(http, experiment_id, 300)

    statuses = {s["params"]["lr"]: s["status"] for s in body["table"]["settings"]}
    assert statuses == {3e-3: "succeeded", 5e-3: "succeeded", 2e-3: "succeeded", 1e-7: "pruned"}
    [hopeless] = [s for s in body["table"]["settings"] if s["params"]["lr"] == 1e-7]
    [run] = hopeless["runs"]
    assert run["status"] == "pruned" and run["epochs"] == 2
    stored = http.get(f"/runs/{run['run_id']}").json()
    assert stored["status"] == "cancelled" and stored["error"].startswith("pruned at epoch 2")
    study = load_study(redis_url, experiment_id, ExperimentSpec.model_validate(body["spec"]))
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 3 + ["PRUNED"]


def test_a_worker_and_the_api_killed_mid_experiment_lose_no_trial_and_train_none_twice(
    redis_url: str, mnist_dir: str
) -> None:
    store = TestStore.from_url(redis_url)
    spec = {
        "base": {"preset": "quick", "overrides": TINY | {"epochs": 6}},
        "params": {"lr": {"values": [3e-3, 1e-2]}},
        "seeds": [0, 1],
        "prune": False,
        "max_parallel": 2,
    }
    fast = {"lease_ttl_s": 3, "heartbeat_interval_s": 0.5}
    with (
        start_worker(redis_url, mnist_dir, name="doomed", **fast) as doomed,
        start_worker(redis_url, mnist_dir, name="survivor", **fast),
    ):
        with start_api(redis_url) as api:
            experiment_id = httpx.post(f"{api.base_url}/experiments", json=spec, timeout=30).json()["id"]
            api.process.kill()  # the API dies at once; the workers carry the experiment

        def doomed_training() -> str | None:
            runs, _ = store.list_runs(experiment=experiment_id)
            return next(
                (r.id for r in runs if r.worker == "doomed" and r.status == "running" and r.epoch >= 1), None
            )

        killed_run = wait_for(doomed_training, 180, "the doomed worker to train past its first epoch")
        doomed.kill()
        with start_worker(redis_url, mnist_dir, name="late", **fast), start_api(redis_url) as api:
            http = httpx.Client(base_url=api.base_url, timeout=30)
            body = wait_until_ended(http, experiment_id, 400)

    assert body["status"] == "succeeded", body
    runs, total = store.list_runs(experiment=experiment_id)
    assert total == 4, "one run per setting and seed"
    assert sorted((r.setting, r.config.seed) for r in runs) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(r.status == "succeeded" for r in runs)
    resumed = store.get_run(killed_run)
    assert resumed.attempts == 2 and resumed.worker != "doomed"
    # It resumed from its checkpoint: the second attempt's first record comes after epoch 1's steps.
    steps = [
        r["step"] for _, r in store.read_metrics(killed_run, limit=100_000)[0] if r.get("kind") == "train"
    ]
    assert steps == sorted(steps) and len(steps) == len(set(steps)), "no step trained twice"
    study = load_study(redis_url, experiment_id, ExperimentSpec.model_validate(body["spec"]))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2, "no trial lost or drawn again"
