"""PathLock: one holder at a time across processes and threads, and no lock file left behind."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import filelock
import pytest

from madengine.ledger import Ledger
from madengine.pathlock import LockTimeout, PathLock


def _count(path: str, counter: str, rounds: int) -> None:
    for _ in range(rounds):
        with PathLock(path):
            value = int(Path(counter).read_text())
            Path(counter).write_text(str(value + 1))  # a lost update shows as a wrong total


def test_processes_and_threads_never_overlap_and_no_lock_file_stays(tmp_path: Path) -> None:
    lock, counter = str(tmp_path / "f.lock"), tmp_path / "counter"
    counter.write_text("0")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_count, args=(lock, str(counter), 150)) for _ in range(4)]
    threads = [threading.Thread(target=_count, args=(lock, str(counter), 150)) for _ in range(2)]
    for worker in (*procs, *threads):
        worker.start()
    for worker in (*procs, *threads):
        worker.join(120)
    assert all(proc.exitcode == 0 for proc in procs)
    assert counter.read_text() == str(6 * 150)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter"]


def test_timeout_while_another_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "f.lock"
    with filelock.FileLock(str(path)), pytest.raises(LockTimeout):  # an older madengine's lock counts too
        PathLock(path, timeout=0.2).acquire()
    with PathLock(path, timeout=0.2):
        assert path.exists()
    assert not path.exists()


def test_a_run_leaves_no_ledger_lock(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "runs", "20260101-000000-abcdef")
    ledger.start({"args": {}, "cells": []})
    ledger.record("k", "localhost", 1, [{"status": "SUCCESS", "model": "m"}])
    assert sorted(p.name for p in ledger.dir.iterdir()) == ["ledger.jsonl"]


def test_a_ledger_that_cannot_be_written_is_a_clear_run_error(tmp_path: Path) -> None:
    from madengine.errors import ExitCode, MadError

    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "20260101-000000-abcdef").write_text("a file where the run folder goes")
    with pytest.raises(MadError) as err:
        Ledger(runs, "20260101-000000-abcdef").start({"args": {}, "cells": []})
    assert err.value.exit_code == ExitCode.RUN_FAILURE
    assert "Cannot write the run ledger" in err.value.message and "20260101-000000-abcdef" in err.value.message
