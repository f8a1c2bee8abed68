"""An in-memory stand-in for the REST API's experiment and run routes, behind httpx.MockTransport.

The pages' tests with the real API are in test_pages.py; these fakes let the Experiments page and the
Runs page additions be tested on their own, with experiments in any state a test builds. Specs are
checked by the real ffcore.experiment.ExperimentSpec, so the form's bodies are checked for real.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from pydantic import ValidationError

from api.routes.options import run_options
from dashboard.client import ApiClient
from ffcore.experiment import ExperimentSpec, describe_spec_error
from fflab.settings import Settings

ERRORS = ("val_error_scan", "val_error_softmax", "test_error_scan", "test_error_softmax")


def stats_of(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and sample std (n-1) of each error over the succeeded runs, as the API reports them."""
    out = {}
    for name in ERRORS:
        values = [run[name] for run in runs if run["status"] == "succeeded" and run.get(name) is not None]
        out[name] = {
            "mean": statistics.mean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values),
        }
    return out


def outcome(seed: int, status: str = "succeeded", run_id: str | None = None, **errors: float) -> dict:
    """One run of a setting (a RunOutcome)."""
    return {"seed": seed, "status": status, "run_id": run_id, "epochs": 1, "error": None} | {
        name: errors.get(name) for name in ERRORS
    }


def setting(trial: int, params: dict[str, Any], runs: list[dict], status: str = "succeeded") -> dict:
    return {"trial": trial, "params": params, "status": status, "runs": runs, "stats": stats_of(runs)}


class FakeApi:
    """The routes the Experiments page and the Runs page call, answered from dictionaries."""

    def __init__(self) -> None:
        self.options = run_options(Settings()).model_dump(mode="json")
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.metrics: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[httpx.Request] = []
        self._next_id = 0

    def client(self) -> ApiClient:
        """A client that calls the fake directly, without a server."""
        return ApiClient("http://fake-api.test", transport=httpx.MockTransport(self.handle))

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Answer HTTP on a free local port until the block ends (for pages, which find the API by URL)."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                request = httpx.Request(
                    self.command,
                    f"http://{self.headers['host']}{self.path}",
                    headers=dict(self.headers),
                    content=self.rfile.read(length) if length else b"",
                )
                response = fake.handle(request)
                body = response.content
                self.send_response(response.status_code)
                self.send_header("content-type", response.headers.get("content-type", "application/json"))
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = do_PATCH = answer

            def log_message(self, *args: Any) -> None:  # the tests' output stays quiet
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()

    def new_id(self, prefix: str) -> str:
        self._next_id += 1
        return f"{prefix}{self._next_id:04d}"

    # --- what tests build ------------------------------------------------------------------------

    def add_experiment(self, spec: dict[str, Any], settings: list[dict], **fields: Any) -> dict[str, Any]:
        """An experiment of `spec` (validated) whose table holds `settings`; `fields` override the rest."""
        checked = ExperimentSpec.model_validate(spec)
        objective = checked.objective
        best = min(
            (
                (s["stats"][objective]["mean"], i)
                for i, s in enumerate(settings)
                if s["status"] == "succeeded" and s["stats"][objective]["mean"] is not None
            ),
            default=(None, None),
        )[1]
        runs = [run for s in settings for run in s["runs"]]
        experiment = {
            "id": fields.pop("id", None) or self.new_id("exp"),
            "name": None,
            "status": "running",
            "created_at": time.time(),
            "finished_at": None,
            "error": None,
            "search": checked.search,
            "objective": objective,
            "params": list(checked.params),
            "seeds": checked.seeds,
            "progress": {
                "settings_planned": checked.planned_trials(),
                "settings_started": len(settings),
                "settings_finished": sum(s["status"] != "running" for s in settings),
                "runs_queued": sum(r["status"] == "queued" for r in runs),
                "runs_running": sum(r["status"] == "running" for r in runs),
                "runs_finished": sum(r["status"] not in ("queued", "running") for r in runs),
            },
            "best": best,
            "best_params": None if best is None else settings[best]["params"],
            "best_objective": None if best is None else settings[best]["stats"][objective],
            "spec": checked.model_dump(mode="json"),
            "table": {"spec": checked.model_dump(mode="json"), "settings": settings, "best": best},
        } | fields
        self.experiments[experiment["id"]] = experiment
        return experiment

    def add_run(self, run_id: str | None = None, **fields: Any) -> dict[str, Any]:
        run = {"id": run_id or self.new_id("run"), "status": "succeeded", "preset": "quick",
               "config": {"hidden": [50, 50], "epochs": 2}, "created_at": time.time(), "tags": [],
               "experiment": None, "setting": None} | fields  # fmt: skip
        self.runs[run["id"]] = run
        return run

    # --- the routes ------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/api/v1")
        parts = path.strip("/").split("/")
        method = request.method
        if path == "/run-options":
            return httpx.Response(200, json=self.options)
        if path == "/readyz":
            return httpx.Response(200, json={"redis": True, "workers": [{"name": "w", "device": "cpu"}]})
        if parts[0] == "experiments":
            return self.experiment_route(method, parts[1:], request)
        if parts[0] == "runs":
            return self.run_route(method, parts[1:], request)
        return httpx.Response(404, json={"detail": f"no route {method} {path} in the fake API"})

    def experiment_route(self, method: str, parts: list[str], request: httpx.Request) -> httpx.Response:
        if not parts and method == "POST":
            body = json.loads(request.content)
            name = body.pop("name", None)
            try:
                spec = ExperimentSpec.model_validate(body)
            except ValidationError as error:
                return httpx.Response(422, json={"detail": describe_spec_error(error)})
            experiment = self.add_experiment(spec.model_dump(mode="json"), [], name=name)
            return httpx.Response(201, json=experiment)
        if not parts:
            listed = [
                {k: v for k, v in e.items() if k not in ("spec", "table")}
                for e in reversed(self.experiments.values())
                if request.url.params.get("status") in (None, e["status"])
            ]
            return httpx.Response(200, json={"experiments": listed, "total": len(listed), "offset": 0,
                                             "limit": 100})  # fmt: skip
        experiment = self.experiments.get(parts[0])
        if experiment is None:
            return httpx.Response(404, json={"detail": f"experiment {parts[0]!r} not found"})
        if len(parts) == 1 and method == "GET":
            return httpx.Response(200, json=experiment)
        if len(parts) == 1 and method == "DELETE":
            if experiment["status"] == "running":
                return httpx.Response(409, json={"detail": "the experiment is running: cancel it first"})
            del self.experiments[parts[0]]
            return httpx.Response(204)
        if parts[1:] == ["cancel"] and method == "POST":
            experiment["status"] = "cancelled"
            return httpx.Response(200, json=experiment)
        if parts[1:] == ["table.csv"]:
            rows = ["trial,status," + ",".join(experiment["params"])]
            for s in experiment["table"]["settings"]:
                rows.append(
                    f"{s['trial']},{s['status']}," + ",".join(json.dumps(v) for v in s["params"].values())
                )
            return httpx.Response(200, text="\n".join(rows) + "\n", headers={"content-type": "text/csv"})
        return httpx.Response(405, json={"detail": "not allowed"})

    def run_route(self, method: str, parts: list[str], request: httpx.Request) -> httpx.Response:
        if not parts:
            wanted = request.url.params.get("experiment")
            runs = [run for run in reversed(self.runs.values()) if wanted in (None, run.get("experiment"))]
            return httpx.Response(200, json={"runs": runs, "total": len(runs), "offset": 0, "limit": 100})
        run = self.runs.get(parts[0])
        if run is None:
            return httpx.Response(404, json={"detail": f"run {parts[0]!r} not found"})
        if len(parts) == 1:
            return httpx.Response(200, json=run)
        if parts[1] == "rerun" and method == "POST":
            copy = self.add_run(config=run["config"], preset=run["preset"], status="queued",
                                note=f"rerun of {run['id']}")  # fmt: skip
            return httpx.Response(201, json=copy)
        if parts[1] == "metrics":
            kind = request.url.params.get("kind")
            records = [r for r in self.metrics.get(parts[0], []) if kind in (None, r["kind"])]
            return httpx.Response(200, json={"records": records, "next": None})
        return httpx.Response(405, json={"detail": "not allowed"})
