"""`madengine-cli export-config`: write a self-describing execution config for other tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from madengine.cli.console import set_verbose
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
from madengine.errors import NotImplementedYetError


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
    """Export the selected models' execution config (default: execution_config.json)."""
    set_verbose(verbose)
    raise NotImplementedYetError("`madengine-cli export-config` is not implemented yet")
