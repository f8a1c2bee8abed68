"""The experiment coordinator: turns an experiment into runs, as many at once as it allows, and its
runs' outcomes into its Optuna study's verdicts.

`advance(experiment_id)` can be called by anyone at any time, as often as wanted: by the task the API
sends when an experiment is submitted, by a worker when one of the experiment's runs ends, and by
every worker's heartbeat (so an experiment moves on even when the process that should have advanced
it died). Under the experiment's lock it

1. tells the study what became of each setting whose runs have all ended (succeeded: the mean of
   the objective over its seeds; pruned; failed or cancelled), and cancels the rest of a setting
   that failed;
2. fills the free places (`max_parallel` minus the experiment's queued and running runs): first
   the seeds still due of the settings already drawn, then new settings asked from the study, up to
   `max_trials` trials. With pruning on, a setting's first seed trains alone and the others follow
   once it succeeded (ffcore.sweep's rule); without it, all its seeds are queued at once;
3. ends the experiment once every trial has been drawn and every setting has ended.

Crash safety: each step is recorded before the next depends on it, and each can be repeated. A
trial the study handed out but that was never recorded is adopted from the study's running trials;
the spec's `start_with` settings are enqueued with Optuna's skip_if_exists, so a pass that died half
way through enqueuing them is completed by the next; a run's id is derived from (experiment,
setting, seed), so creating it again finds it; its task is sent before the run is recorded as sent,
and a second task for one run does nothing (claiming is idempotent). No trial is lost and none is
trained twice. A pass renews its lock before every write and stops when the lock was lost (it
stalled past the lock's expiry and another coordinator took over), so two passes never interleave
their writes.

Bounds: a pass queues nothing while the service already has FF_MAX_QUEUED runs queued (the
experiment waits for room, as a POST /runs would get 429), so experiments cannot flood the queue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from ffcore.experiment_table import ExperimentTable, SettingResult
from ffcore.sweep import decode_params, encode_setting, suggest_setting
from fflab.limits import limit_problems
from fflab.settings import Settings
from fflab.store.experiments import (
    ExperimentLease,
    ExperimentLocked,
    ExperimentLockLost,
    ExperimentStore,
    counts,
)
from fflab.store.keys import TrialEntry, experiment_run_id
from fflab.store.runs import RunStore
from fflab.study import load_study

log = logging.getLogger(__name__)

MAX_NOTE = 500
# A pass holds the experiment's lock this long at most; it asks at most MAX_ASKS_PER_PASS trials (a
# small search space draws many duplicates, which take no place), so it ends well within it.
LOCK_TTL_S = 300.0
MAX_ASKS_PER_PASS = 50


class Coordinator:
    def __init__(
        self,
        experiments: ExperimentStore,
        runs: RunStore,
        enqueue: Callable[[str], None],
        redis_url: str,
        max_queued: int | None = None,
        settings: Settings | None = None,
    ):
        self.experiments = experiments
        self.runs = runs
        self.enqueue = enqueue
        self.redis_url = redis_url
        self.max_queued = max_queued  # FF_MAX_QUEUED; None: no cap
        self.settings = settings  # the server's limits on a drawn setting's run (None: none)

    def advance_all(self) -> None:
        """Advance every running experiment (the heartbeat's part); one that fails does not hold up
        the others."""
        for experiment_id in self.experiments.running_ids():
            try:
                self.advance(experiment_id)
            except Exception:
                log.exception("experiment %s: advancing it failed; trying again later", experiment_id)

    def advance(self, experiment_id: str) -> None:
        """Move the experiment on as far as it can go now; a no-op when another process is at it."""
        try:
            with self.experiments.lock(experiment_id, ttl_s=LOCK_TTL_S) as lease:
                _Pass(self, experiment_id, lease).run()
        except ExperimentLocked:
            log.debug("experiment %s: another coordinator is advancing it", experiment_id)
        except ExperimentLockLost:
            log.warning(
                "experiment %s: this pass outlived its lock and stopped; the next one resumes it",
                experiment_id,
            )

    def queue_room(self) -> int | None:
        """How many more runs the service's queue takes (FF_MAX_QUEUED); None when uncapped."""
        if self.max_queued is None:
            return None
        return max(0, self.max_queued - self.runs.count_runs("queued"))


class _Pass:
    """One advance of one experiment, under its lock."""

    def __init__(self, coordinator: Coordinator, experiment_id: str, lease: ExperimentLease):
        self.c = coordinator
        self.id = experiment_id
        self.lease = lease
        self._study: optuna.Study | None = None

    def study(self, trials_so_far: int) -> optuna.Study:
        if self._study is None:
            assert self.record is not None
            spec = self.record.spec
            self._study = load_study(self.c.redis_url, self.id, spec, sampler_seed=trials_so_far)
            # The spec's known settings come first; enqueuing one that is there already does nothing.
            for setting in spec.start_with:
                self.lease.renew()
                self._study.enqueue_trial(encode_setting(spec, setting), skip_if_exists=True)
        return self._study

    def run(self) -> None:
        self.record = self.c.experiments.get(self.id)
        if self.record is None or self.record.status != "running":
            return
        spec = self.record.spec
        entries = self.c.experiments.trials(self.id)
        table = self.c.experiments.table(self.record)
        self.tell_ended(entries, table)

        free = spec.max_parallel - _active(table)
        room = self.c.queue_room()
        if room is not None and room < free:
            log.info("experiment %s: the queue is full (FF_MAX_QUEUED); waiting for room", self.id)
            free = room
        for setting, result in enumerate(table.settings):
            for seed in _due_seeds(spec, result):
                if free <= 0:
                    break
                self.launch(setting, result.params, seed)
                free -= 1
        asks = 0
        while free > 0 and len(entries) < spec.planned_trials() and asks < MAX_ASKS_PER_PASS:
            entry, new = self.ask(entries, table)
            entries.append(entry)
            asks += 1
            if entry.error is not None:  # RunConfig refuses the setting: failed, and the study knows
                table.settings.append(
                    SettingResult(trial=entry.number, params=entry.params, status="failed", error=entry.error)
                )
                continue
            if not new:
                continue
            table.settings.append(SettingResult(trial=entry.number, params=entry.params, status="running"))
            for seed in _due_seeds(spec, table.settings[entry.setting]):
                if free <= 0:
                    break
                self.launch(entry.setting, entry.params, seed)
                free -= 1

        # A setting drawn again while its first draw had already ended is told at once.
        self.tell_ended(entries, table)
        self.finish_if_done(entries, self.c.experiments.table(self.record))

    def tell_ended(self, entries: list[TrialEntry], table: ExperimentTable) -> None:
        spec = self.record.spec
        for entry in entries:
            if entry.told or entry.setting >= len(table.settings):
                continue
            result = table.settings[entry.setting]
            if result.status == "running":
                continue
            study = self.study(len(entries))
            self.lease.renew()
            if result.status == "succeeded":
                value = result.stats[spec.objective].mean
                # A seed group trained on all 60k has no validation error: its trial just completes.
                study.tell(entry.number, value if value is not None else 0.0, skip_if_finished=True)
            else:
                state = TrialState.PRUNED if result.status == "pruned" else TrialState.FAIL
                study.tell(entry.number, state=state, skip_if_finished=True)
                self.cancel_unfinished(result)
            entry.told = True
            self.c.experiments.save_trial(self.id, entry)
            log.info("experiment %s: trial %d %s %s", self.id, entry.number, result.status, result.params)

    def cancel_unfinished(self, result: SettingResult) -> None:
        for run in result.runs:
            if run.status in ("queued", "running") and run.run_id is not None:
                self.c.runs.cancel_run(run.run_id)

    def ask(self, entries: list[TrialEntry], table: ExperimentTable) -> tuple[TrialEntry, bool]:
        """The next trial: one the study handed out earlier but was never recorded, else a new one.
        Returns it and whether its setting is new (a setting drawn again shares the first draw's)."""
        spec = self.record.spec
        study = self.study(len(entries))
        self.lease.renew()
        known = {e.number for e in entries}
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        orphans = [t for t in running if t.number not in known]
        number, params, error = None, {}, None
        if orphans:
            number = orphans[0].number
            params = decode_params(spec, orphans[0].params)
            if set(params) != set(spec.params):  # it died half-way through suggesting
                error = "its setting was never completely drawn (a coordinator died while drawing it)"
        else:
            live = study.ask()
            number = live.number
            try:
                params = suggest_setting(spec, live)
            except Exception as exc:  # Optuna refused a value: the trial fails, the experiment goes on
                error = f"{type(exc).__name__}: {exc}"
        if error is None:
            try:
                config = spec.run_config(params, spec.seeds[0])
            except ValueError as exc:  # ValidationError too: a random combination RunConfig refuses
                error = f"RunConfig refuses {params}: {exc}".splitlines()[0]
            else:  # the API checked the spec against the limits, which may have changed since
                problems = limit_problems(config, self.c.settings) if self.c.settings else []
                if problems:
                    error = f"over this server's limits: {'; '.join(problems)}"
        by_params = {_key(s.params): i for i, s in enumerate(table.settings)}
        setting = (
            len(table.settings) if error is not None else by_params.get(_key(params), len(table.settings))
        )
        entry = TrialEntry(number=number, setting=setting, params=params, error=error)
        if error is not None:
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            entry.told = True
        self.c.experiments.save_trial(self.id, entry)
        log.info(
            "experiment %s: trial %d draws setting %d %s %s", self.id, number, setting, params, error or ""
        )
        return entry, setting == len(table.settings)

    def launch(self, setting: int, params: dict[str, Any], seed: int) -> None:
        """Create the run of (setting, seed) if it is not there yet, send its task, record it as sent."""
        record = self.record
        spec = record.spec
        run_id = experiment_run_id(self.id, setting, seed)
        note = f"experiment {record.name or self.id}, setting {setting}: {json.dumps(params)}; seed {seed}"
        self.lease.renew()
        run = self.c.runs.create_run(
            spec.run_config(params, seed),
            preset=spec.base.preset,
            tags=[f"experiment:{self.id}", f"setting:{setting}"],
            note=note[:MAX_NOTE],
            run_id=run_id,
            experiment=self.id,
            setting=setting,
        )
        if run.status == "queued":
            self.c.enqueue(run_id)
        self.c.experiments.save_run_id(self.id, setting, seed, run_id)
        # Cancelled meanwhile: the API's cancel may have passed over the runs before this one was recorded.
        current = self.c.experiments.get(self.id)
        if current is None or current.status == "cancelled":
            self.c.runs.cancel_run(run_id)
        log.info("experiment %s: run %s queued (setting %d, seed %d)", self.id, run_id, setting, seed)

    def finish_if_done(self, entries: list[TrialEntry], table: ExperimentTable) -> None:
        spec = self.record.spec
        if len(entries) < spec.planned_trials() or not all(e.told for e in entries):
            return
        if any(s.status == "running" for s in table.settings):
            return
        self.lease.renew()
        if any(s.status == "succeeded" for s in table.settings):
            self.c.experiments.finish(self.id, "succeeded")
            log.info("experiment %s succeeded", self.id)
            return
        ended = {s: sum(r.status == s for r in table.settings) for s in ("failed", "pruned", "cancelled")}
        detail = ", ".join(f"{n} {s}" for s, n in ended.items() if n)
        self.c.experiments.finish(self.id, "failed", f"no setting had all its seeds succeed ({detail})")
        log.info("experiment %s failed: %s", self.id, detail)


def _active(table: ExperimentTable) -> int:
    tally = counts(table)
    return tally["runs_queued"] + tally["runs_running"]


def _due_seeds(spec: Any, result: SettingResult) -> list[int]:
    """The seeds of a running setting whose runs should be queued now. With pruning, the first seed
    trains alone and the others follow once it succeeded unpruned; a seed group (nothing the pruner
    could compare it with) and a spec without pruning queue all of them at once."""
    if result.status != "running":
        return []
    sent = {run.seed: run for run in result.runs}
    first = spec.seeds[0]
    one_first = spec.prune and not spec.is_seed_group()
    if first not in sent:
        return [first] if one_first else [s for s in spec.seeds if s not in sent]
    if one_first and sent[first].status != "succeeded":
        return []
    return [s for s in spec.seeds if s not in sent]


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)
