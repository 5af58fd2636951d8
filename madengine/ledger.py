"""The run ledger `runs/<run_id>/ledger.jsonl`: what a run planned and what each attempt ended as.

The first line (`"type": "run"`) records how to run again: the manifest, options and context
(secrets masked), so `--resume` and `--rerun-failed` need nothing else. Then one line per
(model, host, attempt), appended and fsynced as each ends, so a run killed with SIGKILL loses at most
the attempt that was in flight. Written by the executors through `results`-style appends only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from madengine.errors import InvalidInputError, RunError
from madengine.pathlock import PathLock

LEDGER_NAME = "ledger.jsonl"
DONE_STATUSES = ("SUCCESS", "SKIPPED")
#: A run ID names a folder under runs/: no path separators, no leading dot (`--resume ../../x`).
RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: What a run record's `args` must hold for --resume / --rerun-failed to run it again.
RUN_ARGS = ("manifest_file", "mad_dir", "output", "timeout", "keep_alive", "keep_model_dir", "skip_model_run",
            "disable_skip_gpu_arch", "sys_env_details", "data_config", "tools_config")


def check_run_id(run_id: str, option: str = "--resume") -> str:
    """`run_id` if it can be one (as `new_run_id` makes them); else InvalidInputError (exit 4)."""
    if not RUN_ID_RE.fullmatch(run_id or "") or ".." in run_id:
        raise InvalidInputError(f"{option} {run_id!r} is not a run ID",
                                hint="pass the name of a folder in runs/ (letters, digits, '_', '.', '-'), "
                                     "such as the run_id of the run's summary",
                                example="madengine-cli run --resume 20261128-113501-ab12cd")
    return run_id


@dataclass
class LedgerState:
    """A ledger read back: the run record and every attempt line, in order."""

    run: dict[str, Any]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    path: str = ""

    def args(self) -> dict[str, Any]:
        """The run record's `args` (how the run was started); InvalidInputError when any is missing."""
        args = self.run.get("args")
        missing = [key for key in RUN_ARGS if key not in args] if isinstance(args, dict) else ["args"]
        if missing:
            where = "args" if missing == ["args"] else "args." + ", args.".join(missing)
            raise InvalidInputError(f"{self.path or LEDGER_NAME}: the run record has no {where}",
                                    hint="this ledger was not written by `madengine-cli run` (or was edited); "
                                         "start the run again instead of resuming it")
        return args

    def final(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The last attempt of each (model key, host)."""
        last: dict[tuple[str, str], dict[str, Any]] = {}
        for entry in self.attempts:
            last[(entry["key"], entry.get("host", ""))] = entry
        return last

    def todo(self, *, failed_only: bool) -> set[tuple[str, str]]:
        """(key, host) cells to run again: without a SUCCESS/SKIPPED end, or (failed_only) FAILURE ones."""
        final = self.final()
        planned = {(cell[0], cell[1]) for cell in self.run.get("cells", [])}
        if failed_only:
            return {cell for cell, entry in final.items() if entry.get("status") == "FAILURE"}
        return {cell for cell in planned if final.get(cell, {}).get("status") not in DONE_STATUSES}

    def next_attempt(self, key: str, host: str) -> int:
        return 1 + sum(1 for e in self.attempts if e["key"] == key and e.get("host", "") == host)


class Ledger:
    def __init__(self, runs_dir: Path, run_id: str) -> None:
        self.dir = Path(runs_dir) / run_id
        self.path = self.dir / LEDGER_NAME
        self._lock = PathLock(str(self.path) + ".lock", timeout=30)

    def _append(self, record: dict[str, Any], *, first: bool = False) -> None:
        """Append `record` as one line (with `first`: only to a ledger that has no line yet)."""
        line = json.dumps(record, sort_keys=True) + "\n"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with self._lock, open(self.path, "a+b") as handle:
                if _drop_torn_tail(handle) and first:
                    return
                handle.write(line.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as e:  # a full disk, a read-only runs/ folder
            raise RunError(f"Cannot write the run ledger {self.path.absolute()}: {e.strerror or e}",
                           hint="free disk space or make runs/ writable; the rows already in perf.csv are "
                                "kept, and `--resume` does not run those models again") from None

    def start(self, run: dict[str, Any]) -> None:
        """Record the run itself (once; a resumed run keeps its first record)."""
        self._append({"type": "run", **run}, first=True)

    def record(self, key: str, host: str, attempt: int, rows: Iterable[dict[str, str]], *,
               log_path: str = "", infra_error: bool = False) -> None:
        rows = list(rows)
        statuses = {row.get("status") for row in rows}
        status = "FAILURE" if "FAILURE" in statuses or not rows else (
            "SUCCESS" if "SUCCESS" in statuses else "SKIPPED")
        reason = next((row.get("reason") for row in rows if row.get("reason")), "")
        self._append({"type": "attempt", "key": key, "host": host, "attempt": attempt, "status": status,
                      "reason": reason, "infra_error": infra_error, "log_path": log_path,
                      "started_at": rows[0].get("started_at", "") if rows else "",
                      "duration": rows[0].get("test_duration", "") if rows else "",
                      "models": [row.get("model", "") for row in rows]})

    def load(self) -> LedgerState:
        check_run_id(self.dir.name)
        if not self.path.is_file():
            raise InvalidInputError(f"No ledger for run {self.dir.name}: {self.path} does not exist",
                                    hint="pass a run id from the runs/ folder of the directory you ran in")
        run: dict[str, Any] | None = None
        attempts = []
        with open(self.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    if handle.read().strip():  # only a torn last line (killed mid-write) is tolerated
                        raise InvalidInputError(f"{self.path} line {number} is not JSON") from None
                    break
                if record.get("type") == "run":
                    run = run or record
                else:
                    attempts.append(record)
        if run is None:
            raise InvalidInputError(f"{self.path} has no run record")
        return LedgerState(run, attempts, str(self.path))


def _drop_torn_tail(handle: BinaryIO) -> int:
    """Cut a last line without its newline (a write killed mid-way), so that an append after it is a
    line of its own and not glued to half a record. Returns the size left."""
    size = handle.seek(0, os.SEEK_END)
    start = size
    while start > 0:
        start = max(0, start - 65536)
        handle.seek(start)
        tail = handle.read(size - start)
        if tail.endswith(b"\n"):
            return size
        newline = tail.rfind(b"\n")
        if newline >= 0 or start == 0:
            size = start + newline + 1
            handle.truncate(size)
            break
    handle.seek(0, os.SEEK_END)
    return size


def done_in_perf(rows: Iterable[dict[str, str]], run_id: str, names: dict[str, str]) -> set[tuple[str, str]]:
    """(key, host) cells that perf.csv already holds a SUCCESS/SKIPPED row of, for run `run_id`.

    A run killed between appending a row and writing its ledger line must not run that model again.
    `names` maps manifest keys to model names (multiple_results rows are named `<model>_<csv model>`).
    """
    done = set()
    for row in rows:
        if row.get("run_id") != run_id or row.get("status") not in DONE_STATUSES:
            continue
        model = row.get("model", "")
        # The longest name that fits: a row of `bert_large` is not one of `bert`'s multiple results.
        fits = [(len(name), key) for key, name in names.items() if model == name or model.startswith(name + "_")]
        if fits:
            done.add((max(fits)[1], row.get("host", "")))
    return done
