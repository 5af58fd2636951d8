"""`madengine.compare` and `madengine-cli compare` on crafted baselines: directions, noise bands, statuses,
per-model thresholds, `run --baseline`'s relative_change, output formats and exit codes 0/5/4."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from madengine import compare as core
from madengine.cli.app import app, invoke
from madengine.cli.render import compare as render
from madengine.errors import ExitCode, InvalidInputError
from madengine.results import PerfCsv

REPO = Path(__file__).resolve().parents[2]


def row(model: str, performance: str | float = "", metric: str = "samples_per_second", *, host: str = "node1",
        status: str = "SUCCESS", reason: str = "") -> dict[str, str]:
    return {"model": model, "host": host, "performance": str(performance), "metric": metric, "status": status,
            "reason": reason, "test_duration": "10", "run_id": "r1"}


def one(current, baseline, **kw) -> core.Comparison:
    result = core.compare_rows(current, baseline, **kw)
    assert len(result.entries) == 1, result.entries
    return result.entries[0]


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    PerfCsv(path).append(rows)
    return path


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = invoke(app, list(args), "madengine-cli")
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------- direction


@pytest.mark.parametrize(("metric", "direction"), [
    ("samples_per_second", "higher"), ("tokens/s", "higher"), ("it/s", "higher"), ("throughput", "higher"),
    ("tflops", "higher"), ("images_per_sec", "higher"), ("", "higher"),
    ("latency_ms", "lower"), ("p99_latency", "lower"), ("latency", "lower"), ("seconds", "lower"),
    ("time", "lower"), ("step_time", "lower"), ("duration_s", "lower"), ("time_to_first_token_ms", "lower"),
    ("seconds_per_step", "lower"), ("s/it", "lower"), ("Latency_MS", "lower"),
])
def test_metric_direction(metric, direction):
    assert core.metric_direction(metric) == direction


@pytest.mark.parametrize(("text", "fraction"), [("5%", 0.05), ("5", 0.05), (3, 0.03), ("0.5 %", 0.005),
                                                ("12.5%", 0.125), ("0", 0.0)])
def test_parse_threshold(text, fraction):
    assert core.parse_threshold(text) == pytest.approx(fraction)


@pytest.mark.parametrize("text", ["five", "-3%", "", "%", True, None, "5%%"])
def test_parse_threshold_rejects(text):
    with pytest.raises(InvalidInputError, match="--threshold"):
        core.parse_threshold(text)


# ---------------------------------------------------------------------------------------------- statuses


def test_higher_is_better_regression_improvement_unchanged():
    base = [row("m", 100)]
    regression = one([row("m", 90)], base)
    assert (regression.status, regression.direction) == ("REGRESSION", "higher")
    assert regression.relative_change == pytest.approx(-0.10)
    assert regression.change_text == "-10.00%"
    assert one([row("m", 96)], base).status == "UNCHANGED"
    assert one([row("m", 110)], base).status == "IMPROVEMENT"


def test_lower_is_better_regression_improvement():
    base = [row("m", 10, "latency_ms")]
    slower = one([row("m", 11, "latency_ms")], base)
    assert (slower.status, slower.direction, slower.change_text) == ("REGRESSION", "lower", "+10.00%")
    assert one([row("m", 9, "latency_ms")], base).status == "IMPROVEMENT"
    assert one([row("m", 10.4, "latency_ms")], base).status == "UNCHANGED"


def test_change_exactly_at_threshold_is_not_flagged():
    assert one([row("m", 95)], [row("m", 100)]).status == "UNCHANGED"
    assert one([row("m", 94.99)], [row("m", 100)]).status == "REGRESSION"


def test_threshold_argument_is_a_fraction():
    assert one([row("m", 90)], [row("m", 100)], threshold=0.15).status == "UNCHANGED"
    assert one([row("m", 98)], [row("m", 100)], threshold=0.01).status == "REGRESSION"


def test_repeated_runs_report_median_and_spread():
    entry = one([row("m", v) for v in (101, 99, 103)], [row("m", v) for v in (100, 90, 110, 105)])
    assert entry.current == core.Stats(n=3, median=101, min=99, max=103)
    assert entry.baseline == core.Stats(n=4, median=102.5, min=90, max=110)
    assert entry.relative_change == pytest.approx((101 - 102.5) / 102.5)


def test_noise_band_hides_changes_within_baseline_spread():
    noisy = [row("m", v) for v in (95, 100, 105)]
    # Median 93 is 7 % below the baseline median, but within min 95 widened by 5 % (90.25): noise.
    assert one([row("m", v) for v in (92, 93, 94)], noisy).status == "UNCHANGED"
    # Median 89 is below the widened band: a real regression.
    assert one([row("m", v) for v in (88, 89, 99)], noisy).status == "REGRESSION"
    # Above max 105 widened (110.25): an improvement.
    assert one([row("m", v) for v in (111, 112)], noisy).status == "IMPROVEMENT"


def test_noise_band_for_lower_is_better():
    noisy = [row("m", v, "latency_ms") for v in (10, 12)]
    assert one([row("m", 12.5, "latency_ms")], noisy).status == "UNCHANGED"  # <= 12 * 1.05
    assert one([row("m", 12.7, "latency_ms")], noisy).status == "REGRESSION"
    assert one([row("m", 9.4, "latency_ms")], noisy).status == "IMPROVEMENT"  # < 10 * 0.95


def test_new_and_missing():
    result = core.compare_rows([row("a", 1), row("new", 5)], [row("a", 1), row("gone", 7)])
    by_model = {e.model: e for e in result.entries}
    assert by_model["new"].status == "NEW" and by_model["new"].baseline is None
    assert by_model["gone"].status == "MISSING" and by_model["gone"].current is None
    assert by_model["gone"].reason == "no row in the current results"
    assert by_model["a"].status == "UNCHANGED"
    assert [e.model for e in result.entries] == ["a", "gone", "new"]


def test_missing_because_skipped_keeps_the_skip_reason():
    current = [row("m", "", "", status="SKIPPED", reason="skipped on gfx942")]
    entry = one(current, [row("m", 50)])
    assert (entry.status, entry.reason) == ("MISSING", "skipped on gfx942")


def test_failed_current_row_without_metric_is_failed_against_the_baseline_metric():
    current = [row("m", "", "", status="FAILURE", reason="container exited 137")]
    entry = one(current, [row("m", 50, "tokens_per_second")])
    assert (entry.status, entry.metric, entry.failures, entry.reason) == (
        "FAILED", "tokens_per_second", 1, "container exited 137")
    assert entry.baseline is not None and entry.current is None


def test_failed_model_without_baseline_is_still_reported():
    entry = one([row("m", "", "", status="FAILURE", reason="boom")], [])
    assert (entry.status, entry.metric, entry.reason) == ("FAILED", "", "boom")


def test_unknown_status_counts_as_a_failure():
    assert one([row("m", "", "", status="TIMEOUT")], [row("m", 1)]).status == "FAILED"


def test_partial_failure_still_compares_the_successful_runs():
    current = [row("m", 100), row("m", "", "", status="FAILURE", reason="flaky")]
    entry = one(current, [row("m", 100)])
    assert (entry.status, entry.failures, entry.reason) == ("UNCHANGED", 1, "flaky")


def test_only_success_rows_are_measurements():
    baseline = [row("m", 100, status="FAILURE"), row("m", 5, status="SKIPPED")]
    entry = one([row("m", 10)], baseline)
    assert entry.status == "NEW"


def test_hosts_are_matched_or_pooled():
    current = [row("m", 90, host="a"), row("m", 110, host="b")]
    baseline = [row("m", 100, host="a"), row("m", 100, host="b")]
    by_host = {e.host: e.status for e in core.compare_rows(current, baseline).entries}
    assert by_host == {"a": "REGRESSION", "b": "IMPROVEMENT"}
    pooled = one(current, baseline, match_host=False)
    assert (pooled.host, pooled.status, pooled.current.n) == ("", "UNCHANGED", 2)


def test_metrics_are_matched_separately():
    current = [row("m", 100, "samples_per_second"), row("m", 20, "latency_ms")]
    baseline = [row("m", 100, "samples_per_second"), row("m", 10, "latency_ms")]
    statuses = {e.metric: e.status for e in core.compare_rows(current, baseline).entries}
    assert statuses == {"samples_per_second": "UNCHANGED", "latency_ms": "REGRESSION"}


def test_zero_baseline_has_no_relative_change():
    entry = one([row("m", 1)], [row("m", 0)])
    assert entry.relative_change is None and entry.change_text == ""
    assert entry.status == "IMPROVEMENT"


def test_counts_and_to_dict():
    result = core.compare_rows([row("a", 50), row("n", 1)], [row("a", 100), row("g", 1)])
    assert result.counts() == {"REGRESSION": 1, "FAILED": 0, "MISSING": 1, "IMPROVEMENT": 0, "NEW": 1,
                               "UNCHANGED": 0}
    data = json.loads(json.dumps(result.to_dict()))
    assert data["regressions"] == 1
    assert data["entries"][0]["relative_change_text"] == "-50.00%"
    assert data["entries"][0]["baseline"] == {"n": 1, "median": 100.0, "min": 100.0, "max": 100.0}


# ---------------------------------------------------------------------------------------------- thresholds


def thresholds_file(tmp_path: Path, data) -> Path:
    path = tmp_path / "thresholds.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_per_model_threshold_and_direction(tmp_path):
    rules = core.load_thresholds(thresholds_file(tmp_path, {
        "default": {"threshold": "2%"},
        "loose": {"threshold": "15%"},
        "inverted": {"direction": "lower"},
        "metrics": {"tokens_per_second": {"threshold": "20%"}},
    }))
    current = [row("loose", 90), row("strict", 97), row("inverted", 110), row("llm", 85, "tokens_per_second")]
    baseline = [row("loose", 100), row("strict", 100), row("inverted", 100), row("llm", 100, "tokens_per_second")]
    by_model = {e.model: e for e in core.compare_rows(current, baseline, thresholds=rules).entries}
    assert (by_model["loose"].status, by_model["loose"].threshold) == ("UNCHANGED", 0.15)
    assert (by_model["strict"].status, by_model["strict"].threshold) == ("REGRESSION", 0.02)  # file default
    assert (by_model["inverted"].status, by_model["inverted"].direction) == ("REGRESSION", "lower")
    assert (by_model["llm"].status, by_model["llm"].threshold) == ("UNCHANGED", 0.20)


def test_cli_threshold_beats_file_default_but_not_model_entries(tmp_path):
    rules = core.load_thresholds(thresholds_file(tmp_path, {"default": {"threshold": "1%"},
                                                             "loose": {"threshold": "50%"}}))
    assert rules.resolve("other", "samples_per_second", 0.10) == (0.10, "higher")
    assert rules.resolve("other", "samples_per_second", None) == (0.01, "higher")
    assert rules.resolve("loose", "samples_per_second", 0.10) == (0.50, "higher")
    assert core.Thresholds().resolve("x", "latency_ms", None) == (0.05, "lower")


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ({"m": {"threshold": "3%", "dirction": "lower"}}, "unknown field 'dirction'"),
    ({"m": {"direction": "down"}}, "m.direction"),
    ({"m": {"threshold": "lots"}}, "m.threshold"),
    ({"m": "3%"}, "must be an object"),
    ({"metrics": {"latency_ms": {"threshold": -1}}}, "metrics.latency_ms.threshold"),
])
def test_bad_thresholds_file_names_file_and_field(tmp_path, content, message):
    path = thresholds_file(tmp_path, content)
    with pytest.raises(InvalidInputError, match=message) as info:
        core.load_thresholds(path)
    assert str(path) in info.value.message


def test_missing_thresholds_file(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        core.load_thresholds(tmp_path / "nope.json")


# ---------------------------------------------------------------------------------------------- apply_baseline


def test_apply_baseline_fills_relative_change():
    rows = [row("m", 103.21), row("m", "", "", status="FAILURE"), row("new", 5), row("z", 3)]
    baseline = [row("m", 99), row("m", 100), row("m", 101), row("z", 0)]
    filled = core.apply_baseline(rows, baseline)
    assert [r["relative_change"] for r in filled] == ["+3.21%", "", "", ""]
    assert "relative_change" not in rows[0]  # copies; the input is untouched
    assert filled[0]["model"] == "m" and filled[0]["performance"] == "103.21"


def test_apply_baseline_matches_host_unless_told_not_to():
    rows = [row("m", 110, host="b")]
    baseline = [row("m", 100, host="a")]
    assert core.apply_baseline(rows, baseline)[0]["relative_change"] == ""
    assert core.apply_baseline(rows, baseline, match_host=False)[0]["relative_change"] == "+10.00%"


def test_apply_baseline_keeps_rows_that_already_have_the_column():
    rows = [{**row("m", 90), "relative_change": ""}]
    assert core.apply_baseline(rows, [row("m", 100)])[0]["relative_change"] == "-10.00%"


# ---------------------------------------------------------------------------------------------- input


def test_load_perf_rows_errors_name_file_and_field(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        core.load_perf_rows(tmp_path / "nope.csv", "Baseline")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InvalidInputError, match="empty"):
        core.load_perf_rows(empty)
    no_metric = tmp_path / "no_metric.csv"
    no_metric.write_text("model,performance,status\nm,1,SUCCESS\n")
    with pytest.raises(InvalidInputError, match="'metric' column") as info:
        core.load_perf_rows(no_metric, "Current")
    assert str(no_metric) in info.value.message
    bad = write_csv(tmp_path / "bad.csv", [row("ok", 1), row("m", "fast")])
    with pytest.raises(InvalidInputError, match=r"row 2 \(model 'm'\): performance 'fast' is not a number"):
        core.load_perf_rows(bad)
    header_only = tmp_path / "header.csv"
    header_only.write_text("model,host,performance,metric,status\n")
    assert core.load_perf_rows(header_only) == []


def test_load_perf_rows_accepts_thousands_separators(tmp_path):
    path = write_csv(tmp_path / "p.csv", [row("m", "1,234.5")])
    entry = core.compare_rows(core.load_perf_rows(path), []).entries[0]
    assert entry.current.median == 1234.5


# ---------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def csvs(tmp_path):
    baseline = write_csv(tmp_path / "baseline.csv", [
        row("resnet50", 1000), row("bert", 20, "latency_ms"), row("gone", 5)])
    good = write_csv(tmp_path / "good.csv", [
        row("resnet50", 1010), row("bert", 19, "latency_ms"), row("gone", 5)])
    bad = write_csv(tmp_path / "bad.csv", [
        row("resnet50", 900), row("bert", 19, "latency_ms"), row("fresh|pipe", 3)])
    return baseline, good, bad


def test_cli_exit_0_without_regressions(capsys, csvs):
    baseline, good, _ = csvs
    code, out, _ = cli(capsys, "compare", str(good), "--baseline", str(baseline))
    assert code == ExitCode.OK == 0
    assert "No regressions" in out and "resnet50" in out


def test_cli_exit_5_on_regression(capsys, csvs):
    baseline, _, bad = csvs
    code, out, _ = cli(capsys, "compare", str(bad), "--baseline", str(baseline))
    assert code == ExitCode.REGRESSION == 5
    assert "REGRESSION" in out and "-10.00%" in out and "exit 5" in out


def test_cli_threshold_and_thresholds_file(capsys, csvs, tmp_path):
    baseline, _, bad = csvs
    assert cli(capsys, "compare", str(bad), "-b", str(baseline), "--threshold", "15%")[0] == 0
    rules = thresholds_file(tmp_path, {"resnet50": {"threshold": "12%"}})
    assert cli(capsys, "compare", str(bad), "-b", str(baseline), "--per-model-thresholds", str(rules))[0] == 0
    rules.write_text(json.dumps({"default": {"threshold": "20%"}}))
    assert cli(capsys, "compare", str(bad), "-b", str(baseline), "--per-model-thresholds", str(rules))[0] == 0
    # An explicit --threshold wins over the file's default.
    assert cli(capsys, "compare", str(bad), "-b", str(baseline), "--per-model-thresholds", str(rules),
               "--threshold", "5%")[0] == 5


def test_cli_json_is_pure_json(capsys, csvs):
    baseline, _, bad = csvs
    code, out, _ = cli(capsys, "compare", str(bad), "--baseline", str(baseline), "--format", "json")
    assert code == 5
    data = json.loads(out)
    assert data["regressions"] == 1
    assert data["counts"]["REGRESSION"] == 1 and data["counts"]["NEW"] == 1 and data["counts"]["MISSING"] == 1
    resnet = next(e for e in data["entries"] if e["model"] == "resnet50")
    assert resnet["relative_change"] == pytest.approx(-0.1)
    assert resnet["direction"] == "higher" and resnet["threshold"] == 0.05


def test_cli_markdown(capsys, csvs):
    baseline, _, bad = csvs
    code, out, _ = cli(capsys, "compare", str(bad), "--baseline", str(baseline), "--format", "markdown")
    assert code == 5
    assert out.startswith("### madengine compare: ❌ 1 regression beyond threshold")
    assert "| status | model | host | metric | better | baseline | current | change | threshold | note |" in out
    assert "| 🔻 REGRESSION | resnet50 | node1 | samples_per_second | higher | 1,000 | 900 | **-10.00%** |" in out
    assert "fresh\\|pipe" in out  # a | in a cell is escaped, so the table keeps its columns
    assert "❓ MISSING | gone" in out


def test_cli_no_match_host(capsys, tmp_path):
    baseline = write_csv(tmp_path / "b.csv", [row("m", 100, host="ci-1")])
    current = write_csv(tmp_path / "c.csv", [row("m", 80, host="laptop")])
    assert cli(capsys, "compare", str(current), "-b", str(baseline))[0] == 0  # NEW + MISSING only
    assert cli(capsys, "compare", str(current), "-b", str(baseline), "--no-match-host")[0] == 5


@pytest.mark.parametrize("args", [
    ["--baseline", "{tmp}/nope.csv"],
    ["--baseline", "{baseline}", "--threshold", "lots"],
    ["--baseline", "{baseline}", "--format", "xml"],
    ["--baseline", "{baseline}", "--per-model-thresholds", "{tmp}/nope.json"],
    [],  # --baseline is required
])
def test_cli_bad_input_exits_4(capsys, csvs, tmp_path, args):
    baseline, good, _ = csvs
    args = [a.format(tmp=tmp_path, baseline=baseline) for a in args]
    code, _, err = cli(capsys, "compare", str(good), *args)
    assert code == ExitCode.INVALID_INPUT == 4, err


def test_cli_bad_csv_names_the_file(capsys, csvs, tmp_path):
    baseline, _, _ = csvs
    broken = tmp_path / "broken.csv"
    broken.write_text("model,host,performance,metric,status\nm,h,quick,x,SUCCESS\n")
    code, _, err = cli(capsys, "compare", str(broken), "--baseline", str(baseline))
    assert code == 4
    assert "broken.csv" in err and "quick" in err


# ---------------------------------------------------------------------------------------------- rendering


def rendered(renderable, width: int = 100) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_table_fits_a_narrow_ci_log():
    current = [row("resnet50", 900), row("resnet50", 880), row("bert", 20, "latency_ms", host="node2"),
               row("llama", "", "", status="FAILURE", reason="container exited 137 (out of memory)")]
    baseline = [row("resnet50", 1000), row("bert", 18, "latency_ms", host="node2"), row("llama", 5)]
    text = rendered(render.compare_table(core.compare_rows(current, baseline)), width=80)
    assert all(len(line) <= 80 for line in text.splitlines())
    for expected in ("▼ REGRESSION", "-11.00%", "+11.11%", "890", "880–900 ×2", "✗ FAILED",
                     "llama @ node1 (failed): 1 failed run; container exited 137 (out of memory)",
                     "2 regressions beyond threshold (exit 5)"):
        assert expected in text, expected


def test_counts_text_and_single_host_legend():
    result = core.compare_rows([row("a", 1), row("b", 1)], [row("a", 1), row("b", 1)])
    assert render.counts_text(result) == "2 unchanged"
    assert "host node1" in rendered(render.compare_table(result))


def test_exit_code_5_is_documented():
    assert ExitCode(5) is ExitCode.REGRESSION
    readme = (REPO / "README.md").read_text()
    assert "| 5 | performance regression" in readme
