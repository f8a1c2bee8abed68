"""A run's metric records as the Live page holds them: loaded once thinned, then extended by cursor.

The first load asks the API for a thinned series (every eval and status record, train records
evenly thinned to about `initial_points`) so that a long run's page opens fast; afterwards each
poll fetches only the records after the cursor. The Live page keeps one `MetricsFeed` per run in
st.session_state, so the series survives reruns without being fetched again, and passes it to the
fragment that polls and draws it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from dashboard.client import ApiClient

logger = logging.getLogger(__name__)

POLL_PAGE_SIZE = 1000
# A poll reads at most this many pages; the rest comes with the next poll, so one tick stays short.
MAX_PAGES_PER_POLL = 5


@dataclass
class MetricsFeed:
    run_id: str
    initial_points: int = 400
    records: list[dict[str, Any]] = field(default_factory=list)
    cursor: str | None = None
    loaded: bool = False

    def refresh(self, client: ApiClient) -> int:
        """Load the thinned series the first time, else fetch what came after the cursor.

        Returns how many records were added.
        """
        if not self.loaded:
            page = client.metrics(self.run_id, max_points=self.initial_points)
            self.records = []
            self._add(page.records)
            self.cursor = page.next or self._last_id(self.cursor)
            self.loaded = True
            added = len(self.records)
        else:
            added = 0
            for _ in range(MAX_PAGES_PER_POLL):
                page = client.metrics(self.run_id, after=self.cursor, limit=POLL_PAGE_SIZE)
                self._add(page.records)
                added += len(page.records)
                if page.records:
                    self.cursor = page.next or page.records[-1].get("id", self.cursor)
                if len(page.records) < POLL_PAGE_SIZE:
                    break
        if added:
            logger.debug("run %s: %d new metric records (cursor %s)", self.run_id, added, self.cursor)
        return added

    def _add(self, records: list[dict[str, Any]]) -> None:
        """Append records; a rewind (a resumed run) first drops the train and eval records past its
        step, which a dead attempt had logged: the curves never fold back."""
        for record in records:
            if record.get("kind") == "rewind":
                self.records = [r for r in self.records if _before_rewind(r, record.get("step", 0))]
            self.records.append(record)

    def _last_id(self, default: str | None) -> str | None:
        return self.records[-1].get("id", default) if self.records else default

    @property
    def latest_status(self) -> str | None:
        """The status of the newest status record, if any."""
        for record in reversed(self.records):
            if record.get("kind") == "status":
                return record.get("status")
        return None

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [record for record in self.records if record.get("kind") == kind]


def _before_rewind(record: dict[str, Any], step: int) -> bool:
    """Whether a record survives a rewind to `step`: every status record, train and eval ones up to it."""
    return record.get("kind") not in ("train", "eval") or record.get("step", 0) <= step
