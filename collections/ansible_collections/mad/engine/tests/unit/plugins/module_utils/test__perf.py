# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

import json

import pytest
from ansible_collections.mad.engine.plugins.module_utils._perf import (
    FAILURE,
    PERF_COLUMNS,
    SKIPPED,
    SUCCESS,
    failure_row,
    format_number,
    make_row,
    parse_multiple_results,
    parse_number,
    parse_performance,
    read_multiple_results,
    rows_for_run,
    skipped_row,
)

MODEL = {
    "name": "dummy",
    "n_gpus": 2,
    "training_precision": "fp16",
    "args": "--bs 8",
    "tags": ["pyt", "dummies"],
    "dockerfile": "docker/dummy",
    "additional_docker_run_options": "--shm-size 8g",
    "multiple_results": None,
}
MULTI = dict(MODEL, name="multi", multiple_results="perf_multi.csv")


# ---------------------------------------------------------------- parse_performance


@pytest.mark.parametrize(
    "line, value, metric",
    [
        ("performance: 12 samples_per_second", 12.0, "samples_per_second"),
        ("performance: +3.5 ms", 3.5, "ms"),
        ("performance: -2.25 loss", -2.25, "loss"),
        ("performance: 1.5e3 img/s", 1500.0, "img/s"),
        ("performance: -2E-4 delta", -0.0002, "delta"),
        ("performance: 1,234,567.8 tokens", 1234567.8, "tokens"),
        ("performance: 14164/s, samples_per_second", 14164.0, "samples_per_second"),
        ("performance: .5 s", 0.5, "s"),
        ("[rank0] 12:00:01 performance:   42   it/s  (mean of 10)", 42.0, "it/s"),
        ("performance: 7", 7.0, ""),
    ],
)
def test_parse_performance_forms(line, value, metric):
    assert parse_performance(line) == (value, metric)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no perf here",
        "performance: N/A",
        "performance: abc samples",
        "performance: 12abc",
        "performance: 12,34 ms",
        "Performance: 12 x",
        "performance: 1e400 x",
        "performance:",
    ],
)
def test_parse_performance_garbage_is_ignored(text):
    assert parse_performance(text) == (None, None)


def test_parse_performance_last_line_wins_and_garbage_between_is_skipped():
    text = "\n".join(
        [
            "performance: 1 first_metric",
            "performance: 2 second_metric",
            "performance: oops",
            "noise performance: n/a",
            "done",
        ]
    )
    assert parse_performance(text) == (2.0, "second_metric")


def test_parse_performance_handles_carriage_returns():
    assert parse_performance("progress 10%\rperformance: 5 x\r\nbye\r\n") == (5.0, "x")


@pytest.mark.parametrize(
    "value, text",
    [
        (1234.5, "1234.5"),
        (1234567.8, "1234567.8"),
        (14164.0, "14164"),
        (-0.0002, "-0.0002"),
        (1500.0, "1500"),
        (1e-10, "1e-10"),
        (0.0, "0"),
    ],
)
def test_format_number_round_trips(value, text):
    assert format_number(value) == text
    assert float(format_number(value)) == value


def test_parse_number():
    assert parse_number("1,234.5") == 1234.5
    assert parse_number(" 7 ") == 7.0
    for bad in ("", "abc", "1,23", "1e999", "12 ms", None):
        assert parse_number(bad) is None


# ---------------------------------------------------------------- multiple_results CSV


def test_read_multiple_results_with_extra_columns(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("\ufeffmodel, performance ,metric,batch_size\na,1.5,img/s,8\n\nb, 2 ,img/s,16\n")
    assert read_multiple_results(str(path)) == [
        {"model": "a", "performance": "1.5", "metric": "img/s", "batch_size": "8"},
        {"model": "b", "performance": "2", "metric": "img/s", "batch_size": "16"},
    ]


def test_read_multiple_results_missing_column_is_a_clear_error(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("model,perf\na,1\n")
    with pytest.raises(
        ValueError, match=r"lacks required column\(s\) performance, metric \(has: model, perf\)"
    ):
        read_multiple_results(str(path))


def test_parse_multiple_results_empty_text():
    with pytest.raises(ValueError, match="no header"):
        parse_multiple_results("", "x.csv")


def test_parse_multiple_results_short_rows_are_padded():
    assert parse_multiple_results("model,performance,metric\na,1\n") == [
        {"model": "a", "performance": "1", "metric": ""}
    ]


# ---------------------------------------------------------------- make_row


def test_make_row_has_every_column_in_order_then_extras(monkeypatch):
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
    row = make_row(
        MODEL, status=SUCCESS, performance=1234.5, metric="img/s", extra={"batch": 8, "status": "X"}
    )
    assert list(row) == [*PERF_COLUMNS, "batch"]
    assert row["status"] == SUCCESS  # an extra key never overrides a column
    assert row["batch"] == "8"
    assert all(isinstance(v, str) for v in row.values())
    json.dumps(row)


def test_make_row_field_mapping(monkeypatch):
    monkeypatch.setenv("BUILD_NUMBER", "77")
    row = make_row(
        MODEL,
        status=FAILURE,
        reason="boom",
        test_duration=1.23456,
        host="node1",
        run_id="r1",
        image="ci-dummy",
        image_digest="sha256:abc",
        base_docker="ubuntu",
        docker_sha="sha256:b",
        build_duration=3.5,
        gpu_architecture="gfx942",
        machine_name="m1",
        started_at="2026-01-01T00:00:00Z",
        data={
            "dataname": "d",
            "data_provider_type": "local",
            "data_size": "1G",
            "data_download_duration": "",
        },
    )
    expected = {
        "model": "dummy",
        "n_gpus": "2",
        "nnodes": "1",
        "gpus_per_node": "2",
        "training_precision": "fp16",
        "pipeline": "",
        "args": "--bs 8",
        "tags": "pyt,dummies",
        "docker_file": "docker/dummy",
        "base_docker": "ubuntu",
        "docker_sha": "sha256:b",
        "docker_image": "ci-dummy",
        "git_commit": "",
        "machine_name": "m1",
        "deployment_type": "local",
        "launcher": "docker",
        "gpu_architecture": "gfx942",
        "performance": "",
        "metric": "",
        "relative_change": "",
        "status": FAILURE,
        "build_duration": "3.5",
        "test_duration": "1.235",
        "dataname": "d",
        "data_provider_type": "local",
        "data_size": "1G",
        "data_download_duration": "",
        "build_number": "77",
        "additional_docker_run_options": "--shm-size 8g",
        "host": "node1",
        "run_id": "r1",
        "image_digest": "sha256:abc",
        "reason": "boom",
        "started_at": "2026-01-01T00:00:00Z",
    }
    assert row == expected


def test_make_row_overrides_for_docker_file_args_and_build_number(monkeypatch):
    monkeypatch.setenv("BUILD_NUMBER", "77")
    row = make_row(
        MODEL,
        status=SKIPPED,
        docker_file="docker/dummy.ubuntu.amd.Dockerfile",
        args="--bs 16",
        build_number="",
    )
    assert (row["docker_file"], row["args"], row["build_number"]) == (
        "docker/dummy.ubuntu.amd.Dockerfile",
        "--bs 16",
        "",
    )


def test_make_row_rejects_unknown_status_and_success_without_value():
    with pytest.raises(ValueError, match="status must be"):
        make_row(MODEL, status="OK")
    with pytest.raises(ValueError, match="needs a performance value"):
        make_row(MODEL, status=SUCCESS)


def test_failure_and_skipped_rows():
    assert failure_row(MODEL, "why", host="h")["status"] == FAILURE
    row = skipped_row(MODEL, "skip_gpu_arch lists gfx90a", status=SUCCESS)
    assert (row["status"], row["reason"]) == (SKIPPED, "skip_gpu_arch lists gfx90a")


# ---------------------------------------------------------------- rows_for_run status rules


def test_success_needs_exit_zero_and_a_value():
    rows = rows_for_run(MODEL, "x\nperformance: 14164/s, samples_per_second\n", 0, False, 60, None, host="h")
    assert len(rows) == 1
    assert rows[0]["status"] == SUCCESS
    assert (rows[0]["performance"], rows[0]["metric"], rows[0]["reason"]) == (
        "14164",
        "samples_per_second",
        "",
    )
    assert rows[0]["host"] == "h"


def test_non_zero_exit_is_failure_even_with_a_value():
    [row] = rows_for_run(MODEL, "performance: 5 x\n", 3, False, 60, None)
    assert (row["status"], row["reason"], row["performance"]) == (FAILURE, "non-zero exit 3", "")


def test_no_performance_line_is_failure():
    [row] = rows_for_run(MODEL, "all good\n", 0, False, 60, None)
    assert (row["status"], row["reason"]) == (FAILURE, "no performance line")


def test_timeout_is_failure():
    [row] = rows_for_run(MODEL, "performance: 5 x\n", 137, True, 30, None)
    assert (row["status"], row["reason"]) == (FAILURE, "timeout after 30 s")


def test_unknown_exit_code_is_failure():
    [row] = rows_for_run(MODEL, "performance: 5 x\n", None, False, 30, None)
    assert row["status"] == FAILURE


def test_row_kwargs_cannot_force_success():
    [row] = rows_for_run(MODEL, "", 1, False, 30, None, status=SUCCESS, performance=1.0, reason="")
    assert (row["status"], row["reason"]) == (FAILURE, "non-zero exit 1")


def _csv(tmp_path, text):
    path = tmp_path / "perf_multi.csv"
    path.write_text(text)
    return str(path)


def test_multiple_results_rows_named_with_extras_and_bad_values(tmp_path):
    path = _csv(
        tmp_path,
        'model,performance,metric,batch_size\na,1.5,img/s,8\nb,,img/s,16\nc,fast,x,1\nd,"1,024",tok/s,2\n',
    )
    rows = rows_for_run(MULTI, "no perf line needed\n", 0, False, 60, path, host="h")
    assert [r["model"] for r in rows] == ["multi_a", "multi_b", "multi_c", "multi_d"]
    assert [r["status"] for r in rows] == [SUCCESS, FAILURE, FAILURE, SUCCESS]
    assert [r["reason"] for r in rows] == ["", "no performance value", "no performance value", ""]
    assert [r["performance"] for r in rows] == ["1.5", "", "", "1024"]
    assert [r["batch_size"] for r in rows] == ["8", "16", "1", "2"]
    assert all(list(r)[: len(PERF_COLUMNS)] == list(PERF_COLUMNS) for r in rows)
    assert rows[0]["metric"] == "img/s" and rows[0]["host"] == "h"


def test_multiple_results_missing_file(tmp_path):
    [row] = rows_for_run(MULTI, "", 0, False, 60, str(tmp_path / "perf_multi.csv"))
    assert (row["model"], row["status"], row["reason"]) == (
        "multi",
        FAILURE,
        "multiple_results file perf_multi.csv not found",
    )
    [row] = rows_for_run(MULTI, "", 0, False, 60, None)
    assert row["reason"] == "multiple_results file perf_multi.csv not found"


def test_multiple_results_missing_column(tmp_path):
    [row] = rows_for_run(MULTI, "", 0, False, 60, _csv(tmp_path, "model,value\na,1\n"))
    assert row["status"] == FAILURE
    assert row["reason"].startswith("multiple_results file perf_multi.csv: ")
    assert "performance, metric" in row["reason"]


def test_multiple_results_empty_csv(tmp_path):
    [row] = rows_for_run(MULTI, "", 0, False, 60, _csv(tmp_path, "model,performance,metric\n"))
    assert (row["status"], row["reason"]) == (FAILURE, "multiple_results file perf_multi.csv has no rows")


def test_multiple_results_failed_run_fails_every_row(tmp_path):
    rows = rows_for_run(MULTI, "", 2, False, 60, _csv(tmp_path, "model,performance,metric\na,1,x\nb,2,x\n"))
    assert [(r["model"], r["status"], r["reason"]) for r in rows] == [
        ("multi_a", FAILURE, "non-zero exit 2"),
        ("multi_b", FAILURE, "non-zero exit 2"),
    ]
    assert all(r["performance"] == "" for r in rows)


def test_rows_are_deterministic(tmp_path):
    path = _csv(tmp_path, "model,performance,metric\na,1,x\n")
    kwargs = dict(host="h", run_id="r", build_number="1")
    assert rows_for_run(MULTI, "", 0, False, 9, path, **kwargs) == rows_for_run(
        MULTI, "", 0, False, 9, path, **kwargs
    )
