"""The HTML report in a real browser: Debian's headless `chromium` (installed by tests/infra/up.sh).

The page records script errors in ``<html data-js-errors>``, and its own script writes what it rendered into
``<body data-rows data-chart-bars data-ready>``; opened as ``report.html#selftest`` it also clicks a column
header and records the resulting order in ``data-selftest*``. ``--dump-dom`` prints the DOM after the
scripts ran, so these checks need no WebDriver or DevTools client.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from madengine.cli.app import app, invoke
from madengine.results import PerfCsv

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-default-apps", "--mute-audio",
                  "--enable-logging=stderr", "--v=0")
TIMEOUT = 120  # seconds; a cold chromium start takes about 1 s
HOSTS = ("mi300-a", "mi300-b", "mi300-c")
MODELS = {"pyt_resnet50_training": ("samples_per_second", 2450.0), "pyt_bert_large": ("samples_per_second", 610.0),
          "pyt_vllm_llama2_7b": ("tokens_per_second", 3120.0), "pyt_gpt2_inference": ("latency_ms", 12.4),
          'evil<script>alert("x")</script>': ("samples_per_second", 10.0)}


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed: run `bash tests/infra/up.sh` "
                    "(or `apt-get install -y chromium`)")
    return path


def run_chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


def row(model: str, host: str, performance: float | str, metric: str, run: str, status: str = "SUCCESS",
        reason: str = "") -> dict[str, str]:
    return {"model": model, "host": host, "performance": str(performance), "metric": metric, "status": status,
            "reason": reason, "test_duration": "42.5", "run_id": run, "gpu_architecture": "gfx942",
            "started_at": f"2026-11-28T10:{run[-1]}0:00+00:00", "docker_file": "docker/pyt.ubuntu.amd.Dockerfile"}


def factor(model: str, host: str) -> float:
    # The current run: bert on mi300-b is 15 % slower, gpt2's latency on mi300-a 20 % lower.
    return {("pyt_bert_large", "mi300-b"): 0.85, ("pyt_gpt2_inference", "mi300-a"): 0.8}.get((model, host), 1.0)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    """perf.csv (3 runs per model × host, one failure, one skip), a baseline, a log and the expected page."""
    root = tmp_path_factory.mktemp("report")
    current, baseline = [], []
    for m, (metric, value) in MODELS.items():
        for i, host in enumerate(HOSTS):
            for k, run in enumerate(("1", "2", "3")):
                noise = 1 + 0.004 * (k - 1)
                baseline.append(row(m, host, round(value * (1 + 0.03 * i) * noise, 2), metric, "b" + run))
                current.append(row(m, host, round(value * (1 + 0.03 * i) * noise * factor(m, host), 2), metric,
                                   "c" + run))
    current.append(row("pyt_megatron_gpt3", "mi300-a", "", "", "c1", "FAILURE", "container exited with code 137"))
    baseline.append(row("pyt_megatron_gpt3", "mi300-a", 88.5, "tflops", "b1"))
    current.append(row("tf_inception_v3", "mi300-c", "", "", "c1", "SKIPPED", "skipped on gfx942"))
    PerfCsv(root / "perf.csv").append(current)
    PerfCsv(root / "baseline.csv").append(baseline)
    (root / "pyt_resnet50_training_pyt.ubuntu.amd.run.live.log").write_text("performance: 2450 samples_per_second\n")
    measured = [(m, h) for m in MODELS for h in HOSTS]
    medians = {(m, h): MODELS[m][1] * (1 + 0.03 * HOSTS.index(h)) * factor(m, h) for m, h in measured}
    return {
        "dir": root,
        "rows": len(measured) + 2,  # every model × host, the failed model and the skipped one
        "bars": len(measured),
        # the model names in ascending order of median performance (failed and skipped rows sort last)
        "ascending": [m for m, _ in sorted(measured, key=lambda k: medians[k])],
    }


def write_report(results: dict, name: str, *extra: str) -> Path:
    output = results["dir"] / name
    code = invoke(app, ["report", str(results["dir"] / "perf.csv"), "--output", str(output), *extra],
                  "madengine-cli")
    assert code == 0
    return output


class Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.attrs: dict[str, dict[str, str]] = {}
        self.table: str | None = None
        self.section: str | None = None
        self.results_rows = 0
        self.bars = 0
        self.scripts = 0
        self.log_links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        if tag in ("html", "body"):
            self.attrs[tag] = attributes
        elif tag == "table":
            self.table = attributes.get("id")
        elif tag == "tbody":
            self.section = "tbody"
        elif tag == "tr" and self.table == "results" and self.section == "tbody":
            self.results_rows += 1
        elif tag == "rect" and "bar" in attributes.get("class", "").split():
            self.bars += 1
        elif tag == "script":
            self.scripts += 1
        elif tag == "a" and self.table == "results":
            self.log_links.append(attributes.get("href", ""))

    def handle_endtag(self, tag):
        if tag == "table":
            self.table = None
        elif tag == "tbody":
            self.section = None


def load(chromium: str, page: Path, tmp_path: Path, fragment: str = "") -> tuple[Dom, str]:
    proc = run_chromium(chromium, tmp_path / "profile", "--dump-dom", page.as_uri() + fragment)
    dom = Dom()
    dom.feed(proc.stdout)
    assert "html" in dom.attrs and "body" in dom.attrs, proc.stdout[:2000]
    return dom, proc.stderr


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]


def test_report_renders_sorts_and_has_no_script_errors(chromium, results, tmp_path):
    page = write_report(results, "report.html", "--baseline", str(results["dir"] / "baseline.csv"))
    dom, stderr = load(chromium, page, tmp_path, "#selftest")
    html, body = dom.attrs["html"], dom.attrs["body"]
    assert html.get("data-js-errors") == "0", html.get("data-js-error-last")
    assert not console_errors(stderr), console_errors(stderr)
    assert body.get("data-ready") == "1"
    assert int(body["data-rows"]) == dom.results_rows == results["rows"]
    assert int(body["data-chart-bars"]) == dom.bars == results["bars"]
    assert body.get("data-selftest") == "pass"
    order = json.loads(body["data-selftest-order"])
    assert order[: results["bars"]] == results["ascending"]
    assert sorted(order[results["bars"]:]) == ["pyt_megatron_gpt3", "tf_inception_v3"]
    values = json.loads(body["data-selftest-values"])
    measured = values[: results["bars"]]
    assert measured == sorted(measured) and values[results["bars"]:] == [None, None]
    # The hostile model name is text, not a script: only our two inline scripts exist.
    assert dom.scripts == 2
    assert 'evil&lt;script&gt;alert("x")&lt;/script&gt;' in page.read_text().replace("&#34;", '"')
    assert dom.log_links == ["pyt_resnet50_training_pyt.ubuntu.amd.run.live.log"] * 3


def test_report_without_baseline_and_empty_report(chromium, results, tmp_path):
    page = write_report(results, "plain.html")
    dom, stderr = load(chromium, page, tmp_path, "#selftest")
    assert dom.attrs["html"].get("data-js-errors") == "0", dom.attrs["html"].get("data-js-error-last")
    assert dom.attrs["body"]["data-selftest"] == "pass"
    assert int(dom.attrs["body"]["data-rows"]) == results["rows"]

    empty_csv = results["dir"] / "empty.csv"
    empty_csv.write_text("model,host,performance,metric,status\n")
    empty = results["dir"] / "empty.html"
    assert invoke(app, ["report", str(empty_csv), "-o", str(empty)], "madengine-cli") == 0
    dom, stderr = load(chromium, empty, tmp_path)
    assert dom.attrs["html"].get("data-js-errors") == "0", dom.attrs["html"].get("data-js-error-last")
    assert (dom.attrs["body"]["data-rows"], dom.attrs["body"]["data-chart-bars"]) == ("0", "0")
    assert not console_errors(stderr)


def test_error_recorder_catches_a_broken_script(chromium, results, tmp_path):
    """The harness itself: a page whose script throws must not pass as error-free."""
    page = write_report(results, "broken.html")
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace("</body>", "<script>undefinedFunction();</script></body>"))
    dom, _ = load(chromium, broken, tmp_path)
    assert dom.attrs["html"].get("data-js-errors") == "1"
    assert "undefinedFunction" in dom.attrs["html"].get("data-js-error-last", "")


def png_pixels(path: Path) -> tuple[int, int, set[bytes]]:
    """Width, height and the set of distinct pixels of an 8-bit RGB(A) PNG (stdlib only)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = depth = color = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert depth == 8 and color in (2, 6), (depth, color)
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    previous, pixels = bytearray(stride), set()
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        if y % 4 == 0:  # sample every 4th row: plenty to tell a page from a blank one
            pixels.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp * 2))
        previous = line
    return width, height, pixels


def test_screenshot_is_not_blank(chromium, results, tmp_path):
    page = write_report(results, "shot.html", "--baseline", str(results["dir"] / "baseline.csv"))
    shot = tmp_path / "report.png"
    run_chromium(chromium, tmp_path / "profile", "--hide-scrollbars", "--window-size=1280,1600",
                 f"--screenshot={shot}", page.as_uri())
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (1280, 1600)
    # Text, bars in every host colour and status colours: far more than a handful of colours.
    assert len(pixels) > 200, len(pixels)
    for host_colour in ("4e79a7", "f28e2b", "59a14f"):
        assert bytes.fromhex(host_colour) in pixels, host_colour
    assert re.search(r"\d", page.read_text())
