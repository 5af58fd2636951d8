# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Turn model output into perf rows: `performance:` lines and multiple_results CSVs.

Used on target hosts (stdlib only) and by the local executor, so both produce identical rows.
"""

from __future__ import annotations

import csv
import math
import os
import re
from typing import Any

# The 29 columns of ROCm madengine's perf.csv, in its order.
UPSTREAM_COLUMNS = (
    "model", "n_gpus", "nnodes", "gpus_per_node", "training_precision", "pipeline", "args", "tags",
    "docker_file", "base_docker", "docker_sha", "docker_image", "git_commit", "machine_name",
    "deployment_type", "launcher", "gpu_architecture", "performance", "metric", "relative_change",
    "status", "build_duration", "test_duration", "dataname", "data_provider_type", "data_size",
    "data_download_duration", "build_number", "additional_docker_run_options",
)
# Our columns, after upstream's; extra multiple_results columns come after these.
MADENGINE_COLUMNS = ("host", "run_id", "image_digest", "reason", "started_at")
PERF_COLUMNS = UPSTREAM_COLUMNS + MADENGINE_COLUMNS

SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
SKIPPED = "SKIPPED"

# A number as models print it: sign, thousands commas (1,234,567.8), decimals, exponent (1.5e3, -2E-4).
_NUMBER = r"[+-]?(?:\d{1,3}(?:,\d{3})+(?:\.\d*)?|\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
# "performance: <number>[/s][,] [<metric>]". The number must end at a space, a comma not followed by a
# digit, or the line end ("performance: 12abc" and "performance: 12,34" are garbage). Upstream's sed
# regex is case-sensitive; so is this one.
_PERF_RE = re.compile(
    r"performance:\s*(?P<number>" + _NUMBER + r")(?:/s)?(?=\s|,(?!\d)|$)"
    r"(?:\s*,?\s*(?P<metric>[A-Za-z_%][^\s,]*))?"
)
# Columns a multiple_results CSV must have.
MULTIPLE_RESULTS_COLUMNS = ("model", "performance", "metric")
#: The longest metric name a row takes; a longer one makes that model's row a FAILURE (one runaway line
#: must not become a 50 MB perf.csv cell that no CSV reader takes).
MAX_METRIC_LEN = 256
#: Of a line holding ``performance:``, at most this many bytes from there are parsed; the rest of a
#: longer line is dropped (and a value or metric running into the cut is a FAILURE).
SCAN_LINE_BYTES = 64 * 1024
_TOKEN = b"performance:"
_BREAK = re.compile(rb"[\r\n]")


def parse_number(text: str) -> float | None:
    """The value of one number as written in a log or CSV (``1,234.5``, ``-2E-4``), or None.

    Non-finite values (``1e400``) count as no value.
    """
    text = (text or "").strip()
    if not _NUMBER_RE.fullmatch(text):
        return None
    value = float(text.replace(",", ""))
    return value if math.isfinite(value) else None


def format_number(value: float) -> str:
    """The text a row carries for ``value``: ``14164``, ``1234.5``, ``-0.0002``; ``float(text) == value``."""
    if value == int(value) and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))


def parse_performance(text: str) -> tuple[float | None, str | None]:
    """``(value, metric)`` of the LAST ``performance: <number> <metric>`` line of ``text``.

    ``(None, None)`` when no line matches; the metric is ``""`` when the line names none.
    ``14164/s, samples_per_second`` gives ``(14164.0, "samples_per_second")``.
    """
    for line in reversed((text or "").splitlines()):
        match = _PERF_RE.search(line)
        if match is None:
            continue
        value = parse_number(match.group("number"))
        if value is None:
            continue
        return value, match.group("metric") or ""
    return None, None


class PerfScanner:
    """The last ``performance:`` line of a model's output, found while the output streams by.

    Same rule as :func:`parse_performance` on the whole text, in linear time and bounded memory however
    the output looks (a 50 MB line, 100 MB of ``\\r`` progress): only the line holding the token is
    kept, from the token on and at most SCAN_LINE_BYTES of it. Feed it bytes (any split), then read
    :meth:`result`.
    """

    def __init__(self) -> None:
        self._head = bytearray()  # the current line from its first token on, at most SCAN_LINE_BYTES
        self._in_token_line = False
        self._carry = b""  # the current line's last bytes without a token: a token split over two reads
        self._cut = False  # the current token line ran past SCAN_LINE_BYTES
        self._result: tuple[float | None, str | None, str] = (None, None, "")
        #: A ``performance:`` token was seen (with or without a number after it).
        self.saw_performance_line = False

    def feed(self, data: bytes) -> None:
        buf = self._carry + data if self._carry else data
        self._carry = b""
        pos, size = 0, len(buf)
        while pos < size:
            if not self._in_token_line:
                found = buf.find(_TOKEN, pos)
                if found < 0:
                    last_break = max(buf.rfind(b"\n", pos), buf.rfind(b"\r", pos))
                    self._carry = buf[max(last_break + 1, size - len(_TOKEN) + 1, pos):]
                    return
                self._in_token_line, self._cut, pos = True, False, found
                self.saw_performance_line = True
                self._head.clear()
            brk = _BREAK.search(buf, pos)
            end = size if brk is None else brk.start()
            room = SCAN_LINE_BYTES - len(self._head)
            if room > 0:
                self._head += buf[pos:min(end, pos + room)]
            if end - pos > room:
                self._cut = True
            if brk is None:
                return
            self._end_line()
            pos = end + 1

    def _end_line(self) -> None:
        self._in_token_line = False
        text = self._head.decode("utf-8", "replace")
        self._head.clear()
        lines = text.splitlines()
        for index in range(len(lines) - 1, -1, -1):
            line = lines[index]
            match = _PERF_RE.search(line)
            if match is None:
                continue
            if self._cut and index == len(lines) - 1 and match.end() >= len(line):
                # The value or metric runs into the cut: what it would have been is unknown.
                self._result = (None, None, f"performance line longer than {SCAN_LINE_BYTES // 1024} KiB")
                return
            value = parse_number(match.group("number"))
            if value is None:
                continue
            metric = match.group("metric") or ""
            if len(metric) > MAX_METRIC_LEN:
                self._result = (None, None, f"metric name of {len(metric)} characters (the limit is "
                                            f"{MAX_METRIC_LEN})")
            else:
                self._result = (value, metric, "")
            return

    def result(self) -> tuple[float | None, str | None, str]:
        """``(value, metric, problem)`` of the last performance line (ending an unterminated last line):
        ``(None, None, "")`` when there is none; ``problem`` says why the last one cannot be a row."""
        if self._in_token_line:
            self._end_line()
        self._carry = b""
        return self._result


def parse_multiple_results(text: str, source: str = "multiple_results file") -> list[dict[str, str]]:
    """Rows of a multiple_results CSV given as text; ``source`` names it in errors.

    Header names and values are stripped; a column ``models`` (MAD's README spelling) is read as
    ``model``.
    Raises ValueError if a required column is missing.
    """
    try:
        records = list(csv.reader((text or "").lstrip("\ufeff").splitlines()))
    except csv.Error as exc:  # such as a field over csv.field_size_limit()
        raise ValueError(f"{source} cannot be read as CSV: {exc}") from None
    header = [name.strip() for name in records[0]] if records else []
    if "model" not in header and "models" in header:  # MAD's README spells the column "models"
        header[header.index("models")] = "model"
    missing = [col for col in MULTIPLE_RESULTS_COLUMNS if col not in header]
    if missing:
        raise ValueError(
            f"{source} lacks required column(s) {', '.join(missing)} "
            f"(has: {', '.join(h for h in header if h) or 'no header'}); "
            f"a multiple_results CSV needs the columns {', '.join(MULTIPLE_RESULTS_COLUMNS)}"
        )
    rows = []
    for record in records[1:]:
        if not any(cell.strip() for cell in record):  # blank line
            continue
        row: dict[str, str] = {}
        for index, name in enumerate(header):
            if name and name not in row:
                row[name] = record[index].strip() if index < len(record) else ""
        rows.append(row)
    return rows


def read_multiple_results(csv_path: str, root: str | None = None) -> list[dict[str, str]]:
    """Rows of the multiple_results CSV at ``csv_path`` (see :func:`parse_multiple_results`).

    With ``root`` (the run directory the model wrote it in), the file is read only if it is a regular
    file below ``root`` reached without a symlink: a model cannot make the host read another file.
    Raises OSError if the file cannot be read, ValueError if a required column is missing.
    """
    if root is not None:
        # Imported here: this file is also shipped alone (the k8s result step), which reads no run dir.
        from ansible_collections.mad.engine.plugins.module_utils._paths import read_beneath

        rel = os.path.relpath(csv_path, root)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            raise OSError(f"{csv_path} is outside the run directory")
        text = read_beneath(root, rel).decode("utf-8", "replace")
        return parse_multiple_results(text, f"multiple_results file {csv_path}")
    with open(csv_path, encoding="utf-8", errors="replace", newline="") as handle:
        return parse_multiple_results(handle.read(), f"multiple_results file {csv_path}")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format_number(round(value, 3)) if math.isfinite(value) else ""
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(item) for item in value)
    return str(value)


def make_row(model: dict, *, status: str, performance: float | str | None = None, metric: str | None = None,
             reason: str = "", test_duration: float | str | None = None, host: str = "", run_id: str = "",
             image: str = "", image_digest: str = "", base_docker: str = "", docker_sha: str = "",
             build_duration: float | str | None = "", gpu_architecture: str = "", machine_name: str = "",
             started_at: str = "", data: dict | None = None, extra: dict | None = None,
             docker_file: str | None = None, args: str | None = None, git_commit: str = "",
             deployment_type: str = "local", build_number: str | None = None) -> dict[str, str]:
    """One perf row: every key of PERF_COLUMNS in order (``""`` when unknown), then ``extra`` keys.

    ``performance`` may be a float (formatted with :func:`format_number`) or its text. ``docker_file``
    defaults to the model's ``dockerfile``, ``args`` to the model's ``args`` (pass the args actually
    used), ``build_number`` to the BUILD_NUMBER environment variable. ``data`` holds the data columns
    (``dataname``, ``data_provider_type``, ``data_size``, ``data_download_duration``). ``extra`` keys
    that name a PERF_COLUMNS column are dropped: a model's CSV never overrides status or identity.
    Raises ValueError for an unknown status, or SUCCESS without a performance value.
    """
    if status not in (SUCCESS, FAILURE, SKIPPED):
        raise ValueError(f"status must be {SUCCESS}, {FAILURE} or {SKIPPED}, not {status!r}")
    if isinstance(performance, (int, float)) and not isinstance(performance, bool):
        perf_text = format_number(float(performance))
    else:
        perf_text = _cell(performance)
    if status == SUCCESS and not perf_text:
        raise ValueError(f"a {SUCCESS} row needs a performance value (model {model.get('name')!r})")
    n_gpus = _cell(model.get("n_gpus", ""))
    data = data or {}
    row = dict.fromkeys(PERF_COLUMNS, "")
    row.update(
        model=_cell(model.get("name")),
        n_gpus=n_gpus,
        nnodes="1",
        gpus_per_node=n_gpus,
        training_precision=_cell(model.get("training_precision")),
        pipeline="",
        args=_cell(model.get("args") if args is None else args),
        tags=_cell(model.get("tags")),
        docker_file=_cell(model.get("dockerfile") if docker_file is None else docker_file),
        base_docker=_cell(base_docker),
        docker_sha=_cell(docker_sha),
        docker_image=_cell(image),
        git_commit=_cell(git_commit),
        machine_name=_cell(machine_name),
        deployment_type=_cell(deployment_type),
        launcher="docker",
        gpu_architecture=_cell(gpu_architecture),
        performance=perf_text,
        metric=_cell(metric),
        relative_change="",
        status=status,
        build_duration=_cell(build_duration),
        test_duration=_cell(test_duration),
        dataname=_cell(data.get("dataname")),
        data_provider_type=_cell(data.get("data_provider_type")),
        data_size=_cell(data.get("data_size")),
        data_download_duration=_cell(data.get("data_download_duration")),
        build_number=_cell(os.environ.get("BUILD_NUMBER", "") if build_number is None else build_number),
        additional_docker_run_options=_cell(model.get("additional_docker_run_options")),
        host=_cell(host),
        run_id=_cell(run_id),
        image_digest=_cell(image_digest),
        reason=_cell(reason),
        started_at=_cell(started_at),
    )
    for key, value in (extra or {}).items():
        if key not in row:
            row[str(key)] = _cell(value)
    return row


def failure_row(model: dict, reason: str, **kw: Any) -> dict[str, str]:
    """A FAILURE row for ``model`` with ``reason`` (other keywords as for :func:`make_row`)."""
    kw.pop("status", None)
    return make_row(model, status=FAILURE, reason=reason, **kw)


def skipped_row(model: dict, reason: str, **kw: Any) -> dict[str, str]:
    """A SKIPPED row for ``model`` with ``reason`` (other keywords as for :func:`make_row`)."""
    kw.pop("status", None)
    return make_row(model, status=SKIPPED, reason=reason, **kw)


def _seconds(value: float | int | None) -> str:
    if value is None:
        return "?"
    return format_number(float(value))


def run_failure_reason(exit_code: int | None, timed_out: bool, timeout_s: float | int | None) -> str:
    """Why a finished container run failed before its output is considered, or ``""`` if it did not."""
    if timed_out:
        return f"timeout after {_seconds(timeout_s)} s"
    if exit_code is None:
        return "no exit code"
    if exit_code != 0:
        return f"non-zero exit {exit_code}"
    return ""


def no_performance_reason(saw_performance_line: bool) -> str:
    """Why a log gives no value: ``no performance line``, or ``no performance value on the performance
    line`` when a ``performance:`` line is there but holds no number."""
    if saw_performance_line:
        return "no performance value on the performance line"
    return "no performance line"


def rows_for_run(model: dict, output: str | PerfScanner, exit_code: int | None, timed_out: bool,
                 timeout_s: float | int | None, multiple_results_csv: str | None,
                 results_root: str | None = None, **row_kwargs: Any) -> list[dict[str, str]]:
    """The perf rows of one finished model run.

    SUCCESS needs exit code 0 and a performance value; anything else is a FAILURE row whose
    ``reason`` is ``timeout after N s``, ``non-zero exit N``, ``no performance line`` or ``no performance
    value on the performance line`` (single result), a too long performance line or metric name
    (``output`` is the model's output text, or a :class:`PerfScanner` that was fed it), or, for a model
    with ``multiple_results``, ``multiple_results file <name> not found``, a CSV error, a too long metric
    name, or ``no performance value`` for a CSV row. ``multiple_results_csv`` is the host path of the CSV
    the script wrote (ignored when the model has no ``multiple_results``), read as
    :func:`read_multiple_results` does with ``results_root``. A multiple_results run gives one
    row per CSV row named ``<model>_<csv model>``, with the CSV's other columns as extra keys; when the
    run itself failed but the CSV exists, every CSV row is a FAILURE with the run's reason.
    ``row_kwargs`` go to :func:`make_row`.
    """
    for key in ("status", "performance", "metric", "reason", "extra"):
        row_kwargs.pop(key, None)
    run_reason = run_failure_reason(exit_code, timed_out, timeout_s)
    csv_name = model.get("multiple_results")
    if not csv_name:
        if isinstance(output, str):
            scanner = PerfScanner()
            scanner.feed(output.encode("utf-8", "replace"))
        else:
            scanner = output
        value, metric, problem = scanner.result()
        if run_reason:
            return [failure_row(model, run_reason, **row_kwargs)]
        if problem:
            return [failure_row(model, problem, **row_kwargs)]
        if value is None:
            return [failure_row(model, no_performance_reason(scanner.saw_performance_line), **row_kwargs)]
        return [make_row(model, status=SUCCESS, performance=value, metric=metric, **row_kwargs)]

    if not multiple_results_csv or not os.path.lexists(multiple_results_csv):
        return [failure_row(model, run_reason or f"multiple_results file {csv_name} not found", **row_kwargs)]
    try:
        csv_rows = read_multiple_results(multiple_results_csv, results_root)
    except (OSError, ValueError) as exc:
        return [failure_row(model, run_reason or _short(f"multiple_results file {csv_name}: {exc}"),
                            **row_kwargs)]
    if not csv_rows:
        return [failure_row(model, run_reason or f"multiple_results file {csv_name} has no rows",
                            **row_kwargs)]
    rows = []
    for csv_row in csv_rows:
        sub = dict(model, name=f"{model.get('name')}_{csv_row['model']}")
        extra = {k: v for k, v in csv_row.items() if k not in MULTIPLE_RESULTS_COLUMNS}
        value = parse_number(csv_row["performance"])
        if not run_reason and len(csv_row["metric"]) > MAX_METRIC_LEN:
            rows.append(failure_row(sub, f"metric name of {len(csv_row['metric'])} characters (the limit is "
                                         f"{MAX_METRIC_LEN})", **row_kwargs))
        elif run_reason or value is None:
            rows.append(failure_row(sub, run_reason or "no performance value", metric=csv_row["metric"],
                                    extra=extra, **row_kwargs))
        else:
            rows.append(make_row(sub, status=SUCCESS, performance=value, metric=csv_row["metric"],
                                 extra=extra, **row_kwargs))
    return rows


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
