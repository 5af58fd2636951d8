"""The run ledger: append-only attempts, what is left to do, tolerance of a torn last line."""

from __future__ import annotations

import json

import pytest

from madengine.errors import InvalidInputError
from madengine.ledger import Ledger


def row(model: str, status: str, reason: str = "") -> dict[str, str]:
    return {"model": model, "status": status, "reason": reason, "started_at": "t", "test_duration": "1.0"}


def test_records_every_attempt_and_computes_todo(tmp_path):
    ledger = Ledger(tmp_path, "r1")
    ledger.start({"cells": [["a", "localhost"], ["b", "localhost"], ["c", "localhost"], ["d", "localhost"]]})
    ledger.start({"cells": []})  # a resumed run keeps the first record
    ledger.record("a", "localhost", 1, [row("a", "SUCCESS")])
    ledger.record("b", "localhost", 1, [row("b", "FAILURE", "pull failed: x")], infra_error=True)
    ledger.record("b", "localhost", 2, [row("b", "FAILURE", "non-zero exit 1")])
    ledger.record("c", "localhost", 1, [row("c", "SKIPPED", "skip_gpu_arch lists gfx90a")])
    state = ledger.load()
    assert len(state.run["cells"]) == 4
    assert [e["attempt"] for e in state.attempts] == [1, 1, 2, 1]
    assert state.todo(failed_only=False) == {("b", "localhost"), ("d", "localhost")}
    assert state.todo(failed_only=True) == {("b", "localhost")}
    assert state.next_attempt("b", "localhost") == 3
    assert state.final()[("b", "localhost")]["reason"] == "non-zero exit 1"


def test_torn_last_line_is_ignored_but_corruption_is_an_error(tmp_path):
    ledger = Ledger(tmp_path, "r2")
    ledger.start({"cells": [["a", "h"]]})
    ledger.record("a", "h", 1, [row("a", "SUCCESS")])
    with open(ledger.path, "a", encoding="utf-8") as handle:
        handle.write('{"type": "attempt", "key": "b"')  # SIGKILL mid-write
    assert len(ledger.load().attempts) == 1
    lines = ledger.path.read_text().splitlines()
    ledger.path.write_text("\n".join([lines[0], "garbage", lines[1]]) + "\n")
    with pytest.raises(InvalidInputError, match="line 2"):
        ledger.load()


def test_missing_ledger_names_the_run(tmp_path):
    with pytest.raises(InvalidInputError, match="nope"):
        Ledger(tmp_path, "nope").load()


def test_lines_are_json_with_status_of_multiple_rows(tmp_path):
    ledger = Ledger(tmp_path, "r3")
    ledger.start({"cells": [["m", "h"]]})
    ledger.record("m", "h", 1, [row("m_a", "SUCCESS"), row("m_b", "FAILURE", "no performance value")])
    entry = json.loads(ledger.path.read_text().splitlines()[-1])
    assert entry["status"] == "FAILURE" and entry["models"] == ["m_a", "m_b"]
