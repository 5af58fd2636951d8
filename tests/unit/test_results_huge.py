"""A perf.csv that an older madengine wrote with a 50 MB cell (issue 16 item 7): every reader takes it.

`report`, `compare`, the --distribute shard history, --resume's perf.csv check and the column-upgrading
writer all used to fail with `field larger than field limit (131072)` (exit 1), losing the new rows.
"""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import pytest

from madengine.cli.app import app, invoke
from madengine.execute.schedule import estimates_for
from madengine.ledger import done_in_perf
from madengine.results import PERF_COLUMNS, PerfCsv, read_rows

HUGE = 50_000_000


@pytest.fixture(scope="module")
def huge_perf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """perf.csv with a SUCCESS row whose metric is a 50 MB cell, then an ordinary row (written once)."""
    path = tmp_path_factory.mktemp("huge") / "perf.csv"
    base = dict.fromkeys(PERF_COLUMNS, "")
    lines = [",".join(PERF_COLUMNS)]
    for model, metric in (("huge", "m" * HUGE), ("small", "items_per_second")):
        lines.append(",".join({**base, "model": model, "status": "SUCCESS", "performance": "5", "metric": metric,
                               "test_duration": "3", "run_id": "r1", "host": "localhost"}.values()))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def old_perf(huge_perf: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(huge_perf, tmp_path / "perf.csv"))


def test_read_rows_takes_a_huge_cell_and_says_it_is_shown_cut(old_perf: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        rows = read_rows(old_perf)
    assert [row["model"] for row in rows] == ["huge", "small"]
    assert len(rows[0]["metric"]) < 10_000 and rows[1]["metric"] == "items_per_second"
    assert f"{old_perf} line 2 column metric holds {HUGE} characters" in caplog.text


def test_a_new_column_rewrites_the_file_keeping_the_huge_cell(old_perf: Path) -> None:
    PerfCsv(old_perf).append([{"model": "new", "status": "SUCCESS", "performance": "1", "extra_col": "x"}])
    csv.field_size_limit(HUGE * 2)
    try:
        with open(old_perf, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    finally:
        csv.field_size_limit(131072)
    assert [row["model"] for row in rows] == ["huge", "small", "new"]
    assert len(rows[0]["metric"]) == HUGE and rows[2]["extra_col"] == "x"  # nothing an old row held is lost


def test_shard_history_and_resume_read_it(old_perf: Path) -> None:
    assert estimates_for(str(old_perf), {"k1": ("huge", 100), "k2": ("small", 100)}) == {"k1": 3.0, "k2": 3.0}
    assert done_in_perf(read_rows(old_perf), "r1", {"k1": "huge", "k2": "small"}) == {
        ("k1", "localhost"), ("k2", "localhost")}


def test_report_and_compare_read_it(old_perf: Path, tmp_path: Path, capsys) -> None:
    code = invoke(app, ["report", str(old_perf), "-o", str(tmp_path / "r.html")], "madengine-cli")
    assert code == 0, capsys.readouterr()
    assert (tmp_path / "r.html").stat().st_size < 5_000_000
    code = invoke(app, ["compare", str(old_perf), "-b", str(old_perf)], "madengine-cli")
    assert code == 0, capsys.readouterr()
