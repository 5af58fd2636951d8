"""`madengine-cli report`: write perf.csv (and an optional baseline comparison) as one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from madengine.cli.commands.compare import MatchHostOpt, PerModelThresholdsOpt, ThresholdOpt
from madengine.cli.console import console, set_verbose
from madengine.cli.options import VerboseOpt


def report(
    perf_csv: Annotated[Path, typer.Argument(metavar="PERF.csv", help="perf.csv to report on.", dir_okay=False)],
    baseline: Annotated[Path | None, typer.Option("--baseline", "-b", metavar="BASELINE.csv", dir_okay=False,
                                                  help="perf.csv to compare against; adds coloured deltas.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE", dir_okay=False,
                                         help="HTML file to write.")] = Path("report.html"),
    threshold: ThresholdOpt = None,
    per_model_thresholds: PerModelThresholdsOpt = None,
    match_host: MatchHostOpt = True,
    verbose: VerboseOpt = False,
) -> None:
    """Write an HTML report: summary, status counts, a sortable table, a bar chart, baseline deltas, log links.

    The file needs no network to view. Exit 0 when it was written, 4 for bad input (regressions are
    shown, not gated: use `compare` for that).
    """
    set_verbose(verbose)
    from madengine import compare as core
    from madengine import report as report_core
    from madengine.atomic import write_text_atomic
    from madengine.cli.render import compare as render

    limit = core.parse_threshold(threshold) if threshold is not None else None
    thresholds = core.load_thresholds(per_model_thresholds) if per_model_thresholds else None
    rows = core.load_perf_rows(perf_csv, "Results")
    baseline_rows = core.load_perf_rows(baseline, "Baseline") if baseline else None
    data = report_core.build_report(rows, csv_path=perf_csv, output_path=output, baseline_rows=baseline_rows,
                                    baseline_path=str(baseline or ""), threshold=limit, thresholds=thresholds,
                                    match_host=match_host)
    write_text_atomic(output, report_core.render_html(data))
    console.print(render.report_written(output, data), highlight=False)
