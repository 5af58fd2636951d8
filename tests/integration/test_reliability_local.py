"""Local runs that survive a perf.csv that cannot be written, huge output, a full disk and odd input
(issue 16 items 4, 7, 8, 9, 12), against the real dockerd.

Files are made unwritable for real with ``chattr +i`` (the tests run as root, who ignores permission
bits), and the disk fills for real on a small tmpfs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from madtree import Mad, build, by_model, cli, cli_command, perf_rows, wait_for

pytestmark = pytest.mark.docker

EVIDENCE = "/myworkspace/evidence"


def chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True)


@contextlib.contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    chattr("+i", *paths)
    try:
        yield
    finally:
        chattr("-i", *paths)


def ledger_attempts(mad: Mad, run_id: str) -> list[tuple[str, str]]:
    lines = [json.loads(line) for line in (mad.root / "runs" / run_id / "ledger.jsonl").read_text().splitlines()]
    return [(line["models"][0], line["status"]) for line in lines if line["type"] == "attempt"]


def only_run_id(mad: Mad) -> str:
    [run_id] = [path.name for path in (mad.root / "runs").iterdir()]
    return run_id


# ------------------------------------------------------------------------------ item 4: row, then ledger
def test_a_row_that_cannot_be_written_is_not_in_the_ledger_and_resume_runs_it(capsys, mad: Mad) -> None:
    """perf.csv turns immutable while a model runs: its row cannot be appended. The run stops with a
    message naming perf.csv (no traceback), the ledger does not claim the model done, and `--resume`
    runs it (and the model after it) once perf.csv is writable again."""
    (mad.root / "evidence").mkdir()
    marker = mad.root / "evidence" / "hold"
    marker.touch()
    first = mad.add("m1", 'echo "performance: 1 items_per_second"\n')
    held = mad.add("m2", f'echo HELD\nwhile [ -f {EVIDENCE}/hold ]; do sleep 0.1; done\n'
                         'echo "performance: 2 items_per_second"\n')
    last = mad.add("m3", 'echo "performance: 3 items_per_second"\n')
    build(capsys, mad)
    perf = mad.root / "perf.csv"
    log = mad.root / f"{held}_base.run.live.log"

    def lock_perf_csv() -> None:
        wait_for(lambda: log.is_file() and "HELD" in log.read_text(), 120, "the second model to start")
        chattr("+i", perf)
        marker.unlink()

    locker = threading.Thread(target=lock_perf_csv)
    locker.start()
    try:
        res = cli(capsys, "run", "--manifest-file", "build_manifest.json")
        locker.join(10)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            chattr("-i", perf)
    assert res.code != 0 and "Traceback" not in res.text, res.text
    assert str(perf) in res.text and "--resume" in res.text, res.text
    run_id = only_run_id(mad)
    assert [row["model"] for row in perf_rows(perf)] == [first]
    assert ledger_attempts(mad, run_id) == [(first, "SUCCESS")]  # m2's row is not written: not done

    res = cli(capsys, "run", "--resume", run_id)
    assert res.code == 0, res.text
    rows = by_model(perf_rows(perf))
    assert set(rows) == {first, held, last} and rows[held]["performance"] == "2", rows
    assert ledger_attempts(mad, run_id) == [(first, "SUCCESS"), (held, "SUCCESS"), (last, "SUCCESS")]


@pytest.mark.parametrize("case", ["directory", "immutable file", "immutable dir"])
def test_an_unwritable_output_is_refused_before_any_model_runs(capsys, mad: Mad, case: str) -> None:
    (mad.root / "evidence").mkdir()
    mad.add("m1", f'touch {EVIDENCE}/ran\necho "performance: 1 items_per_second"\n')
    build(capsys, mad)
    out = mad.root / "out"
    out.mkdir()
    target = out / "perf.csv"
    if case == "directory":
        target.mkdir()
        locked: tuple[Path, ...] = ()
    elif case == "immutable file":
        target.write_text("model,status\n")
        locked = (target,)
    else:
        locked = (out,)
    with immutable(*locked) if locked else contextlib.nullcontext():
        res = cli(capsys, "run", "--manifest-file", "build_manifest.json", "-o", str(target))
    assert res.code == 4, res.text
    assert str(target) in res.text and "Traceback" not in res.text, res.text
    assert not (mad.root / "evidence" / "ran").exists()  # refused before the model ran


# ------------------------------------------------------------------ items 7 and 8: huge output, real runs
LONG_LINE = "head -c 50000000 /dev/zero | tr '\\0' x\necho\n"
PROGRESS = ("python3 - <<'PY'\nimport sys\nblock = ''.join('progress %9d %%\\r' % i for i in range(50000)).encode()\n"
            "for _ in range(100 * 1000 * 1000 // len(block)):\n    sys.stdout.buffer.write(block)\nPY\n")
PERF = 'echo "performance: 7 items_per_second"\n'


def timed_cli(mad: Mad, *args: str) -> tuple[int, float, float, str]:
    """(exit code, wall seconds, peak RSS in MB, output) of madengine-cli in a subprocess."""
    start = time.monotonic()
    with open(mad.root / "cli.out", "wb") as out:
        proc = subprocess.Popen([*cli_command(), *args], cwd=mad.root, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
    return (os.waitstatus_to_exitcode(status), time.monotonic() - start, usage.ru_maxrss / 1024,
            (mad.root / "cli.out").read_text(errors="replace"))


def test_a_50mb_line_and_100mb_of_progress_take_seconds_and_little_memory(capsys, mad: Mad) -> None:
    long_name = mad.add("longline", LONG_LINE + PERF)
    progress_name = mad.add("progress", PROGRESS + PERF)
    build(capsys, mad)
    code, wall, rss, out = timed_cli(mad, "run", "--manifest-file", "build_manifest.json")
    assert code == 0, out
    rows = by_model(perf_rows(mad.root / "perf.csv"))
    assert {name: (rows[name]["status"], rows[name]["performance"]) for name in (long_name, progress_name)} == {
        long_name: ("SUCCESS", "7"), progress_name: ("SUCCESS", "7")}
    model_time = sum(float(rows[name]["test_duration"]) for name in rows)
    # The quadratic splitter took 90 s for the line and 352 s for the progress; reading the log whole, 325 MB.
    assert wall - model_time < 60 and rss < 150, (wall, model_time, rss)
    assert (mad.root / f"{long_name}_base.run.live.log").stat().st_size > 50_000_000  # the log keeps it all


def test_a_50mb_performance_line_is_a_failure_row_not_a_50mb_cell(capsys, mad: Mad) -> None:
    huge = mad.add("huge", "printf 'performance: 5 '\n" + LONG_LINE)
    fine = mad.add("fine", PERF)
    build(capsys, mad)
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json")
    assert res.code == 3, res.text
    perf = mad.root / "perf.csv"
    assert perf.stat().st_size < 20_000
    rows = by_model(perf_rows(perf))
    assert rows[huge]["status"] == "FAILURE" and rows[huge]["reason"] == "performance line longer than 64 KiB"
    assert rows[fine]["status"] == "SUCCESS"
    assert cli(capsys, "report", "perf.csv").code == 0


# ---------------------------------------------------------------------------------- item 9: disk full
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_while_writing_a_log_is_that_models_failure_row(capsys, mad: Mad, small_disk: Path) -> None:
    filler = mad.add("filler", "head -c 3000000 /dev/zero | tr '\\0' y\necho\n" + PERF)
    after = mad.add("after", PERF)
    build(capsys, mad)
    perf = small_disk / "perf.csv"
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json", "-o", str(perf))
    assert res.code == 3, res.text
    assert "Traceback" not in res.text and "Unexpected error" not in res.text, res.text
    rows = by_model(perf_rows(perf))
    assert rows[filler]["status"] == "FAILURE", rows[filler]
    assert rows[filler]["reason"].startswith("disk full: "), rows[filler]["reason"]
    assert str(small_disk) in rows[filler]["reason"]
    assert rows[after]["status"] == "SUCCESS"  # the run went on to the next model


def test_a_disk_too_full_for_the_row_stops_the_run_clearly(capsys, mad: Mad, small_disk: Path) -> None:
    """The model fills the disk from inside its run directory (kept): no room even for perf.csv. The run
    stops with a message naming perf.csv and the way back (`--resume`); the next model does not run."""
    (mad.root / "evidence").mkdir()
    first = mad.add("first", "head -c 2000000 /dev/zero > fill 2>/dev/null\n" + PERF)
    mad.add("second", f"touch {EVIDENCE}/second\n" + PERF)
    build(capsys, mad)
    perf = small_disk / "perf.csv"
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json", "-o", str(perf), "--keep-model-dir")
    assert res.code == 3, res.text
    assert "Traceback" not in res.text and "Unexpected error" not in res.text, res.text
    assert f"Cannot write {perf}: No space left on device" in res.text and "--resume" in res.text, res.text
    assert not (mad.root / "evidence" / "second").exists()
    run_id = only_run_id(mad)
    assert ledger_attempts(mad, run_id) == []  # nothing ledgered as done: --resume runs both
    assert first


# ------------------------------------------------------------------------------ item 12: small ones
def test_models_whose_names_look_alike_keep_their_own_logs(capsys, mad: Mad) -> None:
    names = {f"{mad.uid}_a/b": "11", f"{mad.uid}_a_b": "12", f"{mad.uid}_модель": "13", f"{mad.uid}_模型": "14"}
    for index, (name, perf) in enumerate(names.items()):
        mad.write(f"scripts/s{index}/run.sh", f'#!/bin/bash\necho "performance: {perf} items_per_second"\n')
        mad.models.append({"name": name, "tags": [mad.uid], "dockerfile": "docker/base",
                           "scripts": f"scripts/s{index}/run.sh", "n_gpus": "1", "args": ""})
    mad.save()
    build(capsys, mad)
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json")
    assert res.code == 0, res.text
    assert {row["model"]: row["performance"] for row in perf_rows(mad.root / "perf.csv")} == names
    logs = sorted(mad.root.glob("*.run.live.log"))
    assert len(logs) == len(names), logs
    assert sorted(next(line for line in log.read_text().splitlines() if line.startswith("performance:"))
                  for log in logs) == sorted(f"performance: {perf} items_per_second" for perf in names.values())
