"""perf.csv rows (+ optional baseline rows) → a self-contained HTML report (the last, read-only stage).

Input: rows as :func:`madengine.results.read_rows` returns them, and the CSV's path (to find the run logs
beside it). Output: :class:`Report` (plain data: summary, status counts, one table row per
model × host × metric, the raw runs, and bar-chart geometry), then :func:`render_html` turns it into one
HTML string with inline CSS, JS and SVG — nothing is fetched when it is viewed. Writing the file is the
caller's job. Every value reaches the page through Jinja autoescaping.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ansible_collections.mad.engine.plugins.module_utils._execute import log_path as default_log_path
from ansible_collections.mad.engine.plugins.module_utils._perf import FAILURE, SKIPPED, SUCCESS, parse_number

from madengine import __version__
from madengine.compare import (
    HIGHER,
    CompareResult,
    Comparison,
    Stats,
    Thresholds,
    compare_rows,
    display_number,
    metric_direction,
)

__all__ = ["Report", "build_report", "render_html"]

RUN_STATUSES = (SUCCESS, FAILURE, SKIPPED)
# Tableau 10: distinguishable, and readable on both the light and the dark theme.
HOST_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
               "#9c755f", "#bab0ac")
# Columns of the "all runs" table, in order.
RUN_COLUMNS = ("model", "host", "status", "performance", "metric", "relative_change", "test_duration",
               "run_id", "started_at", "gpu_architecture", "reason")


@dataclass
class Summary:
    source: str
    baseline: str
    generated_at: str
    rows: int
    models: int
    hosts: int
    run_ids: list[str]
    first_started: str
    last_started: str
    total_duration: float  # seconds of test_duration over every row
    gpu_architectures: list[str]
    success_rate: float | None  # SUCCESS rows / non-SKIPPED rows, None when there are none


@dataclass
class LogLink:
    href: str
    label: str


@dataclass
class TableRow:
    """One model × host × metric: its runs summarised, and its comparison with the baseline if any."""

    model: str
    host: str
    metric: str
    direction: str
    status: str  # SUCCESS, FAILURE, SKIPPED, PARTIAL (some runs failed) or MISSING (baseline only)
    runs: int
    failures: int
    current: Stats | None
    duration: float | None  # median test_duration, seconds
    comparison: Comparison | None
    reason: str
    logs: list[LogLink]

    @property
    def compare_status(self) -> str:
        return self.comparison.status if self.comparison else ""

    @property
    def change_text(self) -> str:
        return self.comparison.change_text if self.comparison else ""


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    label: str
    title: str
    whisker: tuple[float, float] | None = None  # x of min..max for repeated runs
    baseline_x: float | None = None
    change: str = ""  # "-14.62%" against the baseline
    status: str = ""  # the comparison status, for colouring ``change``


@dataclass
class Chart:
    """A horizontal grouped bar chart for one metric: a group per model, a bar per host."""

    metric: str
    direction: str
    width: float
    height: float
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    zero_x: float
    ticks: list[tuple[float, str]]
    groups: list[tuple[float, str]]  # (label y, model)
    bars: list[Bar]
    legend: list[tuple[str, str]]  # (host, colour)


@dataclass
class Report:
    summary: Summary
    status_counts: dict[str, int]
    comparison: CompareResult | None
    rows: list[TableRow]
    runs: list[dict[str, Any]] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    match_host: bool = True

    @property
    def chart_bars(self) -> int:
        return sum(len(c.bars) for c in self.charts)


# ---------------------------------------------------------------------------------------------- helpers


def _text(row: Mapping[str, Any], column: str) -> str:
    return str(row.get(column) or "").strip()


def _status(row: Mapping[str, Any]) -> str:
    return _text(row, "status").upper()


def _float(text: str) -> float | None:
    return parse_number(text)


def _log_links(rows: Sequence[Mapping[str, Any]], csv_dir: Path, output_dir: Path) -> list[LogLink]:
    """Links to the run logs of ``rows`` that exist: a row's own ``log_path``, else the one `run` writes
    beside perf.csv (``<model>_<dockerfile stem>.run.live.log``)."""
    links: dict[str, LogLink] = {}
    for row in rows:
        given = _text(row, "log_path")
        if given:
            path = Path(given) if os.path.isabs(given) else csv_dir / given
        else:
            path = Path(default_log_path(str(csv_dir), _text(row, "model"), _text(row, "docker_file")))
        if not path.is_file():
            continue
        resolved = path.resolve()
        try:
            href = quote(os.path.relpath(resolved, output_dir.resolve()).replace(os.sep, "/"))
        except ValueError:  # another drive (Windows): no relative path exists
            href = resolved.as_uri()
        links.setdefault(href, LogLink(href, path.name))
    return list(links.values())


def _run_status(rows: Sequence[Mapping[str, Any]]) -> str:
    statuses = {_status(r) for r in rows}
    if not statuses:
        return "MISSING"
    if statuses == {SUCCESS}:
        return SUCCESS
    if statuses == {SKIPPED}:
        return SKIPPED
    if SUCCESS in statuses:
        return "PARTIAL"
    return FAILURE


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _ticks(low: float, high: float) -> tuple[float, float, list[float]]:
    if high <= low:
        high = low + 1
    step = _nice_step(high - low)
    start, stop = math.floor(low / step) * step, math.ceil(high / step) * step
    count = round((stop - start) / step)
    return start, stop, [start + i * step for i in range(count + 1)]


BAR_H, BAR_GAP, GROUP_GAP = 18.0, 4.0, 14.0
CHART_W, LABEL_W, VALUE_W, TOP, AXIS_H = 1140.0, 200.0, 160.0, 12.0, 28.0


def _chart(metric: str, rows: Sequence[TableRow], host_colors: Mapping[str, str]) -> Chart:
    measured = [r for r in rows if r.current is not None]
    values = [0.0]
    for r in measured:
        assert r.current is not None
        values += [r.current.min, r.current.max]
        if r.comparison and r.comparison.baseline:
            values.append(r.comparison.baseline.median)
    low, high, tick_values = _ticks(min(values), max(values))
    left, right = LABEL_W, CHART_W - VALUE_W

    def scale(v: float) -> float:
        return left + (v - low) / (high - low) * (right - left)

    bars: list[Bar] = []
    groups: list[tuple[float, str]] = []
    y = TOP
    by_model: dict[str, list[TableRow]] = {}
    for r in measured:
        by_model.setdefault(r.model, []).append(r)
    for model, model_rows in by_model.items():
        top = y
        for r in model_rows:
            assert r.current is not None
            x0, x1 = sorted((scale(0.0), scale(r.current.median)))
            host = r.host or "all hosts"
            title = f"{model} on {host}: {display_number(r.current.median)} {metric}"
            if r.current.n > 1:
                title += (f" (median of {r.current.n}, {display_number(r.current.min)}.."
                          f"{display_number(r.current.max)})")
            baseline_x = None
            if r.comparison and r.comparison.baseline:
                baseline_x = scale(r.comparison.baseline.median)
                title += f"; baseline {display_number(r.comparison.baseline.median)} ({r.change_text or 'n/a'})"
            bars.append(Bar(
                x=round(x0, 2), y=round(y, 2), width=round(max(x1 - x0, 1.0), 2), height=BAR_H,
                color=host_colors.get(r.host, HOST_COLORS[0]), label=display_number(r.current.median), title=title,
                whisker=(round(scale(r.current.min), 2), round(scale(r.current.max), 2)) if r.current.n > 1 else None,
                baseline_x=round(baseline_x, 2) if baseline_x is not None else None,
                change=r.change_text, status=r.compare_status))
            y += BAR_H + BAR_GAP
        groups.append((round((top + y - BAR_GAP) / 2, 2), model))
        y += GROUP_GAP - BAR_GAP
    plot_bottom = y - GROUP_GAP + BAR_GAP + 6
    hosts = list(dict.fromkeys(r.host for r in measured))
    return Chart(
        metric=metric, direction=rows[0].direction, width=CHART_W, height=round(plot_bottom + AXIS_H, 2),
        plot_left=left, plot_right=right, plot_top=TOP - 6, plot_bottom=round(plot_bottom, 2),
        zero_x=round(scale(0.0), 2), ticks=[(round(scale(v), 2), display_number(v)) for v in tick_values],
        groups=groups, bars=bars, legend=[(h or "all hosts", host_colors.get(h, HOST_COLORS[0])) for h in hosts])


def _summary(rows: Sequence[Mapping[str, Any]], source: str, baseline: str) -> Summary:
    started = sorted(s for s in (_text(r, "started_at") for r in rows) if s)
    durations = [d for d in (_float(_text(r, "test_duration")) for r in rows) if d is not None]
    judged = [r for r in rows if _status(r) != SKIPPED]
    successes = sum(1 for r in judged if _status(r) == SUCCESS)
    return Summary(
        source=source, baseline=baseline,
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        rows=len(rows),
        models=len({_text(r, "model") for r in rows}),
        hosts=len({_text(r, "host") for r in rows}),
        run_ids=sorted({_text(r, "run_id") for r in rows} - {""}),
        first_started=started[0] if started else "", last_started=started[-1] if started else "",
        total_duration=sum(durations),
        gpu_architectures=sorted({_text(r, "gpu_architecture") for r in rows} - {""}),
        success_rate=successes / len(judged) if judged else None)


def _table_row(entry: Comparison, matched: Sequence[Mapping[str, Any]], csv_dir: Path, output_dir: Path, *,
               compared: bool) -> TableRow:
    durations = [d for d in (_float(_text(r, "test_duration")) for r in matched) if d is not None]
    reason = next((_text(r, "reason") for r in reversed(matched) if _text(r, "reason")), "")
    return TableRow(
        model=entry.model, host=entry.host, metric=entry.metric, direction=entry.direction,
        status=_run_status(matched), runs=len(matched), failures=entry.failures, current=entry.current,
        duration=statistics.median(durations) if durations else None,
        comparison=entry if compared else None,
        reason=reason or (entry.reason if compared else ""),
        logs=_log_links(matched, csv_dir, output_dir))


def _matches(row: Mapping[str, Any], entry: Comparison, match_host: bool) -> bool:
    if _text(row, "model") != entry.model or (match_host and _text(row, "host") != entry.host):
        return False
    metric = _text(row, "metric")
    return metric == entry.metric or (not metric and _status(row) != SUCCESS)


# ---------------------------------------------------------------------------------------------- build


def build_report(rows: Sequence[Mapping[str, Any]], *, csv_path: str | os.PathLike[str],
                 output_path: str | os.PathLike[str] = "report.html",
                 baseline_rows: Sequence[Mapping[str, Any]] | None = None, baseline_path: str = "",
                 threshold: float | None = None, thresholds: Thresholds | None = None,
                 match_host: bool = True) -> Report:
    """Everything the page shows, as data. Log links are relative to ``output_path``'s directory."""
    csv_dir = Path(csv_path).parent
    output_dir = Path(output_path).parent
    comparison = compare_rows(rows, baseline_rows or [], threshold=threshold, thresholds=thresholds,
                              match_host=match_host)
    table: list[TableRow] = []
    seen: set[int] = set()
    for entry in comparison.entries:
        matched = [r for r in rows if _matches(r, entry, match_host)]
        seen.update(id(r) for r in matched)
        table.append(_table_row(entry, matched, csv_dir, output_dir, compared=baseline_rows is not None))
    # Rows no comparison covers (models only SKIPPED in this run) still get their table row.
    leftovers: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        if id(row) not in seen:
            key = (_text(row, "model"), _text(row, "host") if match_host else "", _text(row, "metric"))
            leftovers.setdefault(key, []).append(row)
    for (model, host, metric), matched in leftovers.items():
        entry = Comparison(model, host, metric, "", metric_direction(metric), 0.0)
        table.append(_table_row(entry, matched, csv_dir, output_dir, compared=False))
    table.sort(key=lambda r: (r.model, r.host, r.metric))

    counts = dict.fromkeys(RUN_STATUSES, 0)
    for row in rows:
        status = _status(row) or "(empty)"
        counts[status] = counts.get(status, 0) + 1

    hosts = list(dict.fromkeys(r.host for r in table if r.current is not None))
    host_colors = {h: HOST_COLORS[i % len(HOST_COLORS)] for i, h in enumerate(hosts)}
    by_metric: dict[str, list[TableRow]] = {}
    for r in table:
        if r.current is not None:
            by_metric.setdefault(r.metric, []).append(r)

    runs = []
    for row in rows:
        run = {c: _text(row, c) for c in RUN_COLUMNS}
        run["status"] = _status(row)
        links = _log_links([row], csv_dir, output_dir)
        run["log"] = links[0] if links else None
        runs.append(run)

    return Report(
        summary=_summary(rows, str(csv_path), baseline_path if baseline_rows is not None else ""),
        status_counts=counts,
        comparison=comparison if baseline_rows is not None else None,
        rows=table, runs=runs,
        charts=[_chart(metric, metric_rows, host_colors) for metric, metric_rows in by_metric.items()],
        match_host=match_host)


# ---------------------------------------------------------------------------------------------- render


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _sort_value(value: float | None) -> str:
    """A ``data-sort`` attribute: a plain float JavaScript parses, or "" (sorted last)."""
    return "" if value is None else repr(float(value))


def _sort_text(text: str) -> str:
    """``data-sort`` for a perf.csv cell such as ``1,234.5`` or ``+3.21%``."""
    return _sort_value(parse_number(text.strip().removesuffix("%")))


def render_html(report: Report) -> str:
    """The report as one HTML document (UTF-8 text). The template autoescapes every value."""
    from madengine.templating import render

    return render("report/report.html.j2", report=report, version=__version__, HIGHER=HIGHER,
                  num=display_number, duration=_duration_text, sortval=_sort_value, sortnum=_sort_text)
