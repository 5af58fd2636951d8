"""How `run --inventory` turns ansible-runner events into the live display's states and rows (pure logic;
tests/cluster/ runs the real thing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from madengine.execute.ansible import _Collector
from madengine.ledger import Ledger
from madengine.results import ResultsSink

PLAN = {"node2": ["ci-a", "ci-b"]}
NAMES = {"ci-a": "a", "ci-b": "b"}


class Rows(list):
    """The perf.csv side of a ResultsSink, in memory; the ledger side is the real one."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self.sink = ResultsSink(Path("unused.csv"), ledger, "r1")
        self.sink.perf.append = self.extend  # type: ignore[method-assign]


def collector(tmp_path: Path) -> tuple[_Collector, list[tuple[str, str]], list[dict[str, str]]]:
    shown: list[tuple[str, str]] = []
    ledger = Ledger(tmp_path, "r1")
    ledger.start({"cells": []})
    rows = Rows(ledger)
    events = _Collector(PLAN, NAMES, rows.sink, lambda state, cell, data: shown.append((state, cell)), "r1",
                        ledger, final=True)
    return events, shown, rows


def event(kind: str, action: str, res: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"event": kind, "event_data": {"host": "node2", "task_action": action, "res": res or {}}}


def facts(asked: int, present: int) -> dict[str, Any]:
    images = [{"name": f"img{i}"} for i in range(asked)]
    return {"images_present": [i["name"] for i in images[:present]],
            "invocation": {"module_args": {"images": images}}}


def test_pulling_is_shown_only_when_the_host_lacks_an_image(tmp_path: Path) -> None:
    events, shown, _ = collector(tmp_path)
    events.on_event(event("runner_on_ok", "mad.engine.host_facts", facts(asked=2, present=2)))
    events.on_event(event("runner_on_start", "mad.engine.image"))  # queued even for an empty loop
    assert shown == []  # warm host: nothing to pull
    events.on_event(event("runner_on_ok", "mad.engine.host_facts", facts(asked=2, present=1)))
    assert shown == [("pull", "node2 · a"), ("pull", "node2 · b")]


def test_rows_arrive_per_model_and_the_next_one_runs(tmp_path: Path) -> None:
    events, shown, rows = collector(tmp_path)
    events.on_event(event("runner_on_start", "mad.engine.run_model"))
    row = {"model": "a", "status": "SUCCESS", "host": "node2", "run_id": "r1"}
    events.on_event(event("runner_item_on_ok", "mad.engine.run_model", {"model": "a", "rows": [row]}))
    assert rows == [row]
    assert shown == [("running", "node2 · a"), ("done", "node2 · a"), ("running", "node2 · b")]
    events.on_event(event("runner_on_unreachable", ""))
    assert [(r["model"], r["status"], r["reason"]) for r in rows[1:]] == [("b", "FAILURE", "host unreachable")]
