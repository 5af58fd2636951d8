"""Atomic writes: content, parent creation, file mode, no temp files left, old file kept on failure."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from madengine.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_write_text_creates_parents_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    write_text_atomic(target, "hello\nworld\n")
    assert target.read_text() == "hello\nworld\n"
    assert listing(target.parent) == ["out.txt"]


def test_write_text_replaces_existing(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert listing(tmp_path) == ["out.txt"]


def test_write_bytes_exact(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    write_bytes_atomic(target, b"a\r\nb\x00")
    assert target.read_bytes() == b"a\r\nb\x00"


def test_existing_mode_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    os.chmod(target, 0o640)
    write_text_atomic(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_new_file_mode_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "out.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o640


def test_write_json_format(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json_atomic(target, {"b": [1, 2], "a": None})
    text = target.read_text()
    assert text == json.dumps({"b": [1, 2], "a": None}, indent=2) + "\n"
    assert json.loads(text) == {"b": [1, 2], "a": None}


def test_unserialisable_json_raises_and_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json_atomic(target, {"ok": True})
    before = target.read_bytes()
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"path": Path("/x")})  # no default=str fallback
    assert target.read_bytes() == before
    assert listing(tmp_path) == ["out.json"]


def test_failed_replace_removes_temp_and_keeps_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_text_atomic(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert listing(tmp_path) == ["out.txt"]
