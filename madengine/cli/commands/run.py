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
    timeout: Annotated[int, typer.Option("--timeout", help="Per-model timeout in seconds (-1 default, 0 none).")]
    = -1,
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
    mad_dir: MadDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run models: execution-only from a valid manifest, or a full build → run workflow from tags."""
    set_verbose(verbose)
    from madengine.atomic import write_json_atomic
    from madengine.cli.commands.build import execute_build
    from madengine.cli.render import run as render
    from madengine.context import mask_secrets, parse_context
    from madengine.discover import resolve_mad_dir
    from madengine.execute.local import RunOptions, run_manifest
    from madengine.manifest import load_manifest
    from madengine.results import workflow_summary

    if timeout < -1:
        raise InvalidInputError(f"--timeout {timeout} is not allowed",
                                hint="use a number of seconds, 0 for no limit, or -1 for the default (7200 s)")
    if manifest_file is None and not tags and DEFAULT_MANIFEST.is_file():
        manifest_file = DEFAULT_MANIFEST
    if manifest_file is None and not tags:
        raise InvalidInputError("Nothing to run: give --tags (build then run) or --manifest-file (run only)",
                                example=RUN_EXAMPLE)
    context = parse_context(additional_context, additional_context_file)
    build_phase = None
    build_failed = False
    if manifest_file is None:
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
            return option if option.is_absolute() else root / option
        return Path(stored[key]) if Path(stored[key]).is_absolute() else root / stored[key]

    options = RunOptions(
        output=output, timeout=timeout, keep_alive=keep_alive, keep_model_dir=keep_model_dir,
        skip_model_run=skip_model_run,
        disable_skip_gpu_arch=disable_skip_gpu_arch or bool(stored.get("disable_skip_gpu_arch")),
        sys_env_details=sys_env_details and stored.get("sys_env_details", True) is not False,
        force_mirror_local=str(force_mirror_local) if force_mirror_local else stored.get("force_mirror_local"),
        data_config=pick(data_config, DEFAULT_DATA_CONFIG, "data_config"),
        tools_config=pick(tools_config, DEFAULT_TOOLS_CONFIG, "tools_config"),
        registry=registry, context=context)
    settings = {"manifest": manifest_file, "models": len(manifest.entries()), "mad_dir": root,
                "registry": registry or manifest.registry or "-",
                "timeout": "model default (7200 s)" if timeout == -1 else ("none" if timeout == 0 else f"{timeout} s"),
                "output": output, "run_id": options.run_id}
    err_console.print(render.config_panel("Run configuration", settings, mask_secrets({**manifest.context,
                                                                                        **context})))
    with render.RunDisplay(console, err_console, len(manifest.entries()), live_output=live_output) as display:
        report = run_manifest(manifest, options, root, listener=display)
    console.print(render.results_table(report))
    for note in render.keep_alive_notes(report):
        err_console.print(note, highlight=False)
    if summary_output:
        run_phase = report.summary.to_dict()
        payload = run_phase if build_phase is None else workflow_summary(build_phase, run_phase)
        write_json_atomic(summary_output, payload)
    if build_failed:
        raise typer.Exit(int(ExitCode.BUILD_FAILURE))
    if report.summary.failed_runs:
        raise typer.Exit(int(ExitCode.RUN_FAILURE))
