"""`madengine-cli build`: build the selected models' images and write build_manifest.json."""

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
    from madengine.build_settings import BuildRequest

TargetArchsOpt = Annotated[
    list[str] | None,
    typer.Option("--target-archs", "-a", metavar="ARCH",
                 help="Build each image once per GPU architecture (repeatable; commas split), as "
                      "ci-<model>_<dockerfile>_<arch> with build arg MAD_SYSTEM_GPU_ARCHITECTURE=<arch>. "
                      "Off when the context sets docker_build_arg MAD_SYSTEM_GPU_ARCHITECTURE."),
]
UseImageOpt = Annotated[
    str | None,
    typer.Option("--use-image", metavar="IMAGE|auto",
                 help="Build nothing: every model runs in IMAGE (auto: the card's env_vars DOCKER_IMAGE_NAME). "
                      "The context key MAD_CONTAINER_IMAGE does the same."),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show the plan (cards, Dockerfiles, contexts, build args, image "
                                         "names, shared builds) without building; no manifest is written.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="With --dry-run: print the plan as JSON, nothing else.")]


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
    target_archs: TargetArchsOpt = None,
    use_image: UseImageOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    mad_dir: MadDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Build Docker images for the selected models and write build_manifest.json.

    Exit 0 when every model built (and pushed), 2 when a build or push failed (the rest are still built
    and recorded), 4 for bad input (missing context, unknown tag, malformed files). --dry-run exits
    2 when a model would fail (no Dockerfile, missing credential), else 0.
    """
    set_verbose(verbose)
    from madengine.build import CONTAINER_IMAGE_KEY
    from madengine.context import parse_context, require_build_context
    from madengine.errors import InvalidInputError

    context = parse_context(additional_context, additional_context_file)
    if as_json and not dry_run:
        raise InvalidInputError("--json needs --dry-run", hint="build --dry-run --json prints the plan as JSON",
                                example="madengine build --tags all --dry-run --json")
    if not (use_image or context.get(CONTAINER_IMAGE_KEY)):
        require_build_context(context, "build")  # a ready image needs no Dockerfile choice
    archs = [a.strip() for value in target_archs or [] for a in value.split(",") if a.strip()]
    if dry_run:
        code = _dry_run(tags=tags, registry=registry, context=context, mad_dir=mad_dir, target_archs=archs,
                        use_image=use_image, ignore_deprecated=ignore_deprecated, as_json=as_json,
                        clean_docker_cache=clean_docker_cache)
        if code:
            raise typer.Exit(code)
        return
    from madengine.build_settings import BuildRequest

    result, _ = execute_build(BuildRequest(
        tags=tags, registry=registry, context=context, clean_docker_cache=clean_docker_cache,
        manifest_output=manifest_output, summary_output=summary_output, output=output,
        ignore_deprecated=ignore_deprecated, data_config=data_config, tools_config=tools_config,
        sys_env_details=sys_env_details, force_mirror_local=force_mirror_local,
        disable_skip_gpu_arch=disable_skip_gpu_arch, jobs=jobs, mad_dir=mad_dir, target_archs=archs,
        use_image=use_image), live_output=live_output)
    if result.exit_code:
        raise typer.Exit(int(result.exit_code))


def _dry_run(*, tags: list[str] | None, registry: str | None, context: dict[str, Any], mad_dir: Path | None,
             target_archs: list[str], use_image: str | None, ignore_deprecated: bool, as_json: bool,
             clean_docker_cache: bool) -> int:
    """`build --dry-run`: the plan, as a table (stdout) and warnings (stderr), or as JSON."""
    import json
    import sys

    from madengine import build as core
    from madengine.build_settings import BuildRequest, build_options

    models, options = build_options(BuildRequest(
        tags=tags, registry=registry, context=context, mad_dir=mad_dir, target_archs=target_archs,
        use_image=use_image, ignore_deprecated=ignore_deprecated, clean_docker_cache=clean_docker_cache))
    plan, summary = core.dry_run(models, options)
    code = 2 if plan.failures else 0
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return code
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"Build plan: {summary['cards']} card(s), {summary['docker_builds']} docker build(s)")
    for column in ("models", "image (per-model tags)", "dockerfile", "context", "build args"):
        table.add_column(column, overflow="fold")
    for image in summary["images"]:
        args = " ".join(f"{k}={v}" for k, v in (image.get("build_args") or {}).items())
        tags_text = "\n".join(image["tags"]) if not image["prebuilt"] else f"{image['docker_image']} (ready image)"
        table.add_row("\n".join(image["models"]), tags_text, image.get("dockerfile", "-"),
                      image.get("context", "-"), args or "-")
    for failure in summary["failures"]:
        table.add_row(failure["model"], "-", failure["dockerfile"] or "-", "-", "❌ " + failure["error"])
    for skipped in summary["skipped"]:
        table.add_row(skipped["model"], "-", "-", "-", "⏭️ " + skipped["reason"])
    console.print(table)
    for warning in summary["warnings"]:
        err_console.print(Text("⚠️  " + warning, style="yellow"), soft_wrap=True)
    return code


def execute_build(request: BuildRequest, *, live_output: bool) -> tuple[BuildResult, Path]:
    """Discover, build and render; shared by `build` and the full workflow of `run` (``for_run``: missing
    context keys are detected from the host instead of being required)."""
    from ansible_collections.mad.engine.plugins.module_utils._secrets import mask_secrets

    from madengine import build as core  # lazy: keeps docker out of --help
    from madengine.build_settings import build_options
    from madengine.cli.render import build as render
    from madengine.cli.render import common
    from madengine.tags import split_tags

    models, options = build_options(request)
    settings = {"tags": ", ".join(split_tags(request.tags or [])) or "all", "models": len(models),
                "mad_dir": options.mad_dir, "registry": options.registry or "-", "jobs": options.jobs,
                "clean cache": "yes" if options.clean_docker_cache else "no", "manifest": options.manifest_output}
    if options.summary_output:
        settings["summary"] = options.summary_output
    err_console.print(common.config_panel("Build configuration", settings, mask_secrets(options.context)))
    with render.BuildDisplay(console, err_console, live_output=live_output) as display:
        result = core.build_models(models, options, progress=display)
    console.print(render.summary_table(result))
    for note in render.notes(result):
        err_console.print(note, highlight=False, soft_wrap=True)
    return result, result.manifest_path
