"""The cluster event collector (issue 16 items 4 and 12): a row is written before its ledger line, and a
host failure names what failed instead of Ansible's `One or more items failed`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from madengine.execute.ansible import _Collector
from madengine.ledger import Ledger
from madengine.results import PerfCsvError, ResultsSink

PLAN = {"node2": ["ci-a", "ci-b"]}
NAMES = {"ci-a": "a", "ci-b": "b"}


def event(kind: str, action: str, res: dict[str, Any]) -> dict[str, Any]:
    return {"event": kind, "event_data": {"host": "node2", "task_action": action, "res": res}}


def sink(ledger: Ledger, append) -> ResultsSink:
    """A real ResultsSink whose perf.csv side is ``append``."""
    results = ResultsSink(Path("unused.csv"), ledger, "r1")
    results.perf.append = append  # type: ignore[method-assign]
    return results


def attempts(ledger: Ledger) -> list[str]:
    lines = [json.loads(line) for line in ledger.path.read_text().splitlines()]
    return [line["key"] for line in lines if line["type"] == "attempt"]


def test_a_row_perf_csv_refuses_is_not_ledgered(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, "r1")
    ledger.start({"cells": []})

    def refuse(rows: list[dict[str, str]]) -> None:
        raise PerfCsvError("Cannot write perf.csv: Read-only file system")

    events = _Collector(PLAN, NAMES, sink(ledger, refuse), lambda *_: None, "r1", ledger, final=True)
    row = {"model": "a", "status": "SUCCESS", "host": "node2", "run_id": "r1"}
    with pytest.raises(PerfCsvError):
        events.on_event(event("runner_item_on_ok", "mad.engine.run_model", {"model": "a", "rows": [row]}))
    assert attempts(ledger) == []  # --resume runs it again


def test_a_failed_loop_names_the_item_that_failed(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, "r1")
    ledger.start({"cells": []})
    rows: list[dict[str, str]] = []
    events = _Collector(PLAN, NAMES, sink(ledger, rows.extend), lambda *_: None, "r1", ledger, final=True)
    why = "[Errno 13] Permission denied: '/srv/mad-work/results/r1'"
    events.on_event(event("runner_on_failed", "mad.engine.run_model", {
        "msg": "One or more items failed", "changed": False,
        "results": [{"failed": True, "msg": why, "item": {"name": "a"}}, {"failed": False}]}))
    assert {row["reason"] for row in rows} == {f"host failed: {why}"}
