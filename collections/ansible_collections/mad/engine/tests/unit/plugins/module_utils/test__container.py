"""_container: deadlines, line splitting, and run_container's control flow against a scripted fake engine.

Real-engine behaviour (logs, kill on deadline, removal) is covered in tests/integration/test_engine_real.py.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ansible_collections.mad.engine.plugins.module_utils import _container
from ansible_collections.mad.engine.plugins.module_utils._container import (
    ContainerOutcome,
    Deadline,
    LineSplitter,
    run_container,
)
from ansible_collections.mad.engine.plugins.module_utils._engine import EngineError, WaitTimeout


def test_deadline_without_limit() -> None:
    for seconds in (None, 0, -1):
        d = Deadline(seconds)
        assert d.remaining() is None and not d.expired()


def test_deadline_counts_down_on_monotonic_clock() -> None:
    d = Deadline(0.2)
    first = d.remaining()
    assert first is not None and 0 < first <= 0.2
    time.sleep(0.25)
    assert d.remaining() == 0.0 and d.expired()


def test_line_splitter() -> None:
    s = LineSplitter()
    assert s.feed(b"perf") == []
    assert s.feed(b"ormance: 12 x\r\nnext\nhalf") == ["performance: 12 x", "next"]
    assert s.feed(b"\xc3") == []  # a UTF-8 character split across chunks
    assert s.feed(b"\xa9\n\xff\n") == ["half\u00e9", "\ufffd"]
    assert s.flush() == []
    assert s.feed(b"tail") == [] and s.flush() == ["tail"]


def test_outcome_defaults() -> None:
    assert ContainerOutcome() == ContainerOutcome(None, False, 0.0, None, None, False)


# --------------------------------------------------------------------------- fake engine


class FakeStream:
    def __init__(self, frames: list[tuple[str, bytes]], hang: bool, killed: threading.Event) -> None:
        self._frames = list(frames)
        self._hang = hang
        self._killed = killed
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        for item in self._frames:
            if self._closed.is_set():
                return
            yield item
        # Like a follow stream: open while the container runs.
        while self._hang and not self._closed.is_set() and not self._killed.is_set():
            time.sleep(0.01)

    def close(self) -> None:
        self._closed.set()


class FakeEngine:
    """Scripted engine: `exit_after` seconds then `exit_code`, or never (None) unless killed."""

    def __init__(self, frames: list[tuple[str, bytes]] | None = None, exit_code: int | None = 0) -> None:
        self.frames = frames or []
        self.full_log: list[tuple[str, bytes]] | None = None  # what a non-follow read returns
        self.exit_code = exit_code
        self.exit_after = 0.0
        self.calls: list[tuple[str, Any]] = []
        self.fail: dict[str, EngineError] = {}
        self._started = 0.0
        self._killed = threading.Event()

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail:
            raise self.fail[name]

    def container_create(self, body: dict[str, Any], name: str | None) -> str:
        self.calls.append(("create", name))
        self._maybe_fail("create")
        return "c0ffee" * 8

    def container_start(self, cid: str) -> None:
        self.calls.append(("start", cid))
        self._maybe_fail("start")
        self._started = time.monotonic()

    def container_logs(self, cid: str, follow: bool = True, tty: bool | None = None) -> FakeStream:
        self.calls.append(("logs", follow))
        self._maybe_fail("logs")
        if not follow:
            log = self.full_log if self.full_log is not None else self.frames
            return FakeStream(log, hang=False, killed=self._killed)
        return FakeStream(self.frames, hang=self.exit_code is None, killed=self._killed)

    def container_wait(self, cid: str, timeout: float | None = None) -> int:
        self._maybe_fail("wait")
        if self.exit_code is None:
            if self._killed.wait(timeout):
                return 137
            raise WaitTimeout("still running")
        left = self._started + self.exit_after - time.monotonic()
        if timeout is not None and left > timeout:
            time.sleep(timeout)
            raise WaitTimeout("still running")
        time.sleep(max(0.0, left))
        return self.exit_code

    def container_kill(self, cid: str) -> None:
        self.calls.append(("kill", cid))
        self._killed.set()

    def container_remove(self, cid: str, force: bool = True) -> None:
        self.calls.append(("remove", cid))
        self._maybe_fail("remove")

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


BODY = {"Image": "img", "Cmd": ["true"], "HostConfig": {"NetworkMode": "host"}}


def test_success_streams_log_and_lines_then_removes() -> None:
    engine = FakeEngine([("stdout", b"a\nperformance: 1"), ("stderr", b"err\n"), ("stdout", b"0 x\ntail")])
    log = io.BytesIO()
    lines: list[str] = []
    outcome = run_container(engine, BODY, "n1", log, timeout=10, on_line=lines.append)  # type: ignore[arg-type]
    assert outcome.exit_code == 0 and not outcome.timed_out and outcome.error is None and not outcome.kept
    assert outcome.container_id == "c0ffee" * 8
    # Whole lines per stream: a stderr frame never cuts a stdout line (here a performance line) in the log.
    assert log.getvalue() == b"a\nerr\nperformance: 10 x\ntail\n"
    assert lines == ["a", "err", "performance: 10 x", "tail"]  # per-stream lines, the last one unterminated
    assert engine.names()[-1] == "remove"


def test_missed_tail_is_caught_up_once() -> None:
    engine = FakeEngine([("stdout", b"one\n")], exit_code=3)
    engine.full_log = [("stdout", b"one\n"), ("stderr", b"two\n"), ("stdout", b"three")]
    log = io.BytesIO()
    lines: list[str] = []
    outcome = run_container(engine, BODY, "n1", log, timeout=None, on_line=lines.append)  # type: ignore[arg-type]
    assert outcome.exit_code == 3
    assert log.getvalue() == b"one\ntwo\nthree\n"
    assert lines == ["one", "two", "three"]


def test_create_failure_is_an_outcome_not_an_exception() -> None:
    engine = FakeEngine()
    engine.fail["create"] = EngineError("image not found", "No such image: img", 404)
    outcome = run_container(engine, BODY, "n1", None, timeout=5)  # type: ignore[arg-type]
    assert outcome.exit_code is None and outcome.container_id is None
    assert outcome.error == "image not found: No such image: img"
    assert engine.names() == ["create"]


def test_start_failure_removes_the_container() -> None:
    engine = FakeEngine()
    engine.fail["start"] = EngineError("container start failed", "exec: nope: not found", 400)
    outcome = run_container(engine, BODY, "n1", None, timeout=5, keep_alive=True)  # type: ignore[arg-type]
    assert outcome.error == "container start failed: exec: nope: not found"
    assert outcome.exit_code is None and not outcome.kept
    assert engine.names() == ["create", "start", "remove"]


def test_timeout_kills_and_removes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_container, "WAIT_SLICE", 0.1)
    engine = FakeEngine([("stdout", b"started\n")], exit_code=None)
    t0 = time.monotonic()
    outcome = run_container(engine, BODY, "n1", io.BytesIO(), timeout=0.5)  # type: ignore[arg-type]
    assert outcome.timed_out and outcome.exit_code is None and outcome.error is None
    assert 0.3 < outcome.duration < 1.5 and time.monotonic() - t0 < 3
    names = engine.names()
    assert "kill" in names and names[-1] == "remove"


def test_keep_alive_leaves_the_container(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_container, "WAIT_SLICE", 0.1)
    engine = FakeEngine([("stdout", b"serving\n")], exit_code=None)
    outcome = run_container(engine, BODY, "n1", None, timeout=0.3, keep_alive=True)  # type: ignore[arg-type]
    assert outcome.timed_out and outcome.kept
    assert "kill" not in engine.names() and "remove" not in engine.names()


def test_interrupt_from_on_line_removes_then_reraises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_container, "WAIT_SLICE", 0.1)
    engine = FakeEngine([("stdout", b"hello\n")], exit_code=None)

    def on_line(line: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_container(engine, BODY, "n1", None, timeout=None, on_line=on_line)  # type: ignore[arg-type]
    assert engine.names()[-1] == "remove"


def test_log_write_error_is_reported() -> None:
    engine = FakeEngine([("stdout", b"x\n")])
    log = io.BytesIO()
    log.close()
    outcome = run_container(engine, BODY, "n1", log, timeout=5)  # type: ignore[arg-type]
    assert outcome.exit_code == 0
    assert outcome.error is not None and outcome.error.startswith("writing the container log failed")
    assert engine.names()[-1] == "remove"


def test_remove_failure_is_reported_without_raising() -> None:
    engine = FakeEngine()
    engine.fail["remove"] = EngineError("container remove failed", "driver busy", 500)
    outcome = run_container(engine, BODY, "n1", None, timeout=5)  # type: ignore[arg-type]
    assert outcome.exit_code == 0
    assert outcome.error == "container remove failed: driver busy"


def test_secret_env_values_are_masked_in_the_log_and_lines() -> None:
    # The secret arrives in two stdout frames with a stderr frame between them.
    engine = FakeEngine([("stdout", b"pw: hunter2"), ("stderr", b"warn\n"), ("stdout", b"-s3cr3t\nperformance: 5 x\n")])
    body = dict(BODY, Env=["DB_PASSWORD=hunter2-s3cr3t", "BATCH=8"])
    log = io.BytesIO()
    lines: list[str] = []
    outcome = run_container(engine, body, "n1", log, timeout=10, on_line=lines.append)  # type: ignore[arg-type]
    assert outcome.exit_code == 0
    assert log.getvalue() == b"warn\npw: ******\nperformance: 5 x\n"
    assert lines == ["warn", "pw: ******", "performance: 5 x"]


def test_unterminated_last_lines_of_both_streams_stay_apart() -> None:
    engine = FakeEngine([("stdout", b"performance: 12"), ("stderr", b"bye")])
    log = io.BytesIO()
    outcome = run_container(engine, BODY, "n1", log, timeout=10)  # type: ignore[arg-type]
    assert outcome.exit_code == 0
    assert log.getvalue() == b"performance: 12\nbye\n"  # not "performance: 12bye"
