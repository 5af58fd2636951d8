"""Rendering of `madengine-cli run`: the configuration panel, live progress, the results table.

:class:`RunDisplay` is the executor's listener ``(event, model, data)``: on a terminal a transient
Rich Progress on ``err_console`` (a bar over the models, and one line per model with spinner,
elapsed time and its last output line); with ``--live-output`` every output line, prefixed with the
model name; elsewhere (CI logs, NO_COLOR pipes) one plain line per model start and finish.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from rich.text import Text

if TYPE_CHECKING:
    from madengine.execute.local import RunReport

STATUS_STYLE = {"SUCCESS": ("✅", "green"), "FAILURE": ("❌", "red"), "SKIPPED": ("⏭️ ", "yellow")}


def _clip(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def phase_rule(console: Console, text: str) -> None:
    console.rule(f"[bold]{text}[/]", align="left")


class RunDisplay:
    """The listener for :func:`madengine.execute.local.run_manifest`, as a context manager."""

    def __init__(self, console: Console, err_console: Console, total: int, *, live_output: bool = False):
        self.console = console
        self.err = err_console
        self.live_output = live_output
        self.progress: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.overall: TaskID | None = None
        self._slurm_seen: dict[str, str] = {}
        if not live_output and err_console.is_terminal and not err_console.is_dumb_terminal:
            self.progress = Progress(
                SpinnerColumn(finished_text=" "),
                TextColumn("{task.fields[status]}", markup=False),
                TextColumn("[bold]{task.description}[/]", table_column=Column(no_wrap=True)),
                BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[line]}", markup=False,
                           table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
                console=err_console, transient=True, expand=True)
            self.overall = self.progress.add_task("models", total=total, status="▶", line="")

    def __enter__(self) -> RunDisplay:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, event: str, model: str, data: Mapping[str, Any]) -> None:
        progress = self.progress
        if event == "start":
            if progress is not None:
                # Not started: the elapsed time counts from "running", not from the queue (a cell of a
                # 20-node run can wait minutes for its host).
                self.tasks[model] = progress.add_task(model, total=1, status="⏳", line="queued", start=False)
            else:
                image = data.get("image") or ""
                self.err.print(f"▶ {model}: starting" + (f" ({image})" if image else ""), highlight=False)
        elif event == "pull" and progress is not None:
            image = data.get("image") or ""
            progress.update(self.tasks[model], status="⬇️ ", line=f"checking image {image}" if image else "pulling")
        elif event == "running" and progress is not None:
            progress.start_task(self.tasks[model])
            progress.update(self.tasks[model], status="🔄", line="running")
        elif event == "slurm":
            self._slurm(model, data)
        elif event == "line":
            line = str(data.get("line", ""))
            if self.live_output:
                self.console.print(Text.assemble((f"[{model}] ", "cyan"), line))
            elif progress is not None:
                progress.update(self.tasks[model], line=_clip(line))
        elif event == "done":
            rows = data.get("rows") or []
            statuses = {row.get("status") for row in rows}
            status = "FAILURE" if "FAILURE" in statuses else ("SUCCESS" if "SUCCESS" in statuses else "SKIPPED")
            icon, _ = STATUS_STYLE[status]
            if progress is not None:
                progress.update(self.tasks[model], completed=1, status=icon, line=status)
                if self.overall is not None:
                    progress.advance(self.overall)
            else:
                reason = next((row.get("reason") for row in rows if row.get("reason")), "")
                self.err.print(f"{icon} {model}: {status}" + (f" ({reason})" if reason else ""),
                               highlight=False)


    def _slurm(self, model: str, data: Mapping[str, Any]) -> None:
        """A SLURM job's state: PENDING (reason), RUNNING (elapsed, node); printed once per change."""
        state, job_id = str(data.get("state") or ""), str(data.get("job_id") or "")
        detail = {"PENDING": str(data.get("reason") or ""),
                  "RUNNING": f"{data.get('elapsed') or ''} on {data.get('nodes') or '?'}"}.get(state, "")
        line = f"job {job_id} {state}" + (f" ({detail})" if detail else "")
        if self.progress is not None:
            self.progress.update(self.tasks[model], line=line)
        elif self._slurm_seen.get(model) != state:
            self._slurm_seen[model] = state
            self.err.print(f"⏱  {model}: {line}", highlight=False)


def results_table(report: RunReport) -> Table:
    """One row per perf row: model, status, performance, metric, duration, reason."""
    s = report.summary
    # Models and rows apart: a multiple_results model gives several rows.
    caption = (f"run {report.run_id}: {len(report.runs)} model run(s), {len(report.rows)} row(s): "
               f"{len(s.successful_runs)} succeeded, {len(s.failed_runs)} failed, "
               f"{len(s.skipped_runs)} skipped in {s.total_execution_time:.1f}s")
    table = Table(title="Run results", caption=caption, caption_justify="left")
    hosts = {row.get("host", "") for row in report.rows}
    show_host = bool(hosts - {"", "localhost"})
    if show_host:
        table.add_column("host", style="cyan", no_wrap=True)
    table.add_column("model", style="bold", no_wrap=True)
    table.add_column("status")
    table.add_column("performance", justify="right")
    table.add_column("metric")
    table.add_column("duration", justify="right")
    table.add_column("reason", overflow="fold")
    for row in report.rows:
        icon, style = STATUS_STYLE.get(row.get("status", ""), ("?", "white"))
        duration = row.get("test_duration") or ""
        cells = [row.get("host", "")] if show_host else []
        table.add_row(*cells, row.get("model", ""), Text(f"{icon} {row.get('status', '')}", style=style),
                      row.get("performance", ""), row.get("metric", ""),
                      f"{float(duration):.2f}s" if duration else "", row.get("reason", ""))
    return table


def notes(report: RunReport) -> list[str]:
    """Follow-ups after the table: containers kept alive, and the guide's timeout message."""
    lines = [f"🔍 {run.name} is still running; enter it with:  {run.exec_line}"
             for run in report.runs if run.exec_line]
    for row in report.rows:
        match = re.fullmatch(r"timeout after (\d+) s", row.get("reason", ""))
        if match:
            lines.append(f"⏱️ Operation timed out after {match.group(1)} seconds ({row.get('model', '')}): "
                         "raise it with --timeout N, or --timeout 0 for no limit")
    return lines
