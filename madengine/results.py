"""Result rows → perf.csv and run/workflow summaries (the last stage of the data flow).

Input: row dicts keyed by perf.csv column names, as executors yield them. Output: perf.csv (only this
module writes it) and plain-dict summaries for the CLI to render or dump as JSON.

perf.csv layout: the 29 upstream madengine columns in upstream order, then madengine's own columns
(``MADENGINE_COLUMNS``), then any other columns (extra ``multiple_results`` metrics, or columns an older
file already had) in first-seen order. Appends take ``<perf.csv>.lock``; a file whose header lacks a
column the new rows need, or that has an older layout (such as upstream's 25-column perf.csv), is
rewritten atomically with the merged header, keeping every existing row under its column name.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._perf import (
    FAILURE,
    MADENGINE_COLUMNS,
    PERF_COLUMNS,
    SKIPPED,
    SUCCESS,
    UPSTREAM_COLUMNS,
)

from madengine.atomic import write_text_atomic
from madengine.errors import ExitCode, InvalidInputError, MadError
from madengine.pathlock import LockTimeout, PathLock

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "FAILURE",
    "MADENGINE_COLUMNS",
    "PERF_COLUMNS",
    "SKIPPED",
    "SUCCESS",
    "UPSTREAM_COLUMNS",
    "PerfCsv",
    "PerfCsvError",
    "RunSummary",
    "format_value",
    "merge_columns",
    "new_run_id",
    "read_rows",
    "summarize",
    "workflow_summary",
]

DEFAULT_LOCK_TIMEOUT = 60.0  # seconds to wait for another process appending to the same perf.csv
_ENCODING = "utf-8"
_READ_ENCODING = "utf-8-sig"  # tolerate a BOM left by spreadsheet tools
_LINE_END = "\n"  # upstream madengine (pandas.to_csv) writes "\n"


#: A cell may be this large when read: an older madengine wrote whole 50 MB log lines into `metric`, and a
#: file that holds one must still be read, and rewritten without losing it (csv's default limit is 128 KiB).
_FIELD_LIMIT = 1 << 30
#: Cells longer than this are cut in what `read_rows` returns (reports, comparisons, resume, shard history).
_CELL_LIMIT = 1024
logger = logging.getLogger(__name__)


def _reader(fh: Any) -> Any:
    """A csv reader that takes the huge cells older files may hold."""
    if csv.field_size_limit() < _FIELD_LIMIT:
        csv.field_size_limit(_FIELD_LIMIT)
    return csv.reader(fh)


class PerfCsvError(MadError):
    """perf.csv cannot be written safely: lock timeout or an existing file that cannot be parsed."""


# ---------------------------------------------------------------------------------------------- values


def format_value(value: Any) -> str:
    """Render one perf.csv cell: None → "", lists/tuples → comma-joined, anything else ``str()``."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    return str(value)


def merge_columns(existing: Sequence[str], new: Iterable[str] = ()) -> list[str]:
    """Canonical columns in canonical order, then ``existing``'s others, then ``new`` extras, first-seen."""
    merged = list(PERF_COLUMNS)
    seen = set(merged)
    for name in (*existing, *new):
        if name not in seen:
            seen.add(name)
            merged.append(name)
    return merged


def _normalise_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [{str(k): format_value(v) for k, v in row.items()} for row in rows]


def _row_keys(rows: Iterable[Mapping[str, str]]) -> list[str]:
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    return list(keys)


def _render(header: Sequence[str], rows: Iterable[Mapping[str, str]], *, with_header: bool) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=_LINE_END)
    if with_header:
        writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(name, "") for name in header])
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- reading


def _read_header(path: Path) -> list[str] | None:
    """The first CSV record of ``path``, or None when the file is missing or holds only whitespace."""
    try:
        fh = open(path, encoding=_READ_ENCODING, newline="")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    with fh:
        header = next(_reader(fh), None)
        if header is None or header:
            return header  # missing (empty file) or a real header row
        if fh.read().strip():
            # A blank first line followed by data: refuse to guess which line is the header.
            raise PerfCsvError(f"{path} starts with a blank line instead of a header row",
                               hint="Remove the blank first line, or move the file aside.")
        return None


def _read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of an existing CSV; short rows are padded, over-long rows are an error."""
    with open(path, encoding=_READ_ENCODING, newline="") as fh:
        reader = _reader(fh)
        header = next(reader, None) or []
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates:
            raise PerfCsvError(f"{path} has duplicate columns: {', '.join(duplicates)}",
                               hint="Rename or remove the duplicate columns; madengine will not merge them.")
        rows: list[dict[str, str]] = []
        for record in reader:
            if not record:
                continue  # blank line
            if len(record) > len(header):
                raise PerfCsvError(
                    f"{path} line {reader.line_num} has {len(record)} fields, "
                    f"but its header has {len(header)}",
                    hint="Fix or remove that line; madengine will not drop data it cannot place in a column.",
                )
            rows.append(dict(zip(header, record + [""] * (len(header) - len(record)), strict=True)))
    return header, rows


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """All rows of a perf.csv as dicts keyed by its header; [] when the file is missing or empty.

    A cell over _CELL_LIMIT characters (written by an older version) is cut, with a warning.
    """
    target = Path(path)
    if _read_header(target) is None:
        return []
    rows = _read_table(target)[1]
    for number, row in enumerate(rows, start=2):
        for name, value in row.items():
            if len(value) > _CELL_LIMIT:
                logger.warning("%s line %d column %s holds %d characters; it is used cut to %d", target, number,
                               name, len(value), _CELL_LIMIT)
                row[name] = value[:_CELL_LIMIT]
    return rows


# ---------------------------------------------------------------------------------------------- writing


class PerfCsv:
    """A perf.csv that several processes may append to at once.

    Every append holds ``<path>.lock`` (a PathLock, removed again when released) for its whole
    read-check-write, so a concurrent rewrite (when new columns appear) can never drop rows another
    process has just appended.
    """

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"PerfCsv({str(self.path)!r})"

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append ``rows``; rewrites the file atomically when its header must grow or be reordered.

        Raises PerfCsvError when the lock is not acquired within ``lock_timeout`` seconds or when the
        existing file cannot be parsed without losing data.
        """
        new_rows = _normalise_rows(rows)
        if not new_rows:
            return
        lock = PathLock(self.lock_path, timeout=self.lock_timeout)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except LockTimeout as exc:
            raise PerfCsvError(
                f"Timed out after {self.lock_timeout:g}s waiting for the lock on {self.path.absolute()} "
                f"(lock file {self.lock_path.absolute()})",
                hint="Another madengine process is writing this perf.csv; wait for it to finish, "
                "or write results to a different --output file.",
            ) from exc
        except OSError as exc:
            raise self._unwritable(exc) from None
        try:
            self._append_locked(new_rows)
        except OSError as exc:
            raise self._unwritable(exc) from None
        finally:
            lock.release()

    def _unwritable(self, exc: OSError) -> PerfCsvError:
        return PerfCsvError(f"Cannot write {self.path.absolute()}: {exc.strerror or exc}",
                            hint="Make the file and its folder writable (check `lsattr` and the mount), "
                                 "or free disk space.")

    def check_writable(self) -> None:
        """Raise InvalidInputError (exit 4) unless perf.csv, its lock file and a temporary file beside it
        (for a rewrite) can be written: found before any model runs, not after the first one."""
        target = self.path.absolute()
        problem = None
        if target.is_dir():
            problem = "it is a directory"
        else:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    with open(target, "r+b"):
                        pass
                if self.lock_path.exists():  # an existing lock file must be writable; a new one is probed below
                    with open(self.lock_path, "r+b"):
                        pass
                # A name of this process's own: two runs sharing one perf.csv probe at the same time.
                probe = target.with_name(f".{target.name}.probe-{os.getpid()}-{secrets.token_hex(4)}")
                write_text_atomic(probe, "")
                os.unlink(probe)
            except OSError as e:
                problem = e.strerror or str(e)
        if problem:
            raise InvalidInputError(f"The results file {target} cannot be written: {problem}",
                                    hint="Pass a writable --output file (-o), or make that file and its "
                                         "folder writable (check `lsattr` and the mount); nothing was run.")

    def read(self) -> list[dict[str, str]]:
        return read_rows(self.path)

    def _append_locked(self, new_rows: list[dict[str, str]]) -> None:
        keys = _row_keys(new_rows)
        header = _read_header(self.path)
        if header is None:
            write_text_atomic(self.path, _render(merge_columns((), keys), new_rows, with_header=True))
            return
        merged = merge_columns(header, keys)
        if merged == header:
            self._append_in_place(header, new_rows)
            return
        _, old_rows = _read_table(self.path)
        write_text_atomic(self.path, _render(merged, [*old_rows, *new_rows], with_header=True))

    def _append_in_place(self, header: list[str], new_rows: list[dict[str, str]]) -> None:
        text = _render(header, new_rows, with_header=False)
        with open(self.path, "r+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) not in (b"\n", b"\r"):
                    text = _LINE_END + text  # the last line lacks its terminator (hand-edited file)
            fh.seek(0, os.SEEK_END)
            fh.write(text.encode(_ENCODING))
            fh.flush()
            os.fsync(fh.fileno())


# ---------------------------------------------------------------------------------------------- summaries


def new_run_id() -> str:
    """A sortable, unique run id such as ``20261128-113501-ab12cd`` (UTC time + 24 random bits)."""
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _duration(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _status(row: Mapping[str, Any]) -> str:
    return format_value(row.get("status")).strip().upper()


def _entry(row: Mapping[str, Any]) -> dict[str, Any]:
    status = _status(row)
    reason = format_value(row.get("reason"))
    if status not in (SUCCESS, FAILURE, SKIPPED) and not reason:
        reason = f"unrecognised status {format_value(row.get('status'))!r}"
    return {
        "model": format_value(row.get("model")),
        "host": format_value(row.get("host")),
        "status": status,
        "performance": format_value(row.get("performance")),
        "metric": format_value(row.get("metric")),
        "reason": reason,
        "duration": _duration(row.get("test_duration")),
    }


@dataclass
class RunSummary:
    """Outcome of one run phase. Any status other than SUCCESS or SKIPPED counts as a failed run."""

    successful_runs: list[dict[str, Any]] = field(default_factory=list)
    failed_runs: list[dict[str, Any]] = field(default_factory=list)
    skipped_runs: list[dict[str, Any]] = field(default_factory=list)
    total_runs: int = 0
    total_execution_time: float = 0.0
    run_id: str = ""

    @property
    def success(self) -> bool:
        return not self.failed_runs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def summarize(rows: Iterable[Mapping[str, Any]], run_id: str, total_time: float) -> RunSummary:
    """Sort rows into successful / failed / skipped runs; unknown or empty statuses are failures."""
    summary = RunSummary(run_id=run_id, total_execution_time=float(total_time))
    for row in rows:
        entry = _entry(row)
        if entry["status"] == SUCCESS:
            summary.successful_runs.append(entry)
        elif entry["status"] == SKIPPED:
            summary.skipped_runs.append(entry)
        else:
            summary.failed_runs.append(entry)
        summary.total_runs += 1
    return summary


def _as_dict(phase: Any) -> dict[str, Any]:
    if phase is None:
        return {}
    if hasattr(phase, "to_dict"):
        return dict(phase.to_dict())
    if dataclasses.is_dataclass(phase) and not isinstance(phase, type):
        return dataclasses.asdict(phase)
    return dict(phase)


def _count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    return len(value)


def _run_failures(run: Mapping[str, Any]) -> int:
    """Failed runs, plus any entry filed as successful whose status is not SUCCESS (never trust a label)."""
    failures = _count(run.get("failed_runs"))
    for entry in run.get("successful_runs") or ():
        if isinstance(entry, Mapping) and _status(entry) != SUCCESS:
            failures += 1
    return failures


def workflow_summary(build_phase: Any, run_phase: Any, **extra: Any) -> dict[str, Any]:
    """Combine a build summary (or None when the build was skipped) and a run summary.

    Phases may be dicts, RunSummary or any object with ``to_dict()``. ``overall_success`` is true only
    when the build phase reports no failures (``failed_builds`` / ``failed`` / ``failed_pushes``: a push
    failure is a build failure, exit 2) and no run failed.
    ``extra`` keys (such as ``run_id``) are added to the result as given.
    """
    build = _as_dict(build_phase) if build_phase is not None else None
    run = _as_dict(run_phase)
    build_failures = 0
    if build is not None:
        build_failures = (_count(build.get("failed_builds")) + _count(build.get("failed"))
                          + _count(build.get("failed_pushes")))
    return {
        **extra,
        "build_phase": build,
        "run_phase": run,
        "overall_success": build_failures == 0 and _run_failures(run) == 0,
    }


class ResultsSink:
    """Where every executor's results go, local and cluster alike: the rows to perf.csv (under its
    lock, with ``relative_change`` filled from a baseline), then the attempt to the run's ledger.

    The row comes first: a row perf.csv did not take is never ledgered as done, so ``--resume`` runs
    that model again. A perf.csv that refuses rows stops the run with a :class:`PerfCsvError` saying how
    to get them back.
    """

    def __init__(self, output: Path | str, ledger: Any, run_id: str,
                 baseline_rows: list[dict[str, str]] | None = None) -> None:
        self.perf = PerfCsv(output)
        self.ledger = ledger
        self.run_id = run_id
        self._baseline = baseline_rows

    def record(self, key: str, host: str, attempt: int, rows: list[dict[str, str]], *, log_path: str = "",
               infra_error: bool = False, final: bool = True) -> None:
        """One finished attempt. ``final`` false (an infrastructure failure that will be retried): only
        the ledger hears of it, perf.csv gets the retry's rows."""
        if final:
            if self._baseline:
                from madengine.compare import apply_baseline

                rows = apply_baseline(rows, self._baseline)
            try:
                self.perf.append(rows)
            except PerfCsvError as e:
                stop = PerfCsvError(f"{e.message}; the run stopped there",
                                    hint=f"{e.hint + ' ' if e.hint else ''}Then `madengine-cli run --resume "
                                         f"{self.run_id}` runs this model and the ones after it again.")
                stop.exit_code = ExitCode.RUN_FAILURE  # the run failed; its input was fine
                raise stop from None
        self.ledger.record(key, host, attempt, rows, log_path=log_path, infra_error=infra_error)
