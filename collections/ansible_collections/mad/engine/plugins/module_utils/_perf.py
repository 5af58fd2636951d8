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


def parse_multiple_results(text: str, source: str = "multiple_results file") -> list[dict[str, str]]:
    """Rows of a multiple_results CSV given as text; ``source`` names it in errors.

    Header names and values are stripped. Raises ValueError if a required column is missing.
    """
    records = list(csv.reader((text or "").lstrip("\ufeff").splitlines()))
    header = [name.strip() for name in records[0]] if records else []
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


def rows_for_run(model: dict, output_text: str, exit_code: int | None, timed_out: bool,
                 timeout_s: float | int | None, multiple_results_csv: str | None,
                 results_root: str | None = None, **row_kwargs: Any) -> list[dict[str, str]]:
    """The perf rows of one finished model run.

    SUCCESS needs exit code 0 and a performance value; anything else is a FAILURE row whose
    ``reason`` is ``timeout after N s``, ``non-zero exit N``, ``no performance line`` (single result),
    or, for a model with ``multiple_results``, ``multiple_results file <name> not found``, a CSV error,
    or ``no performance value`` for a CSV row. ``multiple_results_csv`` is the host path of the CSV the
    script wrote (ignored when the model has no ``multiple_results``), read as
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
        value, metric = parse_performance(output_text)
        if run_reason:
            return [failure_row(model, run_reason, **row_kwargs)]
        if value is None:
            return [failure_row(model, "no performance line", **row_kwargs)]
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
        if run_reason or value is None:
            rows.append(failure_row(sub, run_reason or "no performance value", metric=csv_row["metric"],
                                    extra=extra, **row_kwargs))
        else:
            rows.append(make_row(sub, status=SUCCESS, performance=value, metric=csv_row["metric"],
                                 extra=extra, **row_kwargs))
    return rows


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
