"""`madengine-cli run`: run from a manifest, or build then run when only tags are given.

Workflow detection, in order: an explicit `--manifest-file` means execution only (it must be valid);
otherwise `--tags` means the full build → run workflow; otherwise an existing `build_manifest.json`
in the current directory is run; otherwise exit 4 with an example. A bad manifest never falls back to
a build.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from madengine.cli.console import console, err_console, set_verbose
from madengine.cli.options import (
    DEFAULT_DATA_CONFIG,
    DEFAULT_MANIFEST,
    DEFAULT_PERF_CSV,
    DEFAULT_TOOLS_CONFIG,
    CleanCacheOpt,
    ContextFileOpt,
    ContextOpt,
    DataConfigOpt,
    DisableSkipArchOpt,
    IgnoreDeprecatedOpt,
    JobsOpt,
    LiveOpt,
    MadDirOpt,
    MirrorOpt,
    OutputCsvOpt,
    RegistryOpt,
    RunManifestOutputOpt,
    SummaryOpt,
    SysEnvOpt,
    TagsOpt,
    ToolsConfigOpt,
    VerboseOpt,
)
from madengine.errors import ExitCode

if TYPE_CHECKING:
    from madengine.run_settings import RunRequest


def run(
    tags: TagsOpt = None,
    manifest_file: Annotated[
        Path | None,
        typer.Option("--manifest-file", "-m", metavar="FILE", dir_okay=False,
                     help="Build manifest to run (execution only). [default: build_manifest.json]"),
    ] = None,
    registry: RegistryOpt = None,
    timeout: Annotated[
        int, typer.Option("--timeout", metavar="SECONDS", help="Per-model timeout in seconds (-1 default, 0 none).")
    ] = -1,
    keep_alive: Annotated[bool, typer.Option("--keep-alive", help="Leave containers running after the run.")]
    = False,
    keep_model_dir: Annotated[bool, typer.Option("--keep-model-dir", help="Keep run_directory after the run.")]
    = False,
    skip_model_run: Annotated[
        bool, typer.Option("--skip-model-run", help="Start containers and pre-scripts but skip the script.")
    ] = False,
    live_output: LiveOpt = False,
    additional_context: ContextOpt = None,
    additional_context_file: ContextFileOpt = None,
    summary_output: SummaryOpt = None,
    output: OutputCsvOpt = DEFAULT_PERF_CSV,
    clean_docker_cache: CleanCacheOpt = False,
    manifest_output: RunManifestOutputOpt = DEFAULT_MANIFEST,
    ignore_deprecated: IgnoreDeprecatedOpt = False,
    data_config: DataConfigOpt = DEFAULT_DATA_CONFIG,
    tools_config: ToolsConfigOpt = DEFAULT_TOOLS_CONFIG,
    sys_env_details: SysEnvOpt = True,
    force_mirror_local: MirrorOpt = None,
    disable_skip_gpu_arch: DisableSkipArchOpt = False,
    jobs: JobsOpt = 1,
    inventory: Annotated[
        Path | None,
        typer.Option("--inventory", "-i", metavar="FILE", dir_okay=False,
                     help="Ansible inventory: run on its hosts through the mad.engine collection."),
    ] = None,
    distribute: Annotated[
        str, typer.Option("--distribute", metavar="[replicate|shard]",
                          help="replicate: every host runs every model; shard: spread them.")
    ] = "replicate",
    limit: Annotated[str | None, typer.Option("--limit", metavar="PATTERN", help="Only these inventory hosts.")]
    = None,
    forks: Annotated[int | None, typer.Option(
        "--forks", min=1, metavar="N",
        help="Hosts Ansible works on in parallel (default: every target host, at most 64).")] = None,
    insecure_skip_host_key_check: Annotated[
        bool, typer.Option("--insecure-skip-host-key-check", help="Labs only: do not verify SSH host keys.")
    ] = False,
    image_transfer: Annotated[
        str | None, typer.Option("--image-transfer", metavar="[registry|copy]",
                          help="How hosts get images: registry (pull by digest; the default) or copy (docker save).")
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", min=0, metavar="N", help="Retry infrastructure failures (never model failures).")
    ] = 1,
    resume: Annotated[
        str | None, typer.Option("--resume", metavar="RUN_ID", help="Re-run what has no SUCCESS/SKIPPED row yet.")
    ] = None,
    rerun_failed: Annotated[
        str | None, typer.Option("--rerun-failed", metavar="RUN_ID", help="Re-run only the FAILURE rows of a run.")
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", metavar="FILE", dir_okay=False,
                                  help="Compare with this perf.csv at the end; fills relative_change.")
    ] = None,
    execution_config: Annotated[
        Path | None, typer.Option("--execution-config", "-e", metavar="FILE", dir_okay=False,
                                  help="Run options and context from madengine-cli export-config.")
    ] = None,
    cleanup_perf: Annotated[
        bool, typer.Option("--cleanup-perf", help="Remove intermediate perf files after the run "
                                                  "(keeps perf.csv and perf_super files).")
    ] = False,
    slurm: Annotated[bool, typer.Option("--slurm", help="Run each model as a SLURM batch job (sbatch).")] = False,
    partition: Annotated[str | None, typer.Option("--partition", metavar="P", help="SLURM partition.")] = None,
    slurm_time: Annotated[
        str | None, typer.Option("--slurm-time", metavar="HH:MM:SS",
                                 help="SLURM --time (default: card timeout + margin).")
    ] = None,
    mad_dir: MadDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run models: execution-only from a valid manifest, or a full build → run workflow from tags."""
    set_verbose(verbose)
    from madengine import run_settings as core
    from madengine.context import parse_context

    request = core.resolve_request(core.RunRequest(
        tags=tags, manifest_file=manifest_file, registry=registry, timeout=timeout, keep_alive=keep_alive,
        keep_model_dir=keep_model_dir, skip_model_run=skip_model_run,
        context=parse_context(additional_context, additional_context_file), output=output,
        data_config=data_config, tools_config=tools_config, sys_env_details=sys_env_details,
        force_mirror_local=force_mirror_local, disable_skip_gpu_arch=disable_skip_gpu_arch, inventory=inventory,
        distribute=distribute, limit=limit, forks=forks, insecure_skip_host_key_check=insecure_skip_host_key_check,
        image_transfer=image_transfer, slurm=slurm, partition=partition, slurm_time=slurm_time, retries=retries,
        resume=resume, rerun_failed=rerun_failed,
        execution_config=execution_config, mad_dir=mad_dir))
    _execute(request, summary_output=summary_output, baseline=baseline, live_output=live_output,
             cleanup_perf=cleanup_perf,
             build=dict(clean_docker_cache=clean_docker_cache, manifest_output=manifest_output,
                        ignore_deprecated=ignore_deprecated, jobs=jobs))


def _execute(req: RunRequest, *, summary_output: Path | None, baseline: Path | None, live_output: bool,
             cleanup_perf: bool, build: dict[str, Any]) -> None:
    """Build (the full workflow), run and render; exits with the documented code."""
    from ansible_collections.mad.engine.plugins.module_utils._runspec import describe_timeout
    from ansible_collections.mad.engine.plugins.module_utils._secrets import mask_secrets

    from madengine import run_settings as core
    from madengine.atomic import write_json_atomic
    from madengine.build_settings import BuildRequest
    from madengine.cli.commands.build import execute_build
    from madengine.cli.render import common
    from madengine.cli.render import run as render
    from madengine.discover import resolve_mad_dir
    from madengine.execute.local import run_manifest
    from madengine.manifest import load_manifest
    from madengine.results import workflow_summary

    output, context, inventory = req.output, req.context, req.inventory
    from madengine.results import PerfCsv

    PerfCsv(output).check_writable()  # exit 4 now, not after the build and the first model
    build_phase = None
    build_failed = False
    manifest_file = req.manifest_file
    if req.builds_first:
        if inventory is None and not req.slurm:
            # A typo in a tool name or a pre/post script path fails now, not after the build.
            from madengine.execute.local import check_context

            build_root = resolve_mad_dir(req.mad_dir)
            check_context(context, core.config_path(req.tools_config, build_root), build_root)
        render.phase_rule(err_console, "🔨 Build phase")
        build_result, manifest_file = execute_build(BuildRequest(
            tags=req.tags, registry=req.registry, context=context, output=output, data_config=req.data_config,
            tools_config=req.tools_config, sys_env_details=req.sys_env_details,
            force_mirror_local=req.force_mirror_local, disable_skip_gpu_arch=req.disable_skip_gpu_arch,
            mad_dir=req.mad_dir, for_run=True, **build), live_output=live_output)
        req.manifest_file = manifest_file
        build_phase = build_result.summary
        build_failed = bool(build_result.exit_code)
        render.phase_rule(err_console, "🚀 Run phase")
    manifest = load_manifest(manifest_file)
    root = resolve_mad_dir(req.mad_dir if req.mad_dir else (manifest.mad_dir or None))
    options = core.run_options(req, manifest, root)
    only = core.cells_to_rerun(req, manifest)
    if only is not None:
        options.only = only
        if not only:
            err_console.print(f"✅ Nothing to re-run in {req.run_id}: every model already has its result.")
            return
    if baseline is not None:
        from madengine.compare import load_perf_rows

        options.baseline_rows = load_perf_rows(baseline, "Baseline")
    settings = {"manifest": manifest_file, "models": len(manifest.entries()), "mad_dir": root,
                "registry": req.registry or manifest.registry or "-",
                "timeout": describe_timeout(req.timeout),
                "output": output, "summary": summary_output or "-", "run_id": options.run_id}
    if req.slurm:
        from madengine.execute.slurm import SlurmOptions, check_time, run_slurm

        slurm_flags = SlurmOptions(partition=req.partition, time=check_time(req.slurm_time, "--slurm-time")
                                   if req.slurm_time else None, image_transfer=req.image_transfer or "registry")
        settings.update(scheduler="slurm", partition=req.partition or "(default)",
                        image_transfer=slurm_flags.image_transfer)
    cluster = core.cluster_options(req)
    if cluster is not None:
        from madengine.execute.ansible import plan_cluster, run_cluster

        plan = plan_cluster(manifest, options, cluster)
        settings.update(inventory=inventory, hosts=", ".join(plan), distribute=cluster.distribute,
                        image_transfer=cluster.image_transfer)
        cells = sum(len(keys) for keys in plan.values())
    else:
        cells = len(manifest.entries())
    err_console.print(common.config_panel("Run configuration", settings, mask_secrets({**manifest.context,
                                                                                        **context})))
    try:
        with render.RunDisplay(console, err_console, cells, live_output=live_output) as display:
            if req.slurm:
                report = run_slurm(manifest, options, slurm_flags, root, listener=display)
            elif cluster is not None:
                report, evidence = run_cluster(manifest, options, cluster, root, listener=display)
                err_console.print(f"🗂  Ansible artifacts and fetched results: {evidence}", highlight=False)
            else:
                report = run_manifest(manifest, options, root, listener=display)
    except KeyboardInterrupt:
        from rich.markup import escape

        # Typer would turn it into a silent exit 130; say what was kept.
        removed = "" if inventory is not None else " The running container was removed;"
        if req.slurm:
            removed = " Every SLURM job of the run was cancelled (scancel);"
        err_console.print(f"[yellow]Interrupted.[/]{removed} rows of the models that finished are in "
                          f"{escape(str(output))}.", highlight=False)
        raise typer.Exit(130) from None
    console.print(render.results_table(report))
    regressions = 0
    if baseline is not None:
        from madengine.cli.render import compare as render_compare
        from madengine.compare import compare_rows

        result = compare_rows(report.rows, options.baseline_rows or [])
        result.current_path, result.baseline_path = str(output), str(baseline)
        console.print(render_compare.compare_table(result))
        regressions = len(result.regressions)
    run_phase = report.summary.to_dict()
    if build_phase is not None:  # a full workflow: the combined build → run summary
        console.print(common.workflow_table(workflow_summary(build_phase, run_phase), len(report.runs)))
    for note in render.notes(report):
        err_console.print(note, highlight=False, soft_wrap=True)  # one line, ready to paste
    if summary_output:
        payload = run_phase if build_phase is None else workflow_summary(build_phase, run_phase)
        write_json_atomic(summary_output, payload)
    if cleanup_perf:
        from rich.markup import escape

        from madengine.execute.local import cleanup_perf_files

        removed = cleanup_perf_files(options.output_dir, core.RUNS_DIR / options.run_id)
        err_console.print(f"🧹 --cleanup-perf: removed {len(removed)} intermediate perf file(s); "
                          f"{escape(str(output))} is kept.", highlight=False)
    if build_failed:
        raise typer.Exit(int(ExitCode.BUILD_FAILURE))
    if report.summary.failed_runs:
        raise typer.Exit(int(ExitCode.RUN_FAILURE))
    if regressions:
        raise typer.Exit(int(ExitCode.REGRESSION))
