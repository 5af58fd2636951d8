"""`madengine-cli generate ansible|k8s`: orchestration files from a manifest and execution config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from madengine.cli.console import set_verbose
from madengine.cli.options import (
    DEFAULT_EXEC_CONFIG,
    DEFAULT_MANIFEST,
    ExecConfigOpt,
    MadDirOpt,
    ManifestFileOpt,
    VerboseOpt,
)
from madengine.errors import NotImplementedYetError

generate_app = typer.Typer(help="Create orchestration files (Ansible playbooks, Kubernetes manifests).",
                           no_args_is_help=True)


@generate_app.command("ansible")
def ansible(
    manifest_file: ManifestFileOpt = DEFAULT_MANIFEST,
    execution_config: ExecConfigOpt = DEFAULT_EXEC_CONFIG,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Playbook file to write; the bundle goes beside it.",
                           dir_okay=False, metavar="FILE")
    ] = Path("madengine_distributed.yml"),
    inventory: Annotated[
        Path | None,
        typer.Option("--inventory", help="Inventory to copy into the bundle.", dir_okay=False, metavar="FILE"),
    ] = None,
    mad_dir: MadDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Generate an Ansible playbook bundle that runs the manifest's models with mad.engine."""
    set_verbose(verbose)
    raise NotImplementedYetError("`madengine-cli generate ansible` is not implemented yet")


@generate_app.command("k8s")
def k8s(
    manifest_file: ManifestFileOpt = DEFAULT_MANIFEST,
    execution_config: ExecConfigOpt = DEFAULT_EXEC_CONFIG,
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Kubernetes namespace.")] = "madengine",
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="Folder to write the manifests to.", file_okay=False)
    ] = Path("k8s"),
    mad_dir: MadDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Generate Kubernetes manifests (Namespace, ConfigMap, one Job per model, kustomization)."""
    set_verbose(verbose)
    raise NotImplementedYetError("`madengine-cli generate k8s` is not implemented yet")
