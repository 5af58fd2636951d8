"""The discovery caches: a models.json memo keyed by content, and compiled generators."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from madengine import discover, discovery_cache
from madengine.discover import discover_models

CARDS = [{"name": "a", "tags": ["t"], "dockerfile": "../../docker/x", "scripts": "run.sh", "flavour": "odd"},
         {"name": "b", "tags": "t, u", "n_gpus": "2", "source": "mine"}]


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(discovery_cache.CACHE_ENV, raising=False)
    return tmp_path / "cache" / "madengine"


def package(root: Path, cards: list[dict] = CARDS) -> Path:
    (root / "scripts" / "d").mkdir(parents=True)
    (root / "scripts" / "d" / "models.json").write_text(json.dumps(cards))
    (root / "models.json").write_text(json.dumps([{"name": "top", "tags": ["t"]}]))
    return root


def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the cards discovery turns into models by parsing (not from the memo)."""
    seen: list[str] = []
    real = discover.model_from_raw

    def counting(raw, **kw):
        seen.append(raw.get("name") if isinstance(raw, dict) else "?")
        return real(raw, **kw)

    monkeypatch.setattr(discover, "model_from_raw", counting)
    return seen


def test_a_second_discovery_is_served_from_the_memo_with_the_same_models_and_warnings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, cache_home: Path) -> None:
    root = package(tmp_path / "MAD")
    with caplog.at_level(logging.WARNING, logger="madengine"):
        first = [m.to_dict() for m in discover_models(root, ["all"])]
    said_first = [r.getMessage() for r in caplog.records]
    assert len(list((cache_home / "discovery").glob("*.marshal"))) == 1
    assert any("unknown key 'flavour'" in s for s in said_first) and any("'source' is reserved" in s
                                                                          for s in said_first)
    caplog.clear()
    parsed = parses(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="madengine"):
        second = [m.to_dict() for m in discover_models(root, ["all"])]
    assert parsed == [] and second == first
    assert [r.getMessage() for r in caplog.records] == said_first


def test_an_edit_that_keeps_size_and_timestamps_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = package(tmp_path / "MAD")
    assert [m.name for m in discover_models(root, ["t"])] == ["top", "d/a", "d/b"]
    card_file = root / "scripts" / "d" / "models.json"
    before = card_file.stat()
    card_file.write_text(card_file.read_text().replace('"name": "a"', '"name": "z"'))  # same length
    os.utime(card_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert card_file.stat().st_size == before.st_size and card_file.stat().st_mtime_ns == before.st_mtime_ns
    parsed = parses(monkeypatch)
    assert [m.name for m in discover_models(root, ["t"])] == ["top", "d/z", "d/b"]
    assert parsed == ["z", "b"]  # the edited file parsed again, the root models.json from the memo


def test_models_from_the_memo_are_the_callers_own(tmp_path: Path) -> None:
    root = package(tmp_path / "MAD")
    discover_models(root, ["all"])
    (top, a, _) = discover_models(root, ["all"])  # from the memo
    a.tags.append("changed")
    a.extra["flavour"] = "changed"
    top.name = "changed"
    again = discover_models(root, ["all"])
    assert [m.name for m in again] == ["top", "d/a", "d/b"]
    assert again[1].tags == ["t"] and again[1].extra == {"flavour": "odd"}


def test_a_broken_memo_is_ignored_and_rewritten(tmp_path: Path, cache_home: Path) -> None:
    root = package(tmp_path / "MAD")
    discover_models(root, ["all"])
    (memo,) = (cache_home / "discovery").glob("*.marshal")
    memo.write_bytes(b"\x00not marshal")
    assert [m.name for m in discover_models(root, ["all"])] == ["top", "d/a", "d/b"]
    assert memo.read_bytes() != b"\x00not marshal"


def test_the_memo_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_home: Path) -> None:
    monkeypatch.setenv(discovery_cache.CACHE_ENV, "0")
    root = package(tmp_path / "MAD")
    discover_models(root, ["all"])
    parsed = parses(monkeypatch)
    discover_models(root, ["all"])
    assert parsed == ["top", "a", "b"] and not cache_home.exists()


def test_another_madengine_does_not_read_this_ones_memo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = package(tmp_path / "MAD")
    discover_models(root, ["all"])
    monkeypatch.setattr(discovery_cache, "_fingerprint", b"another madengine")
    parsed = parses(monkeypatch)
    discover_models(root, ["all"])
    assert parsed == ["top", "a", "b"]


GENERATOR = "def list_models():\n    return [{'name': 'gen', 'owner': 'v1'}]\n"


def test_generators_are_compiled_once_and_an_edit_is_seen(tmp_path: Path, cache_home: Path) -> None:
    root = tmp_path / "MAD"
    script = root / "scripts" / "g" / "get_models_json.py"
    script.parent.mkdir(parents=True)
    script.write_text(GENERATOR)
    assert [m.owner for m in discover_models(root, ["all"])] == ["v1"]
    (code,) = (cache_home / "generators").glob("*.code")
    compiled_at = code.stat().st_mtime_ns
    assert [m.owner for m in discover_models(root, ["all"])] == ["v1"]
    assert code.stat().st_mtime_ns == compiled_at  # read, not compiled again
    before = script.stat()
    script.write_text(GENERATOR.replace("v1", "v2"))
    os.utime(script, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert [m.owner for m in discover_models(root, ["all"])] == ["v2"]
    assert len(list((cache_home / "generators").glob("*.code"))) == 2
    assert not list(root.rglob("__pycache__"))


def test_caches_others_may_write_to_are_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 cache_home: Path) -> None:
    """What a cache holds decides models and runs code: a folder anyone may write to is not read."""
    root = package(tmp_path / "MAD")
    script = root / "scripts" / "g" / "get_models_json.py"
    script.parent.mkdir(parents=True)
    script.write_text(GENERATOR)
    for name in ("discovery", "generators"):
        (cache_home / name).mkdir(parents=True)
        (cache_home / name).chmod(0o777)
    discover_models(root, ["all"])
    parsed = parses(monkeypatch)
    discover_models(root, ["all"])
    assert parsed == ["top", "a", "b", "gen"]
    assert not list((cache_home / "discovery").iterdir()) and not list((cache_home / "generators").iterdir())
