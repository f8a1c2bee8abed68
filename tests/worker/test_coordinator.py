"""worker.coordinator on a real redis-server, with the runs' outcomes written by the test instead of
trained: which runs it queues, when, what it tells the study, and that repeating any step (a
coordinator that died half-way) neither loses a trial nor makes a run twice."""

from __future__ import annotations

import statistics

import pytest
from optuna.trial import TrialState

from ffcore.experiment import ExperimentSpec
from fflab.settings import Settings
from fflab.store.keys import experiment_run_id
from fflab.study import load_study
from tests.support.store import TestStore
from worker.coordinator import Coordinator

TINY = {"hidden": [32, 32], "epochs": 2}


def make_spec(**fields) -> ExperimentSpec:
    data = {"base": {"preset": "quick", "overrides": TINY}, "params": {"lr": {"values": [1e-3, 2e-3]}}}
    return ExperimentSpec.model_validate(data | fields)


@pytest.fixture
def store(redis_url: str) -> TestStore:
    return TestStore.from_url(redis_url)


@pytest.fixture
def sent() -> list[str]:
    return []


@pytest.fixture
def coordinator(store: TestStore, sent: list[str], redis_url: str) -> Coordinator:
    return Coordinator(store.experiments, store.runs, sent.append, redis_url)


def finish(store: TestStore, run_id: str, val: float, status: str = "succeeded") -> None:
    store.set_status(
        run_id, status, val_error_scan=val, val_error_softmax=val + 0.01, test_error_scan=val / 2
    )


def test_a_grid_queues_runs_up_to_max_parallel_and_ends_with_the_mean_and_std(store, coordinator, sent):
    spec = make_spec(seeds=[0, 1], prune=False, max_parallel=3)
    experiment = store.experiments.create(spec, name="lr")
    coordinator.advance(experiment.id)
    assert len(sent) == 3  # both seeds of the first setting, the first of the second
    coordinator.advance(experiment.id)
    assert len(sent) == 3, "advancing again queues nothing new"
    runs = {store.get_run(r).setting: [] for r in sent}
    for run_id in sent:
        run = store.get_run(run_id)
        assert run.experiment == experiment.id and f"experiment:{experiment.id}" in run.tags
        assert run_id == experiment_run_id(experiment.id, run.setting, run.config.seed)
        runs[run.setting].append(run)

    values = {}
    for run_id in list(sent):
        run = store.get_run(run_id)
        values[run_id] = 0.1 * (run.setting + 1) + 0.01 * run.config.seed
        finish(store, run_id, values[run_id])
        coordinator.advance(experiment.id)
    assert len(sent) == 4 and len(set(sent)) == 4
    finish(store, sent[3], 0.2 + 0.01 * store.get_run(sent[3]).config.seed)
    values[sent[3]] = 0.2 + 0.01 * store.get_run(sent[3]).config.seed
    coordinator.advance(experiment.id)

    record = store.experiments.get(experiment.id)
    assert record.status == "succeeded"
    table = store.experiments.table(record)
    for setting in table.settings:
        errors = [values[r.run_id] for r in setting.runs]
        assert setting.status == "succeeded"
        assert setting.stats["val_error_scan"].mean == pytest.approx(statistics.mean(errors))
        assert setting.stats["val_error_scan"].std == pytest.approx(statistics.stdev(errors))
    assert table.best == 0  # the test gave setting 0 the lower errors
    study = load_study(coordinator.redis_url, experiment.id, spec)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    told = {t.number: t.value for t in study.trials}
    assert told == {s.trial: pytest.approx(s.stats["val_error_scan"].mean) for s in table.settings}


def test_with_pruning_a_settings_other_seeds_wait_for_its_first(store, coordinator, sent):
    spec = make_spec(seeds=[0, 1, 2], max_parallel=4)
    experiment = store.experiments.create(spec)
    coordinator.advance(experiment.id)
    assert [store.get_run(r).config.seed for r in sent] == [0, 0]  # one run per setting
    finish(store, sent[0], 0.3)
    coordinator.advance(experiment.id)
    assert [store.get_run(r).config.seed for r in sent[2:]] == [1, 2]


def test_a_pruned_or_failed_first_seed_ends_its_setting_and_the_study_hears_it(store, coordinator, sent):
    spec = make_spec(seeds=[0, 1], max_parallel=2)
    experiment = store.experiments.create(spec)
    coordinator.advance(experiment.id)
    pruned, failed = sent
    store.experiments.mark_pruned(experiment.id, pruned)
    store.set_status(pruned, "cancelled", error="pruned at epoch 2")
    store.set_status(failed, "failed", error="boom")
    coordinator.advance(experiment.id)

    record = store.experiments.get(experiment.id)
    assert (
        record.status == "failed"
        and record.error == "no setting had all its seeds succeed (1 failed, 1 pruned)"
    )
    assert [s.status for s in store.experiments.table(record).settings] == ["pruned", "failed"]
    assert len(sent) == 2, "no other seed of a pruned or failed setting is queued"
    states = sorted(t.state.name for t in load_study(coordinator.redis_url, experiment.id, spec).trials)
    assert states == ["FAIL", "PRUNED"]


def test_a_coordinator_that_died_half_way_loses_no_trial_and_makes_no_run_twice(store, coordinator, sent):
    spec = make_spec(
        search="random",
        max_trials=2,
        params={"lr": {"low": 1e-4, "high": 1e-2, "log": True}},
        seeds=[0],
        max_parallel=1,
    )
    experiment = store.experiments.create(spec)
    # It died after asking the study for a trial and before recording it...
    study = load_study(coordinator.redis_url, experiment.id, spec)
    orphan = study.ask()
    orphan.suggest_float("lr", 1e-4, 1e-2, log=True)
    # ... and, for that trial's run, after creating the run and before sending its task.
    coordinator.advance(experiment.id)
    [entry] = store.experiments.trials(experiment.id)
    assert entry.number == orphan.number and entry.params == {"lr": orphan.params["lr"]}
    run_id = sent[0]
    store.redis.hdel(f"ff:experiment:{experiment.id}:runs", "0:0")  # the record of the send is lost
    coordinator.advance(experiment.id)
    assert sent == [run_id, run_id], "the same run is sent again (a duplicate task does nothing)"
    assert store.list_runs(experiment=experiment.id)[1] == 1

    finish(store, run_id, 0.2)
    coordinator.advance(experiment.id)
    finish(store, sent[-1], 0.1)
    coordinator.advance(experiment.id)
    assert store.experiments.get(experiment.id).status == "succeeded"
    assert len(load_study(coordinator.redis_url, experiment.id, spec).trials) == 2


def test_a_cancelled_experiment_queues_nothing(store, coordinator, sent):
    experiment = store.experiments.create(make_spec())
    store.experiments.finish(experiment.id, "cancelled")
    coordinator.advance(experiment.id)
    assert sent == []


def test_a_held_lock_makes_advance_a_no_op(store, coordinator, sent):
    experiment = store.experiments.create(make_spec(max_parallel=2))
    with store.experiments.lock(experiment.id):
        coordinator.advance(experiment.id)
    assert sent == []
    coordinator.advance(experiment.id)
    assert len(sent) == 2


def test_a_grid_advanced_one_trial_at_a_time_draws_every_point_once(store, coordinator, sent):
    # Each advance loads the study afresh (as separate workers do): the grid's order must not change.
    spec = make_spec(params={"lr": {"values": [1e-3, 2e-3, 3e-3, 4e-3]}}, seeds=[0], max_parallel=1)
    experiment = store.experiments.create(spec)
    coordinator.advance(experiment.id)
    for _ in range(4):
        finish(store, sent[-1], 0.1)
        coordinator.advance(experiment.id)
    drawn = [store.get_run(r).config.lr for r in sent]
    assert sorted(drawn) == [1e-3, 2e-3, 3e-3, 4e-3]
    assert store.experiments.get(experiment.id).status == "succeeded"


def test_a_drawn_setting_runconfig_refuses_fails_alone_and_the_experiment_goes_on(store, coordinator, sent):
    # One layer cannot be scanned at layer 1: two of the four combinations are refused by RunConfig.
    spec = ExperimentSpec.model_validate(
        {
            "base": {
                "preset": "quick",
                "overrides": {"hidden": [32, 32], "scan_layers": [0], "head_layers": [0], "epochs": 2},
            },
            "search": "random",
            "params": {"hidden": {"values": [[32], [32, 32]]}, "scan_layers": {"values": [[0], [1]]}},
            "seeds": [0],
            "max_trials": 8,
            "max_parallel": 8,
        }
    )
    experiment = store.experiments.create(spec)
    coordinator.advance(experiment.id)
    for run_id in sent:
        finish(store, run_id, 0.2)
    coordinator.advance(experiment.id)

    record = store.experiments.get(experiment.id)
    table = store.experiments.table(record)
    refused = [s for s in table.settings if s.status == "failed"]
    assert refused and all(s.params == {"hidden": [32], "scan_layers": [1]} and not s.runs for s in refused)
    assert all("RunConfig refuses" in s.error for s in refused)
    assert {s.status for s in table.settings} == {"failed", "succeeded"} and record.status == "succeeded"
    states = {t.state.name for t in load_study(coordinator.redis_url, experiment.id, spec).trials}
    assert states == {"FAIL", "COMPLETE"} and len(store.experiments.trials(experiment.id)) == 8


def test_a_drawn_setting_over_the_servers_limits_fails_with_them_instead_of_training(store, sent, redis_url):
    """Limits may be lowered after an experiment was accepted: a setting over them is not trained."""
    limits = Settings(redis_url=redis_url, max_units=48)
    coordinator = Coordinator(store.experiments, store.runs, sent.append, redis_url, settings=limits)
    spec = make_spec(params={"hidden": {"values": [[32, 32], [64, 64]]}}, seeds=[0])
    experiment = store.experiments.create(spec)
    coordinator.advance(experiment.id)

    table = store.experiments.table(store.experiments.get(experiment.id))
    by_hidden = {tuple(s.params["hidden"]): s for s in table.settings}
    assert by_hidden[(64, 64)].status == "failed" and not by_hidden[(64, 64)].runs
    assert by_hidden[(64, 64)].error == (
        "over this server's limits: hidden: at most 48 units per layer allowed, got 64"
    )
    assert by_hidden[(32, 32)].status == "running" and len(sent) == 1


def test_an_orphaned_trial_drawn_half_way_fails_instead_of_training_the_base(store, coordinator, sent):
    spec = make_spec(search="random", max_trials=2, params={"lr": {"low": 1e-4, "high": 1e-2}}, seeds=[0])
    experiment = store.experiments.create(spec)
    load_study(coordinator.redis_url, experiment.id, spec).ask()  # died before suggesting anything
    coordinator.advance(experiment.id)
    first, second = store.experiments.trials(experiment.id)
    assert first.error and first.params == {} and first.told
    assert second.error is None and [store.get_run(r).config.lr for r in sent] == [second.params["lr"]]


def test_a_seed_group_queues_all_its_seeds_at_once(store, coordinator, sent):
    experiment = store.experiments.create(make_spec(params={"lr": {"values": [1e-3]}}, max_parallel=3))
    coordinator.advance(experiment.id)
    assert sorted(store.get_run(r).config.seed for r in sent) == [0, 1, 2]


def test_a_first_seed_pruned_at_its_last_evaluation_ends_its_setting(store, coordinator, sent):
    spec = make_spec(seeds=[0, 1], max_parallel=2)
    experiment = store.experiments.create(spec)
    coordinator.advance(experiment.id)
    completed_but_pruned = sent[0]
    finish(store, completed_but_pruned, 0.5)  # it trained to its end ...
    store.experiments.mark_pruned(experiment.id, completed_but_pruned)  # ... where the pruner said stop
    coordinator.advance(experiment.id)
    table = store.experiments.table(store.experiments.get(experiment.id))
    pruned = table.settings[store.get_run(completed_but_pruned).setting]
    assert pruned.status == "pruned" and [r.status for r in pruned.runs] == ["succeeded"]
    assert completed_but_pruned not in sent[2:] and all(
        store.get_run(r).setting != pruned.trial for r in sent[2:]
    )


def test_start_with_settings_enqueued_half_way_are_all_drawn_by_the_next_pass(store, coordinator, sent):
    starts = [{"lr": 3e-3}, {"lr": 5e-3}]
    spec = make_spec(
        search="random",
        max_trials=3,
        params={"lr": {"low": 1e-4, "high": 1e-2, "log": True}},
        seeds=[0],
        max_parallel=3,
        start_with=starts,
    )
    experiment = store.experiments.create(spec)
    # A pass died after enqueuing the first known setting and before the second.
    load_study(coordinator.redis_url, experiment.id, spec).enqueue_trial(starts[0])
    coordinator.advance(experiment.id)
    drawn = [store.get_run(r).config.lr for r in sent]
    assert drawn[:2] == [3e-3, 5e-3] and len(drawn) == 3
    coordinator.advance(experiment.id)  # the study is loaded again: nothing is enqueued twice
    assert len(load_study(coordinator.redis_url, experiment.id, spec).trials) == 3


def test_experiments_wait_while_the_queue_holds_ff_max_queued_runs(store, sent, redis_url):
    coordinator = Coordinator(store.experiments, store.runs, sent.append, redis_url, max_queued=3)
    others = [store.runs.create_run(make_spec().base_config()).id for _ in range(2)]
    experiment = store.experiments.create(make_spec(seeds=[0, 1], prune=False, max_parallel=4))
    coordinator.advance(experiment.id)
    assert len(sent) == 1, "two of the three places are taken by other runs"
    for run_id in others:
        store.set_status(run_id, "running")
    coordinator.advance(experiment.id)
    assert len(sent) == 3 and len(set(sent)) == 3, "each place freed is filled, no run twice"


def test_a_pass_that_lost_its_lock_stops_writing(store, sent, redis_url):
    def enqueue_then_lose_the_lock(run_id: str) -> None:
        sent.append(run_id)
        store.redis.delete(f"ff:experiment:{experiment.id}:lock")  # it expired; another holder may act

    coordinator = Coordinator(store.experiments, store.runs, enqueue_then_lose_the_lock, redis_url)
    experiment = store.experiments.create(make_spec(seeds=[0, 1], prune=False, max_parallel=4))
    coordinator.advance(experiment.id)
    assert len(sent) == 1, "the pass stops at its next write"
    assert store.redis.hlen(f"ff:experiment:{experiment.id}:runs") == 1
    calm = Coordinator(store.experiments, store.runs, sent.append, redis_url)
    calm.advance(experiment.id)
    assert len(sent) == 4 and len(set(sent)) == 4, "the next pass finishes the job, no run twice"
