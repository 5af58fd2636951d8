"""`madengine.report` and `madengine-cli report`: the data behind the page, escaping, self-containment,
log links and exit codes. The page itself is checked in a real browser in
tests/integration/test_report_browser.py."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from madengine import report as core
from madengine.cli.app import app, invoke
from madengine.results import PerfCsv

EVIL = '<script>alert("x")</script>&"'


def row(model: str, performance: str | float = "", metric: str = "samples_per_second", *, host: str = "node1",
        status: str = "SUCCESS", reason: str = "", docker_file: str = "docker/dummy.ubuntu.Dockerfile",
        **extra: str) -> dict[str, str]:
    return {"model": model, "host": host, "performance": str(performance), "metric": metric, "status": status,
            "reason": reason, "test_duration": "12.5", "run_id": "r1", "started_at": "2026-11-28T10:00:00+00:00",
            "gpu_architecture": "gfx942", "docker_file": docker_file, **extra}


CURRENT = [row("resnet50", 900), row("resnet50", 920), row("resnet50", 1100, host="node2"),
           row("bert", 21, "latency_ms"), row("llama", "", "", status="FAILURE", reason="exited 137"),
           row("inception", "", "", status="SKIPPED", reason="skip_gpu_arch")]
BASELINE = [row("resnet50", 1000), row("resnet50", 1000, host="node2"), row("bert", 20, "latency_ms"),
            row("llama", 50, "tokens_per_second"), row("gone", 3)]


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside <script> and <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.inline: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag in ("script", "style"):
            self._in = tag

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in:
            self.inline.append(data)


def parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    return parser


def test_build_report_groups_counts_and_compares(tmp_path):
    report = core.build_report(CURRENT, csv_path=tmp_path / "perf.csv", output_path=tmp_path / "r.html",
                               baseline_rows=BASELINE, baseline_path="base.csv")
    keys = [(r.model, r.host, r.metric, r.status) for r in report.rows]
    assert keys == [
        ("bert", "node1", "latency_ms", "SUCCESS"),
        ("gone", "node1", "samples_per_second", "MISSING"),
        ("inception", "node1", "", "SKIPPED"),
        ("llama", "node1", "tokens_per_second", "FAILURE"),
        ("resnet50", "node1", "samples_per_second", "SUCCESS"),
        ("resnet50", "node2", "samples_per_second", "SUCCESS"),
    ]
    by_key = {(r.model, r.host): r for r in report.rows}
    resnet = by_key["resnet50", "node1"]
    assert (resnet.runs, resnet.current.median, resnet.compare_status, resnet.change_text) == (
        2, 910, "REGRESSION", "-9.00%")
    assert by_key["llama", "node1"].reason == "exited 137"
    assert by_key["inception", "node1"].comparison is None
    assert report.status_counts == {"SUCCESS": 4, "FAILURE": 1, "SKIPPED": 1}
    assert report.comparison.counts()["REGRESSION"] == 1
    s = report.summary
    assert (s.rows, s.models, s.hosts, s.run_ids, s.total_duration) == (6, 4, 2, ["r1"], 75.0)
    assert s.success_rate == pytest.approx(4 / 5)  # SKIPPED rows are not judged
    # One chart per metric; a bar per measured model × host.
    assert [(c.metric, len(c.bars)) for c in report.charts] == [("latency_ms", 1), ("samples_per_second", 2)]
    assert report.chart_bars == 3


def test_chart_geometry_is_inside_the_plot():
    report = core.build_report(CURRENT, csv_path="perf.csv", baseline_rows=BASELINE)
    for chart in report.charts:
        assert chart.ticks[0][1] == "0"
        for bar in chart.bars:
            assert chart.plot_left <= bar.x and bar.x + bar.width <= chart.plot_right + 0.01
            assert chart.plot_top <= bar.y and bar.y + bar.height <= chart.plot_bottom
            assert bar.baseline_x is not None
    resnet = next(c for c in report.charts if c.metric == "samples_per_second")
    assert [h for h, _ in resnet.legend] == ["node1", "node2"]
    assert resnet.bars[0].whisker is not None and resnet.bars[1].whisker is None  # 2 runs vs 1
    assert resnet.bars[0].change == "-9.00%" and resnet.bars[0].status == "REGRESSION"


def test_html_is_escaped_and_self_contained(tmp_path):
    rows = [row(EVIL, 5, host=EVIL, reason=EVIL), row("ok", "", "", status="FAILURE", reason=EVIL)]
    html = core.render_html(core.build_report(rows, csv_path=tmp_path / "perf.csv", baseline_rows=[row(EVIL, 4)]))
    page = parse(html)
    assert 'alert("x")</script>' not in html.replace('alert("x")</script>&amp;', "")
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;&#34;" in html
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert scripts == [{}, {}]  # the error recorder and the page script, both inline
    assert not [t for t, a in page.tags if t in ("link", "img", "iframe", "object", "embed")]
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "xlink:href"):
            assert not re.match(r"\s*(https?:|//|javascript:)", attrs.get(name, ""), re.I), (tag, attrs)
    inline = "\n".join(page.inline)
    assert not re.search(r"@import|url\(|fetch\(|XMLHttpRequest|https?://", inline)
    assert "default-src 'none'" in html  # the CSP forbids any load the page might try


def test_log_links_beside_the_csv_and_relative_to_the_output(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "resnet50_dummy.ubuntu.run.live.log").write_text("log")
    (results / "own.log").write_text("log")
    rows = [row("resnet50", 1), row("bert", 2), row("custom", 3, log_path="own.log"),
            row("dummy2/dummy_2", 4)]
    report = core.build_report(rows, csv_path=results / "perf.csv", output_path=tmp_path / "out" / "r.html")
    links = {r.model: [(link.href, link.label) for link in r.logs] for r in report.rows}
    assert links == {
        "bert": [],  # no such log
        "custom": [("../results/own.log", "own.log")],
        "dummy2/dummy_2": [],
        "resnet50": [("../results/resnet50_dummy.ubuntu.run.live.log", "resnet50_dummy.ubuntu.run.live.log")],
    }
    html = core.render_html(report)
    assert 'href="../results/resnet50_dummy.ubuntu.run.live.log"' in html


def test_log_hrefs_are_url_quoted(tmp_path):
    (tmp_path / "we ird#1?.log").write_text("log")
    report = core.build_report([row("m", 1, log_path="we ird#1?.log")], csv_path=tmp_path / "perf.csv",
                               output_path=tmp_path / "r.html")
    assert report.rows[0].logs[0].href == "we%20ird%231%3F.log"


def test_empty_results_still_render(tmp_path):
    html = core.render_html(core.build_report([], csv_path=tmp_path / "perf.csv"))
    assert "No results in" in html and "No successful measurements to chart" in html


def test_without_baseline_there_are_no_baseline_columns(tmp_path):
    report = core.build_report(CURRENT, csv_path=tmp_path / "perf.csv")
    assert report.comparison is None and all(r.comparison is None for r in report.rows)
    html = core.render_html(report)
    assert "vs baseline" not in html and "Baseline</button>" not in html
    assert [r.status for r in report.rows if r.model == "llama"] == ["FAILURE"]


# ---------------------------------------------------------------------------------------------- CLI


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = invoke(app, list(args), "madengine-cli")
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_the_report(capsys, tmp_path):
    perf, base = tmp_path / "perf.csv", tmp_path / "base.csv"
    PerfCsv(perf).append(CURRENT)
    PerfCsv(base).append(BASELINE)
    out_file = tmp_path / "site" / "report.html"
    code, out, err = cli(capsys, "report", str(perf), "--baseline", str(base), "--output", str(out_file))
    assert code == 0, err
    html = out_file.read_text()
    assert html.startswith("<!DOCTYPE html>") and "REGRESSION" in html
    assert "Wrote" in out and "1 regression" in out


def test_cli_default_output_is_report_html(capsys, tmp_path, monkeypatch):
    perf = tmp_path / "perf.csv"
    PerfCsv(perf).append(CURRENT)
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "report", "perf.csv")[0] == 0
    assert (tmp_path / "report.html").is_file()


@pytest.mark.parametrize("extra", [["--baseline", "{tmp}/missing.csv"], ["--threshold", "x"]])
def test_cli_bad_input_exits_4(capsys, tmp_path, extra):
    perf = tmp_path / "perf.csv"
    PerfCsv(perf).append(CURRENT)
    code, _, err = cli(capsys, "report", str(perf), "-o", str(tmp_path / "r.html"),
                       *[e.format(tmp=tmp_path) for e in extra])
    assert code == 4, err
    assert not (tmp_path / "r.html").exists()


def test_cli_missing_csv_exits_4(capsys, tmp_path):
    code, _, err = cli(capsys, "report", str(tmp_path / "nope.csv"))
    assert code == 4
    assert "nope.csv" in err


def test_help_stays_light():
    import subprocess
    import sys

    probe = ("import sys; from madengine.cli.app import invoke, app; invoke(app, ['--help'], 'x');"
             "print('HEAVY=' + ','.join(m for m in ('jinja2', 'madengine.report', 'madengine.compare')"
             " if m in sys.modules), file=sys.stderr)")
    err = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent).stderr
    assert "HEAVY=\n" in err
