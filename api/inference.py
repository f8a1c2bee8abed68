"""Trained models in memory: an LRU cache of loaded models and micro-batched prediction.

Loading a model (fetch the safetensors bytes from Redis, build the network) costs tens of
milliseconds, so each run's model is loaded once and kept, up to `Settings.model_cache_size`
models. A cached model is reused while the model stored in Redis is the same one: each request
compares the run record's `updated_at` with the one seen when the model was last confirmed, and
only when it moved (a running run saves a new model at epoch ends) compares the stored
model's SHA-1, computed inside Redis (fflab.store.runs.RunStore.model_fingerprint), with the cached one.
Concurrent requests for one run share that read of the record (`SharedReads`), each still reading
after it arrived.

Predictions run in one dedicated thread, off the event loop. Requests that arrive while a batch is
being computed wait and go together in the next batch: one forward pass over 30 images costs far
less than 30 passes over one, and no request waits for a timer when the server is idle.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
from anyio import to_thread

from ffcore.checkpoint import load_model
from ffcore.config import RunConfig
from ffcore.model import FFNetwork, Prediction, predict
from fflab.store.keys import FINISHED, Checkpoint, RunRecord
from fflab.store.runs import RunStore

log = logging.getLogger(__name__)

MAX_BATCH = 64
Value = TypeVar("Value")


class NoModelError(LookupError):
    """The run has no stored model (yet)."""


class UnreadableModelError(ValueError):
    """The stored bytes are not a model ffcore can load."""


@dataclass
class DigitPrediction:
    """One image's prediction (a row of ffcore's batched `Prediction`)."""

    goodness: np.ndarray  # (10 labels, L layers)
    scan_scores: np.ndarray  # (10,)
    scan_label: int
    head_label: int
    head_probs: np.ndarray  # (10,)


class PredictionBatcher:
    """Collects concurrent prediction requests for one model and runs them as batches."""

    def __init__(self, model: FFNetwork, executor: ThreadPoolExecutor):
        self.model = model
        self.executor = executor
        self._pending: list[tuple[np.ndarray, asyncio.Future]] = []
        self._drainer: asyncio.Task | None = None

    async def predict(self, image: np.ndarray) -> DigitPrediction:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((image, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            images = np.stack([image for image, _ in batch])
            try:
                result = await loop.run_in_executor(self.executor, _predict_batch, self.model, images)
            except Exception as error:  # a failed batch fails its requests, not the server
                log.exception("prediction failed for a batch of %d", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for i, (_, future) in enumerate(batch):
                if not future.done():  # the client may have gone away
                    future.set_result(
                        DigitPrediction(
                            goodness=result.goodness[i],
                            scan_scores=result.scan_scores[i],
                            scan_label=int(result.scan_label[i]),
                            head_label=int(result.head_label[i]),
                            head_probs=result.head_probs[i],
                        )
                    )


def _predict_batch(model: FFNetwork, images: np.ndarray) -> Prediction:
    return predict(model, images)


@dataclass
class LoadedModel:
    run_id: str
    fingerprint: str  # SHA-1 of the stored safetensors bytes
    confirmed_at: float | None  # the run's updated_at when the fingerprint was last confirmed
    config: RunConfig
    step: int | None
    batcher: PredictionBatcher = field(repr=False)


class ModelCache:
    """Loaded models by run id, least recently used first out."""

    def __init__(self, store: RunStore, size: int):
        self.store = store
        self.size = size
        self._entries: OrderedDict[str, LoadedModel] = OrderedDict()
        self._loading: dict[tuple[str, str], asyncio.Future[LoadedModel]] = {}
        # One thread for all forward passes: on a small machine parallel passes only fight for cores.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")

    def __len__(self) -> int:
        return len(self._entries)

    def invalidate(self, run_id: str) -> None:
        self._entries.pop(run_id, None)

    def close(self) -> None:
        self._entries.clear()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def get(self, run_id: str, updated_at: float | None) -> LoadedModel:
        """The run's current model, loaded or from the cache; NoModelError when it has none.

        `updated_at` is the run record's, read by the caller for this request.
        """
        entry = self._entries.get(run_id)
        if entry is not None and entry.confirmed_at == updated_at:
            self._entries.move_to_end(run_id)
            return entry
        fingerprint = await to_thread.run_sync(self.store.model_fingerprint, run_id)
        if fingerprint is None:
            self.invalidate(run_id)
            raise NoModelError(run_id)
        if entry is not None and entry.fingerprint == fingerprint:
            entry.confirmed_at = updated_at
            self._entries.move_to_end(run_id)
            return entry
        return await self._load_once(run_id, fingerprint)

    async def _load_once(self, run_id: str, fingerprint: str) -> LoadedModel:
        # Concurrent requests for a model not loaded yet share one load.
        key = (run_id, fingerprint)
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load(run_id))
            self._loading[key] = pending
            pending.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(pending)

    async def _load(self, run_id: str) -> LoadedModel:
        # The record first: its updated_at then predates the model read, so a newer model is noticed.
        record = await to_thread.run_sync(self.store.get_run, run_id)
        data = await to_thread.run_sync(self.store.load_model, run_id)
        if record is None or data is None:
            raise NoModelError(run_id)
        checkpoint = await to_thread.run_sync(self.store.load_checkpoint, run_id)
        model, config = await asyncio.get_running_loop().run_in_executor(self.executor, _load_model, data)
        entry = LoadedModel(
            run_id=record.id,
            # Hash what was loaded, not what was checked: the model may have been replaced in between.
            fingerprint=hashlib.sha1(data).hexdigest(),
            confirmed_at=record.updated_at,
            config=config,
            step=_model_step(record, checkpoint),
            batcher=PredictionBatcher(model, self.executor),
        )
        self._entries[record.id] = entry
        self._entries.move_to_end(record.id)
        while len(self._entries) > self.size:
            evicted, _ = self._entries.popitem(last=False)
            log.info("model cache full (%d): dropped the model of run %s", self.size, evicted)
        log.info("loaded the model of run %s (%d bytes)", record.id, len(data))
        return entry


class SharedReads(Generic[Value]):
    """Concurrent reads of the same key share one round trip, and each still sees what was stored after it
    asked: a read asked for while one is in flight waits for the next, which starts when that one ends.

    Under load, requests for one run arrive in bursts (a batch of answers goes out, its clients send again);
    the burst then costs one read of the run's record instead of one per request.
    """

    def __init__(self, read: Callable[[str], Awaitable[Value]], loop: asyncio.AbstractEventLoop):
        self._read = read
        self.loop = loop  # the event loop its reads and answers belong to
        self._in_flight: dict[str, asyncio.Future[Value]] = {}
        self._next: dict[str, asyncio.Future[Value]] = {}

    async def get(self, key: str) -> Value:
        if key in self._in_flight:  # begun before this call: its answer may predate it
            answer = self._next.get(key)
            if answer is None:
                answer = self._next[key] = self.loop.create_future()
        else:
            answer = self.loop.create_future()
            self._start(key, answer)
        # A caller that is cancelled (its client went away) leaves the shared answer to the others.
        return await asyncio.shield(answer)

    def _start(self, key: str, answer: asyncio.Future[Value]) -> None:
        self._in_flight[key] = answer
        read = asyncio.ensure_future(self._read(key), loop=self.loop)
        read.add_done_callback(lambda done: self._finished(key, answer, done))

    def _finished(self, key: str, answer: asyncio.Future[Value], read: asyncio.Future[Value]) -> None:
        del self._in_flight[key]
        if read.cancelled():
            answer.cancel()
        elif read.exception() is not None:
            # Every caller gets the error (a 503 when Redis is down); retrieved here too, so that no
            # "exception never retrieved" is logged when all callers went away.
            answer.set_exception(read.exception())
            answer.add_done_callback(lambda failed: failed.exception())
        else:
            answer.set_result(read.result())
        waiting = self._next.pop(key, None)
        if waiting is not None:
            self._start(key, waiting)


def _model_step(record: RunRecord, checkpoint: Checkpoint | None) -> int | None:
    """The training step the stored model is from: its checkpoint's, or the final step of a run that
    finished without one."""
    if checkpoint is not None:
        return checkpoint.step
    return record.step if record.status in FINISHED else None


def _load_model(data: bytes) -> tuple[FFNetwork, RunConfig]:
    try:
        return load_model(data)  # safetensors only: never unpickles
    except (ValueError, RuntimeError, KeyError) as error:  # not safetensors, wrong format or shapes
        raise UnreadableModelError(str(error)) from error
