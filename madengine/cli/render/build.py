"""Rendering of `madengine-cli build`: live progress while building, then the summary.

:class:`BuildDisplay` is the ``progress(image, event, text)`` callback core calls (from worker threads):
on a terminal a transient Rich Progress on ``err_console`` with one line per image (spinner, elapsed
time, last log line); with ``--live-output`` every log line on stdout, prefixed with the model name;
elsewhere (CI logs) one plain line per start/finish. :func:`summary_table` and :func:`notes` turn the
:class:`~madengine.build.BuildResult` into renderables.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column, Table
from rich.text import Text

if TYPE_CHECKING:
    from madengine.build import BuildResult

_PREFIX_STYLES = ("cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta",
                  "bright_green")
_LINE_WIDTH = 90


def _seconds(value: float) -> str:
    return f"{value:.2f}s" if value < 10 else f"{value:.1f}s"


def _clip(text: str, width: int = _LINE_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class _OverallOnly(ProgressColumn):
    """A column shown only on the overall task (the images bar); image lines leave it blank."""

    def __init__(self, column: ProgressColumn) -> None:
        super().__init__(table_column=column.get_table_column())
        self.column = column

    def render(self, task: Task) -> RenderableType:
        return self.column.render(task) if task.fields.get("overall") else Text("")


class BuildDisplay:
    """The progress callback for core's build, as a context manager around the build call."""

    def __init__(self, console: Console, err_console: Console, *, live_output: bool = False) -> None:
        self.console = console
        self.err_console = err_console
        self.live_output = live_output
        self.models: dict[str, str] = {}
        self.styles: dict[str, str] = {}
        self._lock = threading.Lock()
        self.progress: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.overall: TaskID | None = None
        # A dumb terminal (TERM=dumb) cannot redraw: it gets the plain lines, like a CI log.
        if not live_output and err_console.is_terminal and not err_console.is_dumb_terminal:
            # Spinners for each image (a build's length is unknown), one bar over the images (a known total).
            self.progress = Progress(
                SpinnerColumn(finished_text=" "),
                TextColumn("{task.fields[status]}", markup=False),
                TextColumn("[bold]{task.fields[model]}[/]", table_column=Column(no_wrap=True)),
                _OverallOnly(BarColumn(bar_width=20)), _OverallOnly(MofNCompleteColumn()),
                TextColumn("{task.fields[image]}", style="dim", table_column=Column(no_wrap=True)),
                TimeElapsedColumn(),
                TextColumn("{task.fields[line]}", markup=False,
                           table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
                console=err_console, transient=True, expand=True)
            self.overall = self.progress.add_task("images", total=0, status="▶", model="images", image="",
                                                  line="", overall=True)

    def __enter__(self) -> BuildDisplay:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    # -- the callback
    def __call__(self, image: str, event: str, text: str) -> None:
        if event == "queued":
            with self._lock:
                self.models[image] = text.split(", ")[0] if text else image
                self.styles[image] = _PREFIX_STYLES[len(self.styles) % len(_PREFIX_STYLES)]
            if self.progress is not None:
                if self.overall is not None:
                    self.progress.update(self.overall, total=len(self.models))
                shared = text.count(", ")
                model = self.models[image] + (f" (+{shared} shared)" if shared else "")
                self.tasks[image] = self.progress.add_task(
                    image, total=None, start=False, status="⏳", model=escape(model), image=image,
                    line="queued")
            return
        if self.live_output:
            self._live(image, event, text)
        elif self.progress is not None:
            self._update(image, event, text)
        else:
            self._plain(image, event, text)

    def _prefix(self, image: str) -> Text:
        return Text(f"[{self.models.get(image, image)}] ", style=self.styles.get(image, "cyan"))

    def _live(self, image: str, event: str, text: str) -> None:
        prefix = self._prefix(image)
        messages = {
            "start": ("🔨 building " + image, "bold"),
            "pull": ("⬇️  pulling base " + text, ""),
            "push": ("📤 pushing " + text, ""),
            "pushed": ("✅ pushed " + text, "green"),
            "push_failed": ("❌ push failed: " + text, "red"),
            "built": (f"✅ built {image} in {text}", "green"),
            "failed": ("❌ build failed: " + text, "red"),
        }
        if event == "log":
            line = Text(text)
        elif event in messages:
            message, style = messages[event]
            line = Text(message, style=style)
        else:
            return
        # One print per line: Rich's console lock keeps lines from threads whole.
        self.console.print(prefix + line, soft_wrap=True, highlight=False)

    def _update(self, image: str, event: str, text: str) -> None:
        assert self.progress is not None
        task = self.tasks.get(image)
        if task is None:
            return
        if event == "start":
            self.progress.start_task(task)
            self.progress.update(task, status="🔨", line="building")
        elif event == "log":
            self.progress.update(task, line=_clip(text))
        elif event == "pull":
            self.progress.update(task, line=f"pulling {text}")
        elif event == "built":
            self.progress.update(task, line=f"built in {text}")
        elif event == "push":
            self.progress.update(task, status="📤", line=f"pushing {text}")
        elif event in ("done", "failed", "push_failed"):
            status = {"done": "✅", "failed": "❌", "push_failed": "⚠️"}[event]
            line = f"built in {text}" if event == "done" else _clip(text)
            self.progress.update(task, status=status, line=line, total=1, completed=1)
            self.progress.stop_task(task)
            if self.overall is not None:
                self.progress.advance(self.overall)

    def _plain(self, image: str, event: str, text: str) -> None:
        model = escape(self.models.get(image, image))
        messages = {
            "start": f"🔨 [bold]{model}[/]: building {image}",
            "built": f"✅ [bold]{model}[/]: built {image} in {text}",
            "pushed": f"📤 [bold]{model}[/]: pushed {escape(text)}",
            "failed": f"❌ [bold]{model}[/]: build failed: {escape(_clip(text, 200))}",
            "push_failed": f"❌ [bold]{model}[/]: push failed: {escape(text)}",
        }
        if event in messages:
            self.err_console.print(messages[event], highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------------- summary
def _size(size: int | None) -> str:
    if not size:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


def summary_table(result: BuildResult) -> Table:
    """One row per model and image: model, image, status, duration, pushed, size."""
    table = Table(title="Build summary", caption=_caption(result), caption_justify="left")
    table.add_column("model", style="bold cyan", no_wrap=True)
    table.add_column("image", overflow="fold")
    table.add_column("status", justify="center")
    table.add_column("duration", justify="right")
    table.add_column("pushed", justify="center")
    table.add_column("size", justify="right")
    registry = bool(result.registry)
    for res in result.images:
        plan = res.plan
        for index, (name, key) in enumerate(zip(plan.model_names, plan.model_keys, strict=True)):
            # A shared build ran once: its duration shows on the first model's row only; each model's
            # row names the model's own tag of it.
            duration = _seconds(res.duration) if index == 0 else "shared"
            if plan.prebuilt:
                duration = "ready image"
            if not res.ok:
                table.add_row(name, key, "❌", duration, "-", "-")
                continue
            built = res.built_by_key.get(key) or res.built
            pushed = "-" if not registry else ("✅" if built and built.pushed else "❌")
            size = _size(built.size if built else None)
            table.add_row(name, built.docker_image if built else key, "✅", duration, pushed, size)
    failed_images = {f.model for f in result.failures if f.log_file}
    for failure in result.failures:
        if failure.model in failed_images and failure.log_file:
            continue  # already shown with its image
        table.add_row(failure.model, "-", "❌", "-", "-", "-")
    for skipped in result.skipped:
        table.add_row(skipped.model, "-", "⏭️ skipped", "-", "-", "-")
    return table


def _caption(result: BuildResult) -> str:
    built = sum(1 for r in result.images if r.ok)
    text = (f"{built} image(s) built by {result.docker_builds} docker build(s) in "
            f"{result.wall_time:.1f}s")
    if result.failures:
        text += f"; {len(result.failures)} model(s) failed"
    if result.push_failures:
        text += f"; {len(result.push_failures)} push(es) failed"
    return text


def notes(result: BuildResult) -> Iterator[RenderableType]:
    """What to do next: failures with their cause and log, push problems with a suggestion, files."""
    for skipped in result.skipped:
        yield Text(f"⏭️  {skipped.model}: skipped, {skipped.reason}", style="yellow")
    for failure in result.failures:
        text = Text(f"❌ {failure.model}: ", style="bold red")
        text.append(failure.error, style="red")
        if failure.log_file:
            text.append(f"\n   📝 log: {failure.log_file}", style="dim")
        yield text
    seen: set[str] = set()
    for res in result.push_failures:
        cause = res.push_error or ""
        yield Text(f"❌ Failed to push to registry: {cause} ({res.plan.docker_image})", style="red")
        if res.push_hint and res.push_hint not in seen:
            seen.add(res.push_hint)
            yield Text(f"💡 {res.push_hint}", style="yellow")
    ok = not result.failures and not result.push_failures
    if ok and result.images:
        head = Text("✅ All images built" + (" and pushed" if result.registry else ""), style="bold green")
    elif ok:
        head = Text("Nothing to build", style="yellow")
    else:
        failed = len(result.failures)
        noun = "model" if failed == 1 else "models"
        head = Text(f"💥 Build failed for {failed} {noun}" if failed else "❌ Some pushes failed",
                    style="bold red")
    yield head
    if result.failures:
        # The guide's debugging steps for build failures.
        yield Text("💡 Each failed model's build log is named above; --verbose shows more detail, "
                   "--live-output streams the build, --clean-docker-cache rules out a stale cache"
                   + ("" if result.summary_path else ", and --summary-output FILE records every error"),
                   style="yellow")
    yield Text(f"📄 Manifest: {result.manifest_path}")
    if result.summary_path:
        yield Text(f"📄 Summary: {result.summary_path}")
