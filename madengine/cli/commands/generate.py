"""`madengine-cli generate ansible|k8s`: orchestration files from a manifest (and an execution config).

The execution config is optional: ``--execution-config FILE`` must exist and be valid (else exit 4);
without it ``./execution_config.json`` is read when present, and otherwise the manifest's own context
and run options stand in (the guide's ``build`` then ``generate k8s --namespace production``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from madengine.cli.console import console, err_console, set_verbose
from madengine.cli.options import (
    DEFAULT_EXEC_CONFIG,
    DEFAULT_MANIFEST,
    ExecConfigOpt,
    MadDirOpt,
    ManifestFileOpt,
    VerboseOpt,
)

if TYPE_CHECKING:
    from madengine.ansible_bundle import AnsibleBundle
    from madengine.execution_config import ExecutionConfig
    from madengine.manifest import Manifest

generate_app = typer.Typer(help="Create orchestration files (Ansible playbooks, Kubernetes manifests, SLURM bundles).",
                           no_args_is_help=True)


@generate_app.command("ansible")
def ansible(
    ctx: typer.Context,
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
    """Generate an Ansible playbook bundle that runs the manifest's models with mad.engine.

    The bundle goes into the folder of --output: the playbook (the mad.engine.run_models role), its
    vars file, the manifest and execution config, the MAD files the hosts need, an inventory (a copy of
    --inventory, else an example), ansible.cfg and a README. It holds no secrets: the registry password
    is read at run time (ansible-vault variable or environment). Exit 0 when written, 4 for bad input
    (a missing or malformed manifest or execution config, a bad inventory, no model to run).
    """
    set_verbose(verbose)
    from madengine import ansible_bundle as core
    from madengine.manifest import load_manifest

    manifest = load_manifest(manifest_file)
    config, root = _execution_config(execution_config, _given(ctx, "execution_config"), manifest, mad_dir)
    bundle = core.render_ansible(manifest, config, mad_dir=root, playbook=output.name, inventory=inventory)
    directory = output.parent
    core.write_bundle(bundle, directory)
    console.print(str(output), highlight=False, soft_wrap=True)
    for note in _ansible_notes(bundle, directory):
        err_console.print(note, highlight=False, soft_wrap=True)


def _ansible_notes(bundle: AnsibleBundle, directory: Path) -> list[str]:
    from rich.markup import escape

    where = escape(str(directory))
    hosts = f"{len(bundle.hosts)} host(s) of {bundle.inventory}" if bundle.hosts else f"the hosts of {bundle.inventory}"
    lines = [f"[green]✅ Wrote an Ansible bundle to {where}[/]: {len(bundle.models)} model(s) on {escape(hosts)}. "
             f"Run it with [bold]cd {where} && ansible-playbook {escape(bundle.playbook)}[/] (see {where}/README.md)"]
    for item in bundle.skipped:
        lines.append(f"[yellow]⏭️  {escape(item['model'])}: not run ({escape(item['reason'])})[/]")
    lines += [f"[yellow]⚠️  {escape(note)}[/]" for note in bundle.notes]
    if bundle.credentials_required or bundle.secret_env:
        names = ", ".join(bundle.credentials_required + bundle.secret_env)
        lines.append(f"🔑 Secrets to give at run time (README.md tells how): {escape(names)}")
    return lines


@generate_app.command("k8s")
def k8s(
    ctx: typer.Context,
    manifest_file: ManifestFileOpt = DEFAULT_MANIFEST,
    execution_config: ExecConfigOpt = DEFAULT_EXEC_CONFIG,
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Kubernetes namespace.")] = "madengine",
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="Folder to write the manifests to.", file_okay=False)
    ] = Path("k8s"),
    mad_dir: MadDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Generate Kubernetes manifests (Namespace, ConfigMaps, one Job per model, kustomization, README).

    The manifest names the images; the execution config (optional: else the manifest's context and
    run options) the run context and options. Exit 0 when written, 4 for bad input (a missing or
    malformed file, a bad namespace, no model that can run).
    """
    set_verbose(verbose)
    from madengine import k8s as core
    from madengine.cli.render import export as render
    from madengine.manifest import load_manifest

    manifest = load_manifest(manifest_file)
    config, root = _execution_config(execution_config, _given(ctx, "execution_config"), manifest, mad_dir)
    bundle = core.render_k8s(manifest, config, namespace=namespace, mad_dir=root)
    core.write_bundle(bundle, output_dir)
    console.print(render.k8s_table(bundle))
    for note in render.k8s_notes(bundle, output_dir):
        err_console.print(note, highlight=False, soft_wrap=True)


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given (command line or environment), not left at its default."""
    source = ctx.get_parameter_source(name)  # Typer's own (vendored) Click: compare by name
    return source is not None and source.name != "DEFAULT"


def _execution_config(path: Path, given: bool, manifest: Manifest,
                      mad_dir: Path | None) -> tuple[ExecutionConfig, Path]:
    """The execution config (``path``; the default one only if it exists, else the one the manifest
    implies) and the MAD package the generator reads. A given file must exist and be valid (exit 4)."""
    from madengine.execution_config import execution_config_from_manifest, load_execution_config

    if given or path.is_file():
        config = load_execution_config(path)
        return config, _mad_dir(mad_dir, manifest.mad_dir, config.mad_dir)
    root = _mad_dir(mad_dir, manifest.mad_dir)
    return execution_config_from_manifest(manifest, root), root


@generate_app.command("slurm")
def slurm(
    manifest_file: ManifestFileOpt = DEFAULT_MANIFEST,
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="Folder to write the SLURM bundle to.", file_okay=False)
    ] = Path("slurm"),
    mad_dir: MadDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Generate a SLURM bundle: submit.sh, one sbatch script per model, the executor, the manifest, a README.

    `bash DIR/submit.sh` submits the jobs with plain sbatch; results land under DIR/results/. Exit 0
    when written, 4 for bad input (a missing or malformed manifest).
    """
    set_verbose(verbose)
    from rich.markup import escape

    from madengine.execute.slurm import write_bundle
    from madengine.manifest import load_manifest

    manifest = load_manifest(manifest_file)
    root = _mad_dir(mad_dir, manifest.mad_dir)
    jobs = write_bundle(manifest, root, output_dir)
    console.print(str(output_dir / "submit.sh"), highlight=False, soft_wrap=True)
    err_console.print(f"[green]✅ Wrote a SLURM bundle to {escape(str(output_dir))}[/]: {len(jobs)} job script(s). "
                      f"Submit with [bold]bash {escape(str(output_dir))}/submit.sh[/]", highlight=False, soft_wrap=True)


def _mad_dir(given: Path | None, *recorded: str) -> Path:
    """The MAD package the model scripts come from: --mad-dir (or $MAD_DIR/$MODEL_DIR), else the one
    the manifest (or execution config) was made from if it still exists, else the current directory."""
    import os

    from madengine.discover import resolve_mad_dir

    if given is not None or os.environ.get("MAD_DIR") or os.environ.get("MODEL_DIR"):
        return resolve_mad_dir(given)
    for path in recorded:
        if path and ((Path(path) / "models.json").is_file() or (Path(path) / "scripts").is_dir()):
            return resolve_mad_dir(path)
    return resolve_mad_dir(None)
