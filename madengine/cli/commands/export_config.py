"""`madengine-cli export-config`: write a self-describing execution config for other tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from madengine.cli.console import console, err_console, set_verbose
from madengine.cli.options import (
    DEFAULT_DATA_CONFIG,
    DEFAULT_EXEC_CONFIG,
    DEFAULT_TOOLS_CONFIG,
    ContextFileOpt,
    ContextOpt,
    DataConfigOpt,
    DisableSkipArchOpt,
    IgnoreDeprecatedOpt,
    MadDirOpt,
    MirrorOpt,
    SysEnvOpt,
    TagsOpt,
    ToolsConfigOpt,
    VerboseOpt,
)


def export_config(
    tags: TagsOpt = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Execution config file to write.", dir_okay=False, metavar="FILE")
    ] = DEFAULT_EXEC_CONFIG,
    additional_context: ContextOpt = None,
    additional_context_file: ContextFileOpt = None,
    ignore_deprecated: IgnoreDeprecatedOpt = False,
    data_config: DataConfigOpt = DEFAULT_DATA_CONFIG,
    tools_config: ToolsConfigOpt = DEFAULT_TOOLS_CONFIG,
    sys_env_details: SysEnvOpt = True,
    force_mirror_local: MirrorOpt = None,
    disable_skip_gpu_arch: DisableSkipArchOpt = False,
    mad_dir: MadDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Export the selected models' execution config (default: execution_config.json).

    Needs no GPU and no Docker. Exit 0 when written, 4 for bad input (missing gpu_vendor/guest_os,
    unknown tag, malformed files).
    """
    set_verbose(verbose)
    from madengine import execution_config as core
    from madengine.cli.render import export as render
    from madengine.context import parse_context, require_build_context
    from madengine.discover import discover_models, resolve_mad_dir
    from madengine.tags import split_tags

    context = parse_context(additional_context, additional_context_file)
    require_build_context(context, "export-config")
    root = resolve_mad_dir(mad_dir)
    tag_list = split_tags(tags or [])
    models = discover_models(root, tag_list)
    options = core.ExportOptions(
        mad_dir=root, data_config=data_config, tools_config=tools_config,
        data_config_given=data_config != DEFAULT_DATA_CONFIG, tools_config_given=tools_config != DEFAULT_TOOLS_CONFIG,
        ignore_deprecated=ignore_deprecated, sys_env_details=sys_env_details,
        force_mirror_local=force_mirror_local, disable_skip_gpu_arch=disable_skip_gpu_arch, tags=tag_list)
    result = core.build_execution_config(models, context, options)
    path = core.write_execution_config(output, result.config)
    console.print(render.export_table(result))
    for note in render.export_notes(result, path):
        err_console.print(note, highlight=False, soft_wrap=True)
