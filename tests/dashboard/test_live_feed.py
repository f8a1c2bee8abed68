"""dashboard.live_feed: a run's records as the Live page holds them, through a rewind."""

from __future__ import annotations

from dashboard.live_feed import MetricsFeed
from dashboard.models import MetricsPage


class PagedApi:
    """Answers the feed's metric requests from a list of pages, one per call."""

    def __init__(self, pages: list[list[dict]]):
        self.pages = pages

    def metrics(self, run_id: str, **_: object) -> MetricsPage:
        records = self.pages.pop(0) if self.pages else []
        return MetricsPage(records=records, next=records[-1]["id"] if records else None)


def train(step: int, record_id: str) -> dict:
    return {"id": record_id, "kind": "train", "step": step}


def test_a_rewind_drops_the_dead_attempts_records_past_its_step_so_curves_never_fold_back():
    first = [
        {"id": "1", "kind": "status", "status": "running"},
        train(5, "2"),
        train(10, "3"),
        {"id": "4", "kind": "eval", "step": 10, "split": "val"},
        train(15, "5"),
        train(20, "6"),  # the dead attempt got this far; its checkpoint was at step 10
    ]
    resumed = [
        {"id": "7", "kind": "status", "status": "queued"},
        {"id": "8", "kind": "status", "status": "running"},
        {"id": "9", "kind": "rewind", "step": 10, "epoch": 1},
        train(15, "10"),
    ]
    feed = MetricsFeed("run")
    api = PagedApi([first, resumed])
    feed.refresh(api)
    assert feed.refresh(api) == 4
    assert [r["step"] for r in feed.of_kind("train")] == [5, 10, 15]
    assert [r["id"] for r in feed.of_kind("train")] == ["2", "3", "10"]
    assert len(feed.of_kind("eval")) == 1 and feed.latest_status == "running"
    assert feed.cursor == "10"
