"""Huge model output in linear time and bounded memory (issue 16 item 8): the live-line splitter, the
streaming performance parser and the whole log pump, on a 50 MB line and 100 MB of ``\\r`` progress.

The time limits are generous for a loaded 2-CPU machine; the quadratic code these replace took minutes.
"""

from __future__ import annotations

import random
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from ansible_collections.mad.engine.plugins.module_utils._container import (
    MAX_LINE_BYTES,
    LineSplitter,
    run_container,
)
from ansible_collections.mad.engine.plugins.module_utils._execute import _ScannedLog
from ansible_collections.mad.engine.plugins.module_utils._perf import (
    MAX_METRIC_LEN,
    SCAN_LINE_BYTES,
    PerfScanner,
    parse_performance,
)
from test__container import BODY, FakeEngine

CHUNK = 64 * 1024
MB = 1000 * 1000


def long_line(mb: int) -> Iterator[bytes]:
    """A `mb` MB line without a break in 64 KiB reads, then a performance line."""
    chunk = b"x" * CHUNK
    for _count in range(mb * MB // CHUNK):
        yield chunk
    yield b"\nperformance: 7 items_per_second\n"


def progress(mb: int) -> Iterator[bytes]:
    """`mb` MB of progress updates ending in a carriage return only, then a performance line."""
    block = "".join(f"progress {i:9d} %\r" for i in range(CHUNK // 20)).encode()
    for _count in range(mb * MB // len(block)):
        yield block
    yield b"performance: 7 items_per_second\n"


def timed(feed: Callable[[bytes], object], chunks: Iterator[bytes]) -> tuple[float, int]:
    """(seconds, peak traced bytes) to feed every chunk."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        for chunk in chunks:
            feed(chunk)
        return time.monotonic() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("source", "mb"), [(long_line, 50), (progress, 100)])
def test_line_splitter_is_linear_and_bounded(source: Callable[[int], Iterator[bytes]], mb: int) -> None:
    splitter = LineSplitter()
    lines: list[str] = []
    seconds, peak = timed(lambda data: lines.extend(splitter.feed(data)), source(mb))
    lines += splitter.flush()
    assert seconds < 10 and peak < 4 * MB, (seconds, peak)
    assert lines[-1] == "performance: 7 items_per_second"
    if source is long_line:
        dropped = mb * MB // CHUNK * CHUNK - MAX_LINE_BYTES
        assert lines[:-1] == ["x" * MAX_LINE_BYTES + f" … ({dropped} more bytes in the log)"]
    else:
        assert len(lines) == 1  # the progress states were overwritten, as on a terminal


@pytest.mark.parametrize(("source", "mb"), [(long_line, 50), (progress, 100)])
def test_perf_scanner_is_linear_and_bounded(source: Callable[[int], Iterator[bytes]], mb: int) -> None:
    scanner = PerfScanner()
    seconds, peak = timed(scanner.feed, source(mb))
    assert seconds < 10 and peak < 4 * MB, (seconds, peak)
    assert scanner.result() == (7.0, "items_per_second", "")


def test_the_log_pump_streams_a_50mb_line_in_bounded_memory(tmp_path) -> None:
    frames = [("stdout", chunk) for chunk in long_line(50)]  # the same 64 KiB object, 760 times
    engine = FakeEngine(frames)
    lines: list[str] = []
    with open(tmp_path / "log", "wb") as handle:
        log = _ScannedLog(handle)
        tracemalloc.start()
        start = time.monotonic()
        try:
            outcome = run_container(engine, BODY, "n1", log, timeout=60, on_line=lines.append)  # type: ignore[arg-type]
            seconds, peak = time.monotonic() - start, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert outcome.exit_code == 0 and outcome.error is None
    assert seconds < 15 and peak < 8 * MB, (seconds, peak)
    assert (tmp_path / "log").stat().st_size == sum(len(frame[1]) for frame in frames)
    assert log.scanner.result() == (7.0, "items_per_second", "") and lines[-1] == "performance: 7 items_per_second"


SAMPLES = [
    "", "no numbers", "performance: 12 x", "a\nperformance: 1 m\nperformance: 2 n\n", "performance: 3 x\r\nz",
    "performance: 1e400 x\nperformance: 5 y", "performance: 5 y\nperformance: 1e400 x",
    "performance: abc performance: 6 z", "performance: 14164/s, samples_per_second",
    "progress 1\rprogress 2\rperformance: 8 it/s\r", "x\x0bperformance: 9 q\x0cperformance: bad",
    "performance:12,34", "performance: 1,234.5 tokens", "péřformance: 3 x\nperformance: 4 é\n",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_perf_scanner_agrees_with_parse_performance_however_the_bytes_are_split(text: str) -> None:
    data = text.encode()
    rng = random.Random(text)
    for _count in range(20):
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 6))))
        scanner = PerfScanner()
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            scanner.feed(data[start:end])
        value, metric, problem = scanner.result()
        assert (value, metric) == parse_performance(text) and problem == "", cuts


def test_a_metric_too_long_for_a_row_is_a_problem_not_a_value() -> None:
    scanner = PerfScanner()
    scanner.feed(b"performance: 5 " + b"m" * (MAX_METRIC_LEN + 1) + b"\n")
    assert scanner.result() == (None, None, f"metric name of {MAX_METRIC_LEN + 1} characters (the limit is "
                                            f"{MAX_METRIC_LEN})")
    scanner = PerfScanner()
    for chunk in [b"performance: 5 "] + [b"m" * CHUNK] * 20:
        scanner.feed(chunk)
    assert scanner.result() == (None, None, f"performance line longer than {SCAN_LINE_BYTES // 1024} KiB")
    scanner.feed(b"\nperformance: 6 ok\n")  # a later good line wins, as the last line always does
    assert scanner.result() == (6.0, "ok", "")


@pytest.mark.parametrize("at", [MAX_LINE_BYTES - 5, 64 * 1024 - 3, 150_000])
def test_a_secret_in_a_huge_line_is_masked_in_the_log_and_the_cut_live_line(tmp_path, at: int) -> None:
    secret = b"hunter2-s3cr3t-value"
    line = b"y" * at + secret + b"z" * (300_000 - at) + b"\n"
    frames = [("stdout", line[i:i + 7000]) for i in range(0, len(line), 7000)]  # the secret split over reads
    engine = FakeEngine(frames)
    body = dict(BODY, Env=["DB_PASSWORD=" + secret.decode()])
    lines: list[str] = []
    with open(tmp_path / "log", "wb") as handle:
        outcome = run_container(engine, body, "n1", _ScannedLog(handle), timeout=10,  # type: ignore[arg-type]
                                on_line=lines.append)
    assert outcome.exit_code == 0
    log = (tmp_path / "log").read_bytes()
    assert secret not in log and b"******" in log and len(log) == len(line) - len(secret) + 6
    assert len(lines) == 1 and secret.decode()[:6] not in lines[0]
