"""Renderables shared by every command: the error panel and the discovered-models table."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.json import JSON
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from madengine.errors import MadError
    from madengine.model import Model


def error_panel(err: MadError) -> Panel:
    """The one-screen error: message, hint, and the guide's `💡 Example usage:` block."""
    parts: list[Text] = [Text(f"💥 {err.message}", style="bold red")]
    if err.hint:
        parts.append(Text(f"💡 {err.hint}", style="yellow"))
    if err.example:
        example = "\n".join("   " + line for line in err.example.splitlines())
        parts.append(Text("💡 Example usage:\n" + example, style="cyan"))
    return Panel(Group(*parts), title=f"❌ Error (exit {int(err.exit_code)})", title_align="left",
                 border_style="red", expand=False)


def models_table(models: list[Model]) -> Table:
    """`madengine discover`: one row per model, then a count in the caption."""
    table = Table(title="Discovered models", caption=f"{len(models)} model(s)", caption_justify="left")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("tags")
    table.add_column("source")
    table.add_column("dockerfile", overflow="fold")
    table.add_column("scripts", overflow="fold")
    styles = {"root": "green", "dir": "blue", "dynamic": "magenta"}
    for m in models:
        table.add_row(m.name, ", ".join(m.tags), Text(m.source, style=styles.get(m.source, "")),
                      m.dockerfile or "-", m.scripts or "-")
    return table


def config_panel(title: str, settings: Mapping[str, Any], context: Mapping[str, Any]) -> Panel:
    """The effective settings before execution; `context` must already be masked."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in settings.items():
        table.add_row(key, escape(str(value)))
    parts: list[Any] = [table]
    context = {key: value for key, value in context.items() if value not in (None, "", [], {})}
    if context:
        parts += [Text("context", style="bold cyan"),
                  JSON(json.dumps(context), indent=2, sort_keys=True)]  # rich's own highlighter: no pygments
    return Panel(Group(*parts), title=f"📋 {title}", title_align="left", border_style="blue", expand=False)


def _mark(ok: bool) -> Text:
    return Text("✅ success", style="green") if ok else Text("❌ failed", style="bold red")


def workflow_table(summary: Mapping[str, Any], model_runs: int | None = None) -> Table:
    """After a full workflow (build → run): one row per phase and the overall result.

    `summary` is :func:`madengine.results.workflow_summary`'s dict (what --summary-output writes);
    `model_runs`, when given, is said beside the row counts (a multiple_results model gives several rows).
    """
    build = summary.get("build_phase") or {}
    run = summary.get("run_phase") or {}
    table = Table(title="Workflow summary", title_justify="left")
    table.add_column("phase", style="bold", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("details")
    table.add_column("time", justify="right")
    built, failed = len(build.get("successful_builds") or []), len(build.get("failed_builds") or [])
    pushes_failed, skipped = len(build.get("failed_pushes") or []), len(build.get("skipped_models") or [])
    details = f"{built} image(s) built, {failed} model(s) failed"
    if pushes_failed:
        details += f", {pushes_failed} push(es) failed"
    if skipped:
        details += f", {skipped} skipped"
    table.add_row("🔨 Build", _mark(not failed and not pushes_failed), details,
                  f"{float(build.get('wall_time') or 0):.1f}s")
    ok_runs, bad_runs = len(run.get("successful_runs") or []), len(run.get("failed_runs") or [])
    skipped_runs = len(run.get("skipped_runs") or [])
    details = f"{ok_runs} succeeded, {bad_runs} failed, {skipped_runs} skipped"
    if model_runs is not None:
        details += f" ({ok_runs + bad_runs + skipped_runs} row(s) of {model_runs} model run(s))"
    table.add_row("🚀 Run", _mark(not bad_runs), details,
                  f"{float(run.get('total_execution_time') or 0):.1f}s")
    table.add_row("Overall", _mark(bool(summary.get("overall_success"))), "", "")
    return table
