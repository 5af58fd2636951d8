"""`madengine-cli build`: build the selected models' images and write build_manifest.json."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    ManifestOutputOpt,
    MirrorOpt,
    OutputCsvOpt,
    RegistryOpt,
    SummaryOpt,
    SysEnvOpt,
    TagsOpt,
    ToolsConfigOpt,
    VerboseOpt,
)

if TYPE_CHECKING:
    from madengine.build import BuildResult


def build(
    tags: TagsOpt = None,
    registry: RegistryOpt = None,
    additional_context: ContextOpt = None,
    additional_context_file: ContextFileOpt = None,
    clean_docker_cache: CleanCacheOpt = False,
    manifest_output: ManifestOutputOpt = DEFAULT_MANIFEST,
    summary_output: SummaryOpt = None,
    live_output: LiveOpt = False,
    output: OutputCsvOpt = DEFAULT_PERF_CSV,
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
    """Build Docker images for the selected models and write build_manifest.json.

    Exit 0 when every model built (and pushed), 2 when a build or push failed (the rest are still built
    and recorded), 4 for bad input (missing context, unknown tag, malformed files).
    """
    set_verbose(verbose)
    from madengine.context import parse_context, require_build_context

    context = parse_context(additional_context, additional_context_file)
    require_build_context(context, "build")
    result, _ = execute_build(
        tags=tags, registry=registry, context=context, clean_docker_cache=clean_docker_cache,
        manifest_output=manifest_output, summary_output=summary_output, live_output=live_output, output=output,
        ignore_deprecated=ignore_deprecated, data_config=data_config, tools_config=tools_config,
        sys_env_details=sys_env_details, force_mirror_local=force_mirror_local,
        disable_skip_gpu_arch=disable_skip_gpu_arch, jobs=jobs, mad_dir=mad_dir)
    if result.exit_code:
        raise typer.Exit(int(result.exit_code))


def execute_build(*, tags: list[str] | None, registry: str | None, context: dict[str, Any],
                  clean_docker_cache: bool, manifest_output: Path, summary_output: Path | None,
                  live_output: bool, output: Path, ignore_deprecated: bool, data_config: Path,
                  tools_config: Path, sys_env_details: bool, force_mirror_local: Path | None,
                  disable_skip_gpu_arch: bool, jobs: int, mad_dir: Path | None,
                  for_run: bool = False) -> tuple[BuildResult, Path]:
    """Discover, build and render; shared by `build` and the full workflow of `run`.

    For `run`, missing context keys are detected from the host instead of being required.
    """
    from ansible_collections.mad.engine.plugins.module_utils._secrets import mask_secrets

    from madengine import build as core  # lazy: keeps docker out of --help
    from madengine.cli.render import build as render
    from madengine.cli.render import common
    from madengine.context import resolve_run_context
    from madengine.discover import discover_models, resolve_mad_dir
    from madengine.tags import split_tags

    given = context
    if for_run:
        context = resolve_run_context(context)
    root = resolve_mad_dir(mad_dir)
    options = core.BuildOptions(
        mad_dir=root,
        context=context,
        registry=registry.strip() if registry and registry.strip() else None,
        clean_docker_cache=clean_docker_cache,
        manifest_output=manifest_output,
        summary_output=summary_output,
        ignore_deprecated=ignore_deprecated,
        jobs=jobs,
        detected_keys=frozenset(k for k, v in context.items() if given.get(k) != v),
        run_options=core.run_options(
            root, data_config=data_config, tools_config=tools_config,
            force_mirror_local=force_mirror_local, disable_skip_gpu_arch=disable_skip_gpu_arch,
            sys_env_details=sys_env_details, output=output,
            data_config_given=data_config != DEFAULT_DATA_CONFIG,
            tools_config_given=tools_config != DEFAULT_TOOLS_CONFIG),
    )
    models = discover_models(root, split_tags(tags or []))
    settings = {"tags": ", ".join(split_tags(tags or [])) or "all", "models": len(models), "mad_dir": root,
                "registry": options.registry or "-", "jobs": jobs, "clean cache": "yes" if clean_docker_cache else "no",
                "manifest": manifest_output}
    if summary_output:
        settings["summary"] = summary_output
    err_console.print(common.config_panel("Build configuration", settings, mask_secrets(context)))
    with render.BuildDisplay(console, err_console, live_output=live_output) as display:
        result = core.build_models(models, options, progress=display)
    console.print(render.summary_table(result))
    for note in render.notes(result):
        err_console.print(note, highlight=False, soft_wrap=True)
    return result, result.manifest_path
