"""Renderables shared by every command: the error panel and the discovered-models table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
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
