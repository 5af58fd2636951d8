"""`madengine-cli run`: run from a manifest, or build then run when only tags are given.

Workflow detection, in order: an explicit `--manifest-file` means execution only (it must be valid);
otherwise `--tags` means the full build → run workflow; otherwise an existing `build_manifest.json`
in the current directory is run; otherwise exit 4 with an example. A bad manifest never falls back to
a build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

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
from madengine.errors import ExitCode, InvalidInputError


def _config_path(option: Path, root: Path) -> Path:
    """A relative --data-config/--tools-config as the build resolves it: the current directory, then the
    MAD root."""
    if option.is_absolute() or (Path.cwd() / option).is_file():
        return option.absolute()
    return root / option


RUNS_DIR = Path("runs")
RUN_EXAMPLE = ("madengine-cli run --tags dummy\n"
               "madengine-cli run --manifest-file build_manifest.json")


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
    forks: Annotated[int, typer.Option("--forks", min=1, metavar="N", help="Hosts Ansible works on in parallel.")] = 5,
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
    from madengine.atomic import write_json_atomic
    from madengine.cli.commands.build import execute_build
    from madengine.cli.render import common
    from madengine.cli.render import run as render
    from madengine.context import mask_secrets, parse_context
    from madengine.discover import resolve_mad_dir
    from madengine.execute.local import RunOptions, run_manifest
    from madengine.manifest import load_manifest
    from madengine.results import workflow_summary

    if image_transfer not in (None, "registry", "copy"):
        raise InvalidInputError(f"--image-transfer {image_transfer!r} is not registry or copy")
    if timeout < -1:
        raise InvalidInputError(f"--timeout {timeout} is not allowed",
                                hint="use a number of seconds, 0 for no limit, or -1 for the default (7200 s)")
    context = parse_context(additional_context, additional_context_file)
    if execution_config is not None:
        from madengine.export import load_execution_config

        config = load_execution_config(execution_config)
        context = {**config.context, **context}
        stored_options = config.run_options
        if timeout == -1 and stored_options.get("timeout") not in (None, -1):
            timeout = int(stored_options["timeout"])
        keep_alive = keep_alive or bool(stored_options.get("keep_alive"))
    only = None
    run_id = None
    if resume and rerun_failed:
        raise InvalidInputError("--resume and --rerun-failed are exclusive")
    if resume or rerun_failed:
        from madengine.ledger import Ledger

        run_id = resume or rerun_failed
        previous = Ledger(RUNS_DIR, run_id).load().run
        args = previous.get("args") or {}
        manifest_file, mad_dir, output = Path(args["manifest_file"]), Path(args["mad_dir"]), Path(args["output"])
        tags = None
        timeout, keep_alive, keep_model_dir = args["timeout"], args["keep_alive"], args["keep_model_dir"]
        skip_model_run, disable_skip_gpu_arch = args["skip_model_run"], args["disable_skip_gpu_arch"]
        sys_env_details, registry = args["sys_env_details"], registry or args.get("registry")
        force_mirror_local = Path(args["force_mirror_local"]) if args.get("force_mirror_local") else None
        data_config, tools_config = Path(args["data_config"]), Path(args["tools_config"])
        context = {**(previous.get("context") or {}), **context}
        cluster_args = args.get("cluster")
        if cluster_args:
            inventory, distribute = Path(cluster_args["inventory"]), cluster_args["distribute"]
            limit, forks = cluster_args["limit"], cluster_args["forks"]
            insecure_skip_host_key_check = cluster_args["insecure_skip_host_key_check"]
            image_transfer = image_transfer or cluster_args.get("image_transfer")  # given now, it wins
        slurm_args = args.get("slurm")
        if slurm_args:
            slurm, partition = True, partition or slurm_args.get("partition")
            slurm_time = slurm_time or slurm_args.get("time")
            image_transfer = image_transfer or slurm_args.get("image_transfer")
    image_transfer = image_transfer or "registry"
    if manifest_file is None and not tags and DEFAULT_MANIFEST.is_file():
        manifest_file = DEFAULT_MANIFEST
    if manifest_file is None and not tags:
        raise InvalidInputError("Nothing to run: give --tags (build then run) or --manifest-file (run only)",
                                example=RUN_EXAMPLE)
    build_phase = None
    build_failed = False
    if manifest_file is None:
        if (inventory is not None or slurm) and not registry and image_transfer == "registry":
            raise InvalidInputError("A cluster run that builds first needs --registry, so the nodes can pull",
                                    hint="or --image-transfer copy, which ships docker save tarballs to the hosts",
                                    example="madengine-cli run --inventory cluster.yml --tags dummy "
                                            "--registry 127.0.0.1:5000")
        if inventory is None and not slurm:
            # A typo in a tool name or a pre/post script path fails now, not after the build.
            from madengine.execute.local import check_context

            build_root = resolve_mad_dir(mad_dir)
            check_context(context, _config_path(tools_config, build_root), build_root)
        render.phase_rule(err_console, "🔨 Build phase")
        build_result, manifest_file = execute_build(
            tags=tags, registry=registry, context=context, clean_docker_cache=clean_docker_cache,
            manifest_output=manifest_output, summary_output=None, live_output=live_output, output=output,
            ignore_deprecated=ignore_deprecated, data_config=data_config, tools_config=tools_config,
            sys_env_details=sys_env_details, force_mirror_local=force_mirror_local,
            disable_skip_gpu_arch=disable_skip_gpu_arch, jobs=jobs, mad_dir=mad_dir, for_run=True)
        build_phase = build_result.summary
        build_failed = bool(build_result.exit_code)
        render.phase_rule(err_console, "🚀 Run phase")
    manifest = load_manifest(manifest_file)
    root = resolve_mad_dir(mad_dir if mad_dir else (manifest.mad_dir or None))
    stored = manifest.run_options

    def pick(option: Path, default: Path, key: str) -> Path | None:
        if option != default or not stored.get(key):
            return _config_path(option, root)
        return Path(stored[key]) if Path(stored[key]).is_absolute() else root / stored[key]

    options = RunOptions(
        output=output, timeout=timeout, keep_alive=keep_alive, keep_model_dir=keep_model_dir,
        skip_model_run=skip_model_run,
        disable_skip_gpu_arch=disable_skip_gpu_arch or bool(stored.get("disable_skip_gpu_arch")),
        sys_env_details=sys_env_details and stored.get("sys_env_details", True) is not False,
        force_mirror_local=str(force_mirror_local) if force_mirror_local else stored.get("force_mirror_local"),
        data_config=pick(data_config, DEFAULT_DATA_CONFIG, "data_config"),
        tools_config=pick(tools_config, DEFAULT_TOOLS_CONFIG, "tools_config"),
        registry=registry, context=context, retries=retries, runs_dir=RUNS_DIR)
    if run_id:
        from madengine.ledger import Ledger, done_in_perf
        from madengine.results import read_rows

        options.run_id = run_id
        state = Ledger(RUNS_DIR, run_id).load()
        names = {entry.key: entry.model.name for entry in manifest.entries()}
        only = state.todo(failed_only=bool(rerun_failed)) - done_in_perf(read_rows(output), run_id, names)
        options.only = only
        if not only:
            err_console.print(f"✅ Nothing to re-run in {run_id}: every model already has its result.")
            return
    options.ledger_meta = {"args": {
        "manifest_file": str(Path(manifest_file).absolute()), "mad_dir": str(root),
        "output": str(Path(output).absolute()), "timeout": timeout, "keep_alive": keep_alive,
        "keep_model_dir": keep_model_dir, "skip_model_run": skip_model_run,
        "disable_skip_gpu_arch": options.disable_skip_gpu_arch, "sys_env_details": options.sys_env_details,
        "force_mirror_local": options.force_mirror_local, "registry": registry,
        "data_config": str(options.data_config), "tools_config": str(options.tools_config),
        "cluster": None if inventory is None else {
            "inventory": str(Path(inventory).absolute()), "distribute": distribute, "limit": limit,
            "forks": forks, "insecure_skip_host_key_check": insecure_skip_host_key_check,
            "image_transfer": image_transfer},
        "slurm": {"partition": partition, "time": slurm_time, "image_transfer": image_transfer} if slurm else None,
    }, "context": mask_secrets(context)}
    if baseline is not None:
        from madengine.compare import load_perf_rows

        options.baseline_rows = load_perf_rows(baseline, "Baseline")
    settings = {"manifest": manifest_file, "models": len(manifest.entries()), "mad_dir": root,
                "registry": registry or manifest.registry or "-",
                "timeout": "model default (7200 s)" if timeout == -1 else ("none" if timeout == 0 else f"{timeout} s"),
                "output": output, "summary": summary_output or "-", "run_id": options.run_id}
    if slurm:
        from madengine.execute.slurm import SlurmOptions, check_time, run_slurm

        slurm_flags = SlurmOptions(partition=partition, time=check_time(slurm_time, "--slurm-time")
                                   if slurm_time else None, image_transfer=image_transfer)
        settings.update(scheduler="slurm", partition=partition or "(default)", image_transfer=image_transfer)
    if inventory is not None:
        from madengine.execute.ansible import ClusterOptions, plan_cluster, run_cluster

        cluster = ClusterOptions(inventory=inventory, distribute=distribute, limit=limit, forks=forks,
                                 insecure_skip_host_key_check=insecure_skip_host_key_check,
                                 image_transfer=image_transfer)
        plan = plan_cluster(manifest, options, cluster)
        settings.update(inventory=inventory, hosts=", ".join(plan), distribute=distribute,
                        image_transfer=image_transfer)
        cells = sum(len(keys) for keys in plan.values())
    else:
        cells = len(manifest.entries())
    err_console.print(common.config_panel("Run configuration", settings, mask_secrets({**manifest.context,
                                                                                        **context})))
    try:
        with render.RunDisplay(console, err_console, cells, live_output=live_output) as display:
            if slurm:
                report = run_slurm(manifest, options, slurm_flags, root, listener=display)
            elif inventory is not None:
                report, evidence = run_cluster(manifest, options, cluster, root, listener=display)
                err_console.print(f"🗂  Ansible artifacts and fetched results: {evidence}", highlight=False)
            else:
                report = run_manifest(manifest, options, root, listener=display)
    except KeyboardInterrupt:
        # Typer would turn it into a silent exit 130; say what was kept.
        removed = "" if inventory is not None else " The running container was removed;"
        if slurm:
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
        console.print(common.workflow_table(workflow_summary(build_phase, run_phase)))
    for note in render.notes(report):
        err_console.print(note, highlight=False, soft_wrap=True)  # one line, ready to paste
    if summary_output:
        payload = run_phase if build_phase is None else workflow_summary(build_phase, run_phase)
        write_json_atomic(summary_output, payload)
    if build_failed:
        raise typer.Exit(int(ExitCode.BUILD_FAILURE))
    if report.summary.failed_runs:
        raise typer.Exit(int(ExitCode.RUN_FAILURE))
    if regressions:
        raise typer.Exit(int(ExitCode.REGRESSION))
