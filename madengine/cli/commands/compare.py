"""`madengine-cli compare`: compare a perf.csv with a baseline and gate CI on regressions (exit 5)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from madengine.cli.console import console, set_verbose
from madengine.cli.options import VerboseOpt
from madengine.errors import ExitCode


class CompareFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


CurrentCsvArg = Annotated[
    Path, typer.Argument(metavar="CURRENT.csv", help="perf.csv with the results to judge.", dir_okay=False)
]
ThresholdOpt = Annotated[
    str | None,
    typer.Option("--threshold", metavar="PCT",
                 help="Allowed change before a result counts as a regression or improvement, e.g. 5% "
                      "(default: the thresholds file's \"default\", else 5%)."),
]
PerModelThresholdsOpt = Annotated[
    Path | None,
    typer.Option("--per-model-thresholds", metavar="FILE", dir_okay=False,
                 help='JSON: {"<model>": {"threshold": "3%", "direction": "lower"}, "default": {...}}.'),
]
MatchHostOpt = Annotated[
    bool, typer.Option("--match-host/--no-match-host",
                       help="Match rows by host too (off: pool every host's runs of a model).")
]


def compare(
    current: CurrentCsvArg,
    baseline: Annotated[Path, typer.Option("--baseline", "-b", metavar="BASELINE.csv", dir_okay=False,
                                           help="perf.csv to compare against.")],
    threshold: ThresholdOpt = None,
    per_model_thresholds: PerModelThresholdsOpt = None,
    output_format: Annotated[CompareFormat, typer.Option("--format", help="Output format.")] = CompareFormat.table,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json: pure JSON on stdout.")] = False,
    match_host: MatchHostOpt = True,
    verbose: VerboseOpt = False,
) -> None:
    """Compare results with a baseline by model, host and metric; flag regressions beyond the noise.

    Exit 0 when nothing regressed, 5 when any result regressed beyond its threshold, 4 for bad input.
    """
    set_verbose(verbose)
    from madengine import compare as core
    from madengine.cli.render import compare as render

    limit = core.parse_threshold(threshold) if threshold is not None else None
    result = core.compare_files(current, baseline, threshold=limit, thresholds_file=per_model_thresholds,
                                match_host=match_host)
    if as_json or output_format is CompareFormat.json:
        # Plain write, not console.print: Rich would wrap or highlight, and JSON must stay pure.
        typer.echo(json.dumps(result.to_dict(), indent=2))
    elif output_format is CompareFormat.markdown:
        typer.echo(render.compare_markdown(result), nl=False)
    else:
        console.print(render.compare_table(result))
    raise typer.Exit(int(ExitCode.REGRESSION if result.regressions else ExitCode.OK))
