"""Rendering of `madengine-cli compare` (Rich table, Markdown) and of `report`'s closing line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from madengine.compare import (
    FAILED,
    HIGHER,
    IMPROVEMENT,
    MISSING,
    NEW,
    REGRESSION,
    UNCHANGED,
    CompareResult,
    Comparison,
    Stats,
    display_number,
)

if TYPE_CHECKING:
    from pathlib import Path

    from madengine.report import Report

# status → (symbol, Rich style, Markdown emoji)
STATUS_STYLE = {
    REGRESSION: ("▼", "bold red", "🔻"),
    FAILED: ("✗", "red", "❌"),
    MISSING: ("?", "yellow", "❓"),
    IMPROVEMENT: ("▲", "bold green", "🚀"),
    NEW: ("+", "cyan", "🆕"),
    UNCHANGED: ("=", "dim", "✅"),
}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def counts_text(result: CompareResult) -> str:
    """``1 regression, 2 improvements, 5 unchanged``: non-zero statuses, most alarming first."""
    parts = [_plural(n, status.lower()) if status in (REGRESSION, IMPROVEMENT) else f"{n} {status.lower()}"
             for status, n in result.counts().items() if n]
    return ", ".join(parts) or "nothing to compare"


def stats_text(stats: Stats | None) -> str:
    """``14,164`` for one run; ``14,164 (13,900..14,300 ×3)`` for several."""
    if stats is None:
        return "-"
    if stats.n == 1:
        return display_number(stats.median)
    return f"{display_number(stats.median)} ({display_number(stats.min)}..{display_number(stats.max)} ×{stats.n})"


def _note(entry: Comparison) -> str:
    parts = []
    if entry.failures:
        parts.append(f"{_plural(entry.failures, 'failed run')}")
    if entry.reason:
        parts.append(entry.reason)
    return "; ".join(parts)


def _threshold(entry: Comparison) -> str:
    return f"±{display_number(entry.threshold * 100)}%"


def _arrow(entry: Comparison) -> str:
    return "↑" if entry.direction == HIGHER else "↓"


def _stats_cell(stats: Stats | None) -> Text:
    """The median, and for repeated runs the spread on a second, dim line."""
    if stats is None:
        return Text("-", style="dim")
    text = Text(display_number(stats.median))
    if stats.n > 1:
        text.append(f"\n{display_number(stats.min)}–{display_number(stats.max)} ×{stats.n}", style="dim")
    return text


def compare_table(result: CompareResult) -> Group:
    """The comparison table, notes (failure reasons), a legend line, then the verdict (the exit code's reason).

    The threshold gets a column only when it differs between rows; otherwise the legend names it.
    """
    limits = {e.threshold for e in result.entries}
    per_row_limit = len(limits) > 1
    # One host everywhere says nothing per row; CI logs are often 80 columns wide.
    show_host = result.match_host and len({e.host for e in result.entries}) > 1
    table = Table(title="Comparison with baseline", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("status", no_wrap=True)
    table.add_column("model @ host\nmetric" if show_host else "model\nmetric", overflow="fold")
    table.add_column("baseline", justify="right", no_wrap=True)
    table.add_column("current", justify="right", no_wrap=True)
    if per_row_limit:
        table.add_column("threshold", justify="right", no_wrap=True)
    table.add_column("change", justify="right", overflow="fold")
    for e in result.entries:
        symbol, style, _ = STATUS_STYLE[e.status]
        name = Text(e.model, style="bold cyan")
        if show_host:
            name.append(f" @ {e.host or '-'}", style="cyan")
        name.append(f"\n{e.metric or '-'} {_arrow(e)}", style="dim")
        cells: list[str | Text] = [Text(f"{symbol} {e.status}", style=style), name,
                                   _stats_cell(e.baseline), _stats_cell(e.current)]
        if per_row_limit:
            cells.append(_threshold(e))
        cells.append(Text(e.change_text or "-", style=style if e.status in (REGRESSION, IMPROVEMENT) else "dim"))
        table.add_row(*cells)
    legend = counts_text(result)
    if len(limits) == 1:
        legend += f" · threshold ±{display_number(next(iter(limits)) * 100)}%"
    legend += " · ↑ higher is better, ↓ lower is better"
    if result.match_host and not show_host and result.entries:
        legend += f" · host {result.entries[0].host or '(none)'}"
    notes = [Text.assemble((e.model, "bold"), (f" @ {e.host}" if show_host and e.host else ""),
                           f" ({e.status.lower()}): {_note(e)}") for e in result.entries if _note(e)]
    return Group(table, *notes, Text(legend, style="dim"), verdict(result))


def verdict(result: CompareResult) -> Text:
    regressions = len(result.regressions)
    if regressions:
        return Text(f"❌ {_plural(regressions, 'regression')} beyond threshold (exit 5)", style="bold red")
    return Text("✅ No regressions beyond threshold", style="bold green")


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ") or "-"


def compare_markdown(result: CompareResult) -> str:
    """A GitHub-flavoured Markdown summary and table, e.g. for a pull-request comment."""
    regressions = len(result.regressions)
    heading = (f"❌ {_plural(regressions, 'regression')} beyond threshold" if regressions
               else "✅ No regressions beyond threshold")
    lines = [f"### madengine compare: {heading}", ""]
    if result.current_path or result.baseline_path:
        lines += [f"Current `{result.current_path}` against baseline `{result.baseline_path}`: "
                  f"{counts_text(result)}.", ""]
    header = ["status", "model", *(["host"] if result.match_host else []), "metric", "better", "baseline",
              "current", "change", "threshold", "note"]
    lines += ["| " + " | ".join(header) + " |",
              "|" + "|".join("---:" if h in ("baseline", "current", "change", "threshold") else "---"
                             for h in header) + "|"]
    for e in result.entries:
        emoji = STATUS_STYLE[e.status][2]
        cells = [f"{emoji} {e.status}", _md(e.model), *([_md(e.host)] if result.match_host else []),
                 _md(e.metric), e.direction, _md(stats_text(e.baseline)), _md(stats_text(e.current)),
                 _md(f"**{e.change_text}**" if e.status == REGRESSION else e.change_text),
                 _threshold(e), _md(_note(e))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report_written(path: Path, report: Report) -> Text:
    """`report`'s closing line: where the file is and what it holds."""
    text = Text("📄 Wrote ", style="green")
    text.append(str(path), style="bold")
    text.append(f": {_plural(report.summary.rows, 'row')}, {_plural(report.summary.models, 'model')}, "
                f"{_plural(report.summary.hosts, 'host')}")
    if report.comparison is not None:
        text.append(f"; against baseline: {counts_text(report.comparison)}")
    return text
