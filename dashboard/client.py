"""The REST client: the only way the dashboard talks to FF Lab.

One `ApiClient` wraps an `httpx.Client` (connection pooling, timeouts). The key it sends is its own, not
the pool's: `with_key` gives each visitor a client on the same pool that sends that visitor's key, so
that no key is ever shared between sessions. Every failure, from a refused connection to a 422, becomes
an `ApiError` whose message a page can show as it is.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import httpx

from dashboard.models import (
    Access,
    Experiment,
    ExperimentPage,
    MetricsPage,
    Prediction,
    ReceptiveFields,
    Run,
    RunOptions,
    RunPage,
)

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
# What a visitor reads when the API refuses them for want of a key (the sidebar holds the key field).
WRITE_KEY_NEEDED = "This API needs a key to change anything: enter it in the sidebar."
READ_KEY_NEEDED = "This API needs a key to show anything: enter it in the sidebar."


class ApiError(Exception):
    """A request to the API failed; `str(error)` is a sentence for the user."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    @property
    def unreachable(self) -> bool:
        return self.status_code is None


def _detail_text(detail: Any) -> str:
    """FastAPI details come as a string, or as a list of {loc, msg} for its own 422s."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query", "path")]
                parts.append(f"{'.'.join(loc)}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


def _error_from_response(response: httpx.Response, changes: bool) -> ApiError:
    try:
        body = response.json()
        detail = _detail_text(body.get("detail", body)) if isinstance(body, dict) else str(body)
    except ValueError:
        detail = response.text.strip()[:300] or response.reason_phrase
    status = response.status_code
    if status == 401:
        needed = WRITE_KEY_NEEDED if changes else READ_KEY_NEEDED
        message = f"{needed} (The API answered: {detail}.)"
    elif status >= 500:
        message = f"The API failed (HTTP {status}): {detail}"
    else:
        message = detail or f"HTTP {status}"
    return ApiError(message, status)


class ApiClient:
    """Typed calls to FF Lab's REST API (see docs/architecture.md)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        # The pool has no key: every request adds this client's own (see with_key).
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport)
        self._key_headers = {"X-API-Key": api_key} if api_key else {}

    def with_key(self, api_key: str | None) -> ApiClient:
        """A client on the same connection pool that sends `api_key` (None: no key) with each request."""
        client = copy.copy(self)
        client._key_headers = {"X-API-Key": api_key} if api_key else {}
        return client

    @property
    def has_key(self) -> bool:
        return bool(self._key_headers)

    def close(self) -> None:
        """Close the connection pool, which every client made by with_key shares."""
        self._http.close()

    def _request(self, method: str, path: str, changes: bool | None = None, **kwargs: Any) -> httpx.Response:
        """`changes`: whether the request changes something (default: any method but GET)."""
        url = path if path.startswith("/openapi") else API_PREFIX + path
        headers = {**self._key_headers, **kwargs.pop("headers", {})}
        try:
            response = self._http.request(method, url, headers=headers, **kwargs)
        except httpx.TimeoutException as error:
            raise ApiError(f"The FF Lab API at {self.base_url} did not answer in time ({error}).") from error
        except httpx.TransportError as error:
            raise ApiError(
                f"Cannot reach the FF Lab API at {self.base_url} ({error}). "
                "Is it running? `make up` starts the whole stack."
            ) from error
        if response.is_error:
            error = _error_from_response(response, method != "GET" if changes is None else changes)
            logger.info("%s %s -> %s: %s", method, url, response.status_code, error.message)
            raise error
        return response

    # --- runs --------------------------------------------------------------------------------

    def list_runs(
        self,
        status: str | None = None,
        offset: int = 0,
        limit: int = 100,
        tag: str | None = None,
        experiment: str | None = None,
    ) -> RunPage:
        """Runs newest first; each filter given narrows them (the experiment by its id)."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if status:
            params["status"] = status
        if tag:
            params["tag"] = tag
        if experiment:
            params["experiment"] = experiment
        return RunPage.model_validate(self._request("GET", "/runs", params=params).json())

    def get_run(self, run_id: str) -> Run:
        return Run.model_validate(self._request("GET", f"/runs/{run_id}").json())

    def create_run(
        self,
        preset: str,
        overrides: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        note: str | None = None,
    ) -> Run:
        body: dict[str, Any] = {"preset": preset, "overrides": overrides or {}}
        if tags:
            body["tags"] = tags
        if note:
            body["note"] = note
        return Run.model_validate(self._request("POST", "/runs", json=body).json())

    def edit_run(self, run_id: str, tags: list[str] | None = None, note: str | None = None) -> Run:
        """PATCH a run's tags and/or note (None leaves one as it is; an empty note removes it)."""
        body: dict[str, Any] = {}
        if tags is not None:
            body["tags"] = tags
        if note is not None:
            body["note"] = note
        return Run.model_validate(self._request("PATCH", f"/runs/{run_id}", json=body).json())

    def rerun(self, run_id: str, tags: list[str] | None = None, note: str | None = None) -> Run:
        """Queue a new run with the configuration of `run_id`; the answer is the new run."""
        body: dict[str, Any] = {}
        if tags is not None:
            body["tags"] = tags
        if note is not None:
            body["note"] = note
        return Run.model_validate(self._request("POST", f"/runs/{run_id}/rerun", json=body).json())

    def cancel_run(self, run_id: str) -> Run:
        return Run.model_validate(self._request("POST", f"/runs/{run_id}/cancel").json())

    def delete_run(self, run_id: str) -> None:
        self._request("DELETE", f"/runs/{run_id}")

    def run_options(self) -> RunOptions:
        """The presets, and the run schema with the server's limits: what the start-run form offers."""
        return RunOptions.model_validate(self._request("GET", "/run-options").json())

    # --- experiments: seed groups and sweeps -------------------------------------------------------

    def create_experiment(self, spec: dict[str, Any], name: str | None = None) -> Experiment:
        """POST an experiment spec (base, search, params, seeds, ...); a 422 says what is wrong with it."""
        body = dict(spec)
        if name:
            body["name"] = name
        return Experiment.model_validate(self._request("POST", "/experiments", json=body).json())

    def list_experiments(
        self, status: str | None = None, offset: int = 0, limit: int = 100
    ) -> ExperimentPage:
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if status:
            params["status"] = status
        return ExperimentPage.model_validate(self._request("GET", "/experiments", params=params).json())

    def get_experiment(self, experiment_id: str) -> Experiment:
        return Experiment.model_validate(self._request("GET", f"/experiments/{experiment_id}").json())

    def experiment_table_csv(self, experiment_id: str) -> str:
        """The results table as CSV, one row per setting, as the API writes it."""
        return self._request("GET", f"/experiments/{experiment_id}/table.csv").text

    def cancel_experiment(self, experiment_id: str) -> Experiment:
        response = self._request("POST", f"/experiments/{experiment_id}/cancel")
        return Experiment.model_validate(response.json())

    def delete_experiment(self, experiment_id: str) -> None:
        self._request("DELETE", f"/experiments/{experiment_id}")

    # --- metrics -----------------------------------------------------------------------------

    def metrics(
        self,
        run_id: str,
        after: str | None = None,
        limit: int | None = None,
        max_points: int | None = None,
        kind: str | None = None,
    ) -> MetricsPage:
        """Records after the cursor `after`; `max_points` asks for a thinned train series."""
        params: dict[str, Any] = {}
        if after:
            params["after"] = after
        if limit:
            params["limit"] = limit
        if max_points:
            params["max_points"] = max_points
        if kind:
            params["kind"] = kind
        response = self._request("GET", f"/runs/{run_id}/metrics", params=params)
        return MetricsPage.model_validate(response.json())

    # --- prediction --------------------------------------------------------------------------

    def predict_pixels(self, run_id: str, pixels: list[list[float]]) -> Prediction:
        """Predict a 28x28 image given as values in [0, 1]."""
        response = self._request("POST", f"/runs/{run_id}/predict", changes=False, json={"image": pixels})
        return Prediction.model_validate(response.json())

    def predict_file(
        self, run_id: str, data: bytes, filename: str = "digit.png", content_type: str = "image/png"
    ) -> Prediction:
        """Predict an image file of any size (the API preprocesses it as MNIST was)."""
        files = {"image": (filename, data, content_type)}
        response = self._request("POST", f"/runs/{run_id}/predict", changes=False, files=files)
        return Prediction.model_validate(response.json())

    # --- probes ------------------------------------------------------------------------------

    def receptive_fields_png(self, run_id: str, count: int = 64, scale: int = 3) -> bytes:
        """The first layer's `count` strongest units' input weights as a PNG grid of 28x28 tiles, `scale`
        screen pixels per weight (red positive, blue negative). A run without a model yet: ApiError 409."""
        params = {"count": count, "scale": scale}
        return self._request("GET", f"/runs/{run_id}/receptive-fields.png", params=params).content

    def receptive_fields(self, run_id: str, count: int = 64) -> ReceptiveFields:
        """The same fields as numbers: each unit's 28x28 weights and, apart, its ten label weights."""
        response = self._request("GET", f"/runs/{run_id}/receptive-fields", params={"count": count})
        return ReceptiveFields.model_validate(response.json())

    # --- service -----------------------------------------------------------------------------

    def access(self) -> Access:
        """GET /access: which requests need a key, and what this client's key (or none) allows."""
        return Access.model_validate(self._request("GET", "/access").json())

    def ready(self) -> dict[str, Any]:
        """GET /readyz: Redis reachable and the live workers. A 503 raises ApiError."""
        return self._request("GET", "/readyz").json()

    def openapi(self) -> dict[str, Any]:
        return self._request("GET", "/openapi.json").json()
