"""perf.csv writing (layout, appends, header upgrades, concurrency, locking) and run/workflow summaries."""

from __future__ import annotations

import csv
import json
import multiprocessing
import re
from pathlib import Path

import filelock
import pytest

from madengine.errors import ExitCode
from madengine.results import (
    FAILURE,
    MADENGINE_COLUMNS,
    PERF_COLUMNS,
    SKIPPED,
    SUCCESS,
    UPSTREAM_COLUMNS,
    PerfCsv,
    PerfCsvError,
    RunSummary,
    format_value,
    merge_columns,
    new_run_id,
    read_rows,
    summarize,
    workflow_summary,
)


def header_of(path: Path) -> list[str]:
    with open(path, newline="") as fh:
        return next(csv.reader(fh))


def row(model: str, status: str = SUCCESS, **extra: object) -> dict[str, object]:
    return {"model": model, "status": status, "performance": 1.5, "metric": "tokens/s", "host": "node1",
            **extra}


# ------------------------------------------------------------------------------------------ layout


def test_column_constants() -> None:
    assert len(UPSTREAM_COLUMNS) == 29
    assert PERF_COLUMNS == UPSTREAM_COLUMNS + MADENGINE_COLUMNS
    assert MADENGINE_COLUMNS == ("host", "run_id", "image_digest", "reason", "started_at")


def test_fresh_file_header_order(tmp_path: Path) -> None:
    path = tmp_path / "out" / "perf.csv"
    PerfCsv(path).append([row("m1", zeta=1, alpha=2), row("m2", beta=3)])
    assert header_of(path) == [*PERF_COLUMNS, "zeta", "alpha", "beta"]
    rows = read_rows(path)
    assert [r["model"] for r in rows] == ["m1", "m2"]
    assert rows[0]["zeta"] == "1" and rows[0]["beta"] == ""
    assert rows[1]["beta"] == "3" and rows[1]["n_gpus"] == ""


def test_values_are_formatted(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    PerfCsv(path).append([row("m", reason=None, tags=["a", "b"], n_gpus=8, args='x, "y"\nz')])
    (r,) = read_rows(path)
    assert r["reason"] == "" and r["tags"] == "a,b" and r["n_gpus"] == "8" and r["performance"] == "1.5"
    assert r["args"] == 'x, "y"\nz'  # quoting survives commas, quotes and newlines
    assert format_value(None) == "" and format_value(("x", None, 2)) == "x,,2" and format_value(0) == "0"


def test_merge_columns() -> None:
    assert merge_columns(["old", "model"], ["new", "old", "host"]) == [*PERF_COLUMNS, "old", "new"]


def test_empty_rows_write_nothing(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    PerfCsv(path).append([])
    assert not path.exists()
    assert read_rows(path) == []


def test_empty_existing_file_gets_header(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    path.write_text("")
    PerfCsv(path).append([row("m")])
    assert header_of(path) == list(PERF_COLUMNS)
    assert [r["model"] for r in read_rows(path)] == ["m"]


# ------------------------------------------------------------------------------------------ appends


def test_append_keeps_rows_in_place(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    perf = PerfCsv(path)
    perf.append([row("m1")])
    inode = path.stat().st_ino
    perf.append([row("m2", status=FAILURE, reason="timeout")])
    perf.append(iter([row("m3", status=SKIPPED)]))  # any iterable
    assert path.stat().st_ino == inode  # appended, not rewritten
    rows = read_rows(path)
    assert [(r["model"], r["status"]) for r in rows] == [("m1", SUCCESS), ("m2", FAILURE), ("m3", SKIPPED)]
    assert rows[1]["reason"] == "timeout"
    assert path.read_text().count("\n") == 4


def test_known_extra_column_appends_without_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    perf = PerfCsv(path)
    perf.append([row("m1", tflops=10)])
    inode = path.stat().st_ino
    perf.append([row("m2", tflops=20), row("m3")])
    assert path.stat().st_ino == inode
    assert [r["tflops"] for r in read_rows(path)] == ["10", "20", ""]


def test_new_extra_columns_rewrite_and_keep_old_data(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    perf = PerfCsv(path)
    perf.append([row("m1", tflops=10)])
    perf.append([row("m2", latency_ms=3.25)])
    perf.append([row("m3", tflops=30, batch="8")])
    assert header_of(path) == [*PERF_COLUMNS, "tflops", "latency_ms", "batch"]
    rows = read_rows(path)
    assert [(r["model"], r["tflops"], r["latency_ms"], r["batch"]) for r in rows] == [
        ("m1", "10", "", ""),
        ("m2", "", "3.25", ""),
        ("m3", "30", "", "8"),
    ]
    assert all(r["performance"] == "1.5" and r["host"] == "node1" for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["perf.csv"]  # no temp file, no lock file left


def test_missing_trailing_newline_is_repaired(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    PerfCsv(path).append([row("m1")])
    path.write_text(path.read_text().rstrip("\n"))
    PerfCsv(path).append([row("m2")])
    assert [r["model"] for r in read_rows(path)] == ["m1", "m2"]


# ------------------------------------------------------------------------------------------ upgrades


def write_upstream_25(path: Path) -> list[dict[str, str]]:
    """An upstream-madengine-style perf.csv with only the first 25 upstream columns."""
    columns = list(UPSTREAM_COLUMNS[:25])
    old = [
        {c: "" for c in columns} | {"model": "pyt_bert", "n_gpus": "8", "performance": "1234.5",
                                    "metric": "samples/s", "status": "SUCCESS", "tags": "pyt,bert",
                                    "machine_name": "mi300-01", "dataname": "c4"},
        {c: "" for c in columns} | {"model": "pyt_gpt2", "n_gpus": "1", "performance": "",
                                    "metric": "", "status": "FAILURE", "args": "--a 1, --b 2"},
    ]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(old)
    assert len(header_of(path)) == 25
    return old


def test_upgrade_upstream_25_column_file_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    old = write_upstream_25(path)
    PerfCsv(path).append([row("new_model", run_id="r1", build_number="42")])
    assert header_of(path) == list(PERF_COLUMNS)
    rows = read_rows(path)
    assert len(rows) == 3
    for before, after in zip(old, rows[:2], strict=True):
        assert {k: after[k] for k in before} == before  # every old value under its own column
        assert all(after[c] == "" for c in PERF_COLUMNS[25:])
    assert rows[2]["model"] == "new_model" and rows[2]["run_id"] == "r1" and rows[2]["build_number"] == "42"


def test_upgrade_reordered_header_with_unknown_columns(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    path.write_text("status,model,legacy_note,performance\nSUCCESS,m0,keep me,99\n")
    PerfCsv(path).append([row("m1", tflops=5)])
    assert header_of(path) == [*PERF_COLUMNS, "legacy_note", "tflops"]
    old, new = read_rows(path)
    assert (old["model"], old["status"], old["performance"]) == ("m0", SUCCESS, "99")
    assert old["legacy_note"] == "keep me"
    assert (new["model"], new["tflops"], new["legacy_note"]) == ("m1", "5", "")


def test_full_header_in_other_order_is_rewritten_canonically(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    reordered = list(reversed(PERF_COLUMNS))
    with open(path, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([reordered, [f"v_{c}" for c in reordered]])
    PerfCsv(path).append([row("m1")])
    assert header_of(path) == list(PERF_COLUMNS)
    first = read_rows(path)[0]
    assert all(first[c] == f"v_{c}" for c in PERF_COLUMNS)


def test_unparseable_existing_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    path.write_text("model,status\nm0,SUCCESS,surplus\n")
    before = path.read_bytes()
    with pytest.raises(PerfCsvError, match="line 2 has 3 fields"):
        PerfCsv(path).append([row("m1")])
    assert path.read_bytes() == before

    path.write_text("model,model\na,b\n")
    with pytest.raises(PerfCsvError, match="duplicate columns: model"):
        PerfCsv(path).append([row("m1")])


# ------------------------------------------------------------------------------------------ locking


def _writer(path: str, worker: int, count: int) -> None:
    perf = PerfCsv(path, lock_timeout=120)
    for i in range(count):
        extra: dict[str, object] = {}
        if worker % 2 == 0 and i % 6 == 0:
            extra[f"extra_w{worker}_{i}"] = f"x{worker}.{i}"  # new column → full rewrite
        if i % 4 == 0:
            extra["shared_extra"] = i
        perf.append([row(f"w{worker}-{i}", run_id=f"run-{worker}", performance=worker * 1000 + i, **extra)])


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    workers, count = 5, 25
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0] * workers

    header = header_of(path)
    assert header[: len(PERF_COLUMNS)] == list(PERF_COLUMNS)
    assert len(header) == len(set(header))
    rows = read_rows(path)
    assert len(rows) == workers * count
    by_model = {r["model"]: r for r in rows}
    assert len(by_model) == workers * count
    for w in range(workers):
        for i in range(count):
            r = by_model[f"w{w}-{i}"]
            assert r["performance"] == str(w * 1000 + i)
            assert r["run_id"] == f"run-{w}" and r["status"] == SUCCESS and r["host"] == "node1"
            assert r["shared_extra"] == (str(i) if i % 4 == 0 else "")
            if w % 2 == 0 and i % 6 == 0:
                assert r[f"extra_w{w}_{i}"] == f"x{w}.{i}"
    extras = [c for c in header if c.startswith("extra_w")]
    assert len(extras) == len([1 for w in range(workers) if w % 2 == 0]) * len(range(0, count, 6))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["perf.csv"]  # no temp file, no lock file left


def test_lock_timeout_error(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    holder = filelock.FileLock(str(path) + ".lock")
    with holder, pytest.raises(PerfCsvError) as info:
        PerfCsv(path, lock_timeout=0.2).append([row("m1")])
    err = info.value
    assert "Timed out after 0.2s waiting for the lock on" in str(err)
    assert str(path) in str(err) and "perf.csv.lock" in str(err)
    assert err.hint and "Another madengine process" in err.hint
    assert err.exit_code == ExitCode.FAILURE
    assert not path.exists()
    PerfCsv(path, lock_timeout=0.2).append([row("m1")])  # released: works again
    assert len(read_rows(path)) == 1


# ------------------------------------------------------------------------------------------ summaries


def test_summarize_counts_statuses(tmp_path: Path) -> None:
    rows = [
        row("ok1", test_duration="12.5"),
        row("ok2", status="success"),
        row("bad1", status=FAILURE, reason="exit code 1", performance=None),
        row("skip1", status=SKIPPED, reason="gpu_vendor mismatch"),
        row("odd", status=""),
        row("weird", status="PARTIAL"),
    ]
    s = summarize(rows, run_id="r1", total_time=42)
    assert isinstance(s, RunSummary)
    assert [e["model"] for e in s.successful_runs] == ["ok1", "ok2"]
    assert [e["model"] for e in s.failed_runs] == ["bad1", "odd", "weird"]
    assert [e["model"] for e in s.skipped_runs] == ["skip1"]
    assert s.total_runs == 6 and s.total_execution_time == 42.0 and s.run_id == "r1"
    assert not s.success
    assert s.successful_runs[0] == {"model": "ok1", "host": "node1", "status": SUCCESS, "performance": "1.5",
                                    "metric": "tokens/s", "reason": "", "duration": 12.5}
    assert s.failed_runs[0]["reason"] == "exit code 1" and s.failed_runs[0]["performance"] == ""
    assert "unrecognised status" in s.failed_runs[2]["reason"]
    assert all(e["status"] != SUCCESS for e in s.failed_runs)
    d = s.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) == {"successful_runs", "failed_runs", "skipped_runs", "total_runs",
                      "total_execution_time", "run_id"}


def test_summarize_from_perf_csv(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    PerfCsv(path).append([row("a"), row("b", status=FAILURE), row("c", status=SKIPPED)])
    s = summarize(read_rows(path), run_id="r", total_time=1.0)
    assert (len(s.successful_runs), len(s.failed_runs), len(s.skipped_runs)) == (1, 1, 1)
    assert summarize([], "r", 0).success


def test_workflow_overall_success() -> None:
    clean = summarize([row("a"), row("b", status=SKIPPED)], "r", 1.0)
    failed = summarize([row("a"), row("b", status=FAILURE)], "r", 1.0)
    ok_build = {"successful_builds": [{"model": "a"}], "failed_builds": []}
    bad_build = {"successful_builds": [], "failed_builds": [{"model": "b", "error": "x"}]}

    w = workflow_summary(ok_build, clean.to_dict(), run_id="r")
    assert w["overall_success"] is True and w["run_id"] == "r"
    assert w["build_phase"] == ok_build and w["run_phase"] == clean.to_dict()
    assert workflow_summary(None, clean)["overall_success"] is True  # run-only, RunSummary accepted
    assert workflow_summary(None, clean)["build_phase"] is None
    assert workflow_summary(bad_build, clean.to_dict())["overall_success"] is False
    assert workflow_summary(ok_build, failed.to_dict())["overall_success"] is False
    assert workflow_summary({"failed": 2}, clean)["overall_success"] is False
    # a FAILURE filed under successful_runs is still a failure
    mislabelled = {"successful_runs": [{"model": "x", "status": FAILURE}], "failed_runs": []}
    assert workflow_summary(None, mislabelled)["overall_success"] is False


def test_new_run_id_sortable_and_unique() -> None:
    ids = [new_run_id() for _ in range(500)]
    assert all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    prefixes = [i[:15] for i in ids]
    assert prefixes == sorted(prefixes)


def test_results_sink_writes_the_row_before_the_ledger(tmp_path) -> None:
    from madengine.ledger import Ledger
    from madengine.results import PerfCsvError, ResultsSink, read_rows

    ledger = Ledger(tmp_path / "runs", "r1")
    ledger.start({"cells": [["k", "localhost"]]})
    row = {"model": "m", "status": "SUCCESS", "performance": "1", "metric": "x", "run_id": "r1"}
    sink = ResultsSink(tmp_path / "perf.csv", ledger, "r1")
    sink.record("k", "localhost", 1, [dict(row, status="FAILURE")], infra_error=True, final=False)
    assert not (tmp_path / "perf.csv").exists()  # a retried infrastructure failure: the ledger only
    sink.record("k", "localhost", 2, [row])
    assert [r["status"] for r in read_rows(tmp_path / "perf.csv")] == ["SUCCESS"]
    assert [a["status"] for a in ledger.load().attempts] == ["FAILURE", "SUCCESS"]

    blocked = ResultsSink(tmp_path / "no-such-dir" / "perf.csv", ledger, "r1")
    (tmp_path / "no-such-dir").write_text("a file where the folder should be")
    try:
        blocked.record("k", "localhost", 3, [row])
        raise AssertionError("perf.csv cannot take rows here")
    except PerfCsvError as e:
        assert "--resume r1" in (e.hint or "")
    assert len(ledger.load().attempts) == 2  # not ledgered as done


def test_two_runs_checking_one_perf_csv_at_once_both_pass(tmp_path):
    """Two runs sharing one perf.csv probe its folder at the same moment (they used to share the probe's
    name, and the second one's unlink failed: `cannot be written: No such file or directory`, exit 4)."""
    import threading

    from madengine.results import PerfCsv

    target = tmp_path / "perf.csv"
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def check() -> None:
        start.wait()
        for _ in range(200):
            try:
                PerfCsv(target).check_writable()
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
                return

    threads = [threading.Thread(target=check) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no probe left behind
