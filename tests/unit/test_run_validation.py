"""`madengine-cli run` input that used to be ignored, misread or answered with a traceback (issue 16
item 12): each is exit 4 with a message naming the problem, before anything is built or run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from madengine.cli.app import app, invoke
from madengine.ledger import Ledger

DEEP = "[" * 100_000 + "]" * 100_000


def cli(capsys, *args: str) -> tuple[int, str]:
    code = invoke(app, list(args), "madengine-cli")
    out, err = capsys.readouterr()
    return code, " ".join((out + err).replace("│", " ").split())


@pytest.fixture
def mad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A MAD tree with one model (its Dockerfile is missing: a build would fail with exit 2)."""
    (tmp_path / "models.json").write_text(json.dumps([{"name": "m1", "tags": ["t1"], "dockerfile": "docker/x",
                                                       "scripts": "scripts/m1/run.sh"}]))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("tags", [[""], [" "], [",", ""]])
def test_empty_tags_are_refused_not_build_everything(capsys, mad: Path, tags: list[str]) -> None:
    code, text = cli(capsys, "run", *[arg for tag in tags for arg in ("--tags", tag)])
    assert code == 4 and "--tags is empty" in text, text
    assert not (mad / "build_manifest.json").exists()


def test_tags_with_a_manifest_file_are_refused(capsys, mad: Path) -> None:
    (mad / "build_manifest.json").write_text("{}")
    code, text = cli(capsys, "run", "--tags", "t1", "--manifest-file", "build_manifest.json")
    assert code == 4 and "--tags" in text and "--manifest-file" in text, text


@pytest.mark.parametrize("run_id", ["../../x", "a/b", "..", "/etc", ".hidden", "x y"])
def test_resume_takes_run_ids_not_paths(capsys, mad: Path, run_id: str) -> None:
    for option in ("--resume", "--rerun-failed"):
        code, text = cli(capsys, "run", option, run_id)
        assert code == 4 and "is not a run ID" in text, text


def test_a_ledger_without_args_is_a_clear_error(capsys, mad: Path) -> None:
    ledger = Ledger(mad / "runs", "20260101-000000-abcdef")
    ledger.start({"cells": [["m1", "localhost"]], "context": {}})
    code, text = cli(capsys, "run", "--resume", "20260101-000000-abcdef")
    assert code == 4, text
    assert "ledger.jsonl" in text and "args" in text and "KeyError" not in text, text


def test_a_huge_timeout_is_refused(capsys, mad: Path) -> None:
    code, text = cli(capsys, "run", "--tags", "t1", "--timeout", "100000001")
    assert code == 4 and "--timeout" in text, text


def test_deeply_nested_json_is_bad_input(capsys, mad: Path) -> None:
    code, text = cli(capsys, "run", "--tags", "t1", "-c", DEEP)
    assert code == 4 and "nested too deeply" in text, text
    (mad / "ctx.json").write_text(DEEP)
    code, text = cli(capsys, "run", "--tags", "t1", "-f", "ctx.json")
    assert code == 4 and "nested too deeply" in text and "ctx.json" in text, text
    (mad / "deep_manifest.json").write_text(DEEP)
    code, text = cli(capsys, "run", "--manifest-file", "deep_manifest.json")
    assert code == 4 and "nested too deeply" in text and "deep_manifest.json" in text, text
    (mad / "models.json").write_text(DEEP)
    code, text = cli(capsys, "discover")  # read by orjson: the first card is named, a list instead of an object
    assert code == 4 and "models.json: model entry #0 is a JSON array, not an object" in text, text


def test_a_huge_card_timeout_is_clamped_below_ansibles_limit() -> None:
    from ansible_collections.mad.engine.plugins.module_utils._runspec import MAX_TIMEOUT, run_timeout

    assert run_timeout({"timeout": 10**12}) == MAX_TIMEOUT == 100_000_000
    assert run_timeout({"timeout": 5}) == 5 and run_timeout({"timeout": 0}) is None
