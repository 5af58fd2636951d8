"""Rendering of `madengine-cli export-config` and `madengine-cli generate k8s`: summary tables and notes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from madengine.execution_config import ExportResult
    from madengine.k8s import K8sBundle


def _timeout(seconds: int | None) -> str:
    return "none" if seconds is None else f"{seconds} s"


def _short_image(image: str) -> str:
    repo, at, digest = image.partition("@sha256:")
    return f"{repo}@sha256:{digest[:12]}…" if at else image


def export_table(result: ExportResult) -> Table:
    """One row per exported model: GPUs, timeout, data and credential needs."""
    table = Table(title="Execution config", caption=f"{len(result.models)} model(s)", caption_justify="left")
    table.add_column("model", style="bold cyan", no_wrap=True)
    table.add_column("gpus")
    table.add_column("timeout")
    table.add_column("data")
    table.add_column("cred")
    for model, res in zip(result.models, result.config["resources"], strict=True):
        gpus = "all" if res["n_gpus"] == -1 else str(res["n_gpus"])
        if res["gpu_resource"]:
            gpus += f" × {res['gpu_resource']}"
        data = res["data"]["name"] if res["data"] else "-"
        table.add_row(escape(model.name), gpus, _timeout(res["timeout"]), escape(data), escape(model.cred or "-"))
    return table


def export_notes(result: ExportResult, path: Path) -> list[str]:
    lines = [f"[green]✅ Wrote {escape(str(path))}[/] ({len(result.models)} model(s))"]
    for item in result.skipped:
        lines.append(f"[yellow]⏭️  {escape(item['model'])}: {escape(item['reason'])}[/]")
    lines += [f"[yellow]⚠️  {escape(note)}[/]" for note in result.notes]
    if result.config["credentials_required"]:
        names = ", ".join(result.config["credentials_required"])
        lines.append(f"🔑 Credentials needed at run time (names only): {escape(names)}")
    return lines


def k8s_table(bundle: K8sBundle) -> Table:
    """One row per Job: its name, model and image, then GPUs and timeout."""
    table = Table(title=f"Kubernetes Jobs (namespace {bundle.namespace})", caption=f"{len(bundle.jobs)} Job(s)",
                  caption_justify="left")
    table.add_column("job · model · image", overflow="fold")
    table.add_column("gpus", no_wrap=True)
    table.add_column("timeout", no_wrap=True)
    for job in bundle.jobs:
        gpus = f"{job.gpus} × {job.gpu_resource}" if job.gpu_resource else "-"
        table.add_row(f"[bold cyan]{job.name}[/]\n{escape(job.model)}\n[dim]{escape(_short_image(job.image))}[/]",
                      gpus, _timeout(job.timeout))
    return table


def k8s_notes(bundle: K8sBundle, output_dir: Path) -> list[str]:
    out = escape(str(output_dir))
    lines = [f"[green]✅ Wrote {len(bundle.files)} file(s) to {out}[/]: apply with "
             f"[bold]kubectl apply -k {out}[/] (see {out}/README.md)"]
    for item in bundle.skipped:
        lines.append(f"[yellow]⏭️  {escape(item['model'])}: no Job ({escape(item['reason'])})[/]")
    lines += [f"[yellow]⚠️  {escape(note)}[/]" for note in bundle.notes]
    if bundle.secrets:
        lines.append("🔑 Create these Secrets first (README.md tells how): " + escape(", ".join(bundle.secrets)))
    return lines
