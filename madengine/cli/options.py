"""Option types shared by several commands, so each flag is spelled and explained once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from madengine.cli.completion import complete_tags
from madengine.run_settings import DEFAULT_DATA_CONFIG as DEFAULT_DATA_CONFIG  # re-exported: one definition
from madengine.run_settings import DEFAULT_MANIFEST as DEFAULT_MANIFEST
from madengine.run_settings import DEFAULT_TOOLS_CONFIG as DEFAULT_TOOLS_CONFIG

MadDirOpt = Annotated[
    Path | None,
    typer.Option("--mad-dir", metavar="DIR", envvar=["MAD_DIR", "MODEL_DIR"], show_envvar=True,
                 help="MAD package root, used in place (default: the current directory).",
                 file_okay=False),
]
TagsOpt = Annotated[
    list[str] | None,
    typer.Option("--tags", "-t", metavar="TAG", help="Model tags to select (repeatable; commas split too).",
                 autocompletion=complete_tags),
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Debug logging and full tracebacks.")
]
RegistryOpt = Annotated[
    str | None,
    typer.Option("--registry", "-r", metavar="HOST[:PORT]", help="Docker registry to push images to / pull from."),
]
ContextOpt = Annotated[
    str | None,
    typer.Option("--additional-context", "-c", metavar="JSON",
                 help="Additional context as a JSON string (wins over -f)."),
]
ContextFileOpt = Annotated[
    Path | None,
    typer.Option("--additional-context-file", "-f", help="File containing additional context JSON.",
                 dir_okay=False, metavar="FILE"),
]
CleanCacheOpt = Annotated[
    bool, typer.Option("--clean-docker-cache", help="Rebuild without Docker's cache and re-pull the base.")
]
SummaryOpt = Annotated[
    Path | None, typer.Option("--summary-output", "-s", help="Write a JSON summary to this file.",
                                 dir_okay=False, metavar="FILE")
]
LiveOpt = Annotated[bool, typer.Option("--live-output", "-l", help="Stream build/run logs in real time.")]
OutputCsvOpt = Annotated[
    Path, typer.Option("--output", "-o", help="Performance CSV to append results to.", dir_okay=False, metavar="FILE")
]
IgnoreDeprecatedOpt = Annotated[
    bool, typer.Option("--ignore-deprecated", help="Also build/run models marked deprecated.")
]
DataConfigOpt = Annotated[
    Path, typer.Option("--data-config", help="Data provider configuration file.", dir_okay=False, metavar="FILE")
]
ToolsConfigOpt = Annotated[
    Path, typer.Option("--tools-config", help="Tools configuration file.", dir_okay=False, metavar="FILE")
]
SysEnvOpt = Annotated[
    bool, typer.Option("--sys-env-details/--no-sys-env-details",
                       help="Collect a host environment snapshot per model run.")
]
MirrorOpt = Annotated[
    Path | None, typer.Option("--force-mirror-local", metavar="DIR", help="Mirror non-local data into PATH/<dataname>.",
                                 file_okay=False)
]
DisableSkipArchOpt = Annotated[
    bool, typer.Option("--disable-skip-gpu-arch", help="Run models even if they skip this GPU architecture.")
]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", metavar="N", min=1, help="Build this many images in parallel.")]
ManifestFileOpt = Annotated[
    Path, typer.Option("--manifest-file", "-m", help="Build manifest to read.", dir_okay=False, metavar="FILE")
]
ExecConfigOpt = Annotated[
    Path, typer.Option("--execution-config", "-e", dir_okay=False, metavar="FILE",
                       help="Execution config from export-config (if absent: the manifest's context and options).")
]

DEFAULT_PERF_CSV = Path("perf.csv")
DEFAULT_EXEC_CONFIG = Path("execution_config.json")
ManifestOutputOpt = Annotated[
    Path,
    typer.Option("--manifest-output", "-m", help="Where to write the build manifest.", dir_okay=False, metavar="FILE"),
]
# In `run`, -m belongs to --manifest-file, so the build-phase manifest output has no short form.
RunManifestOutputOpt = Annotated[
    Path, typer.Option("--manifest-output", help="Where a full workflow writes its build manifest.",
                       dir_okay=False, metavar="FILE")
]
