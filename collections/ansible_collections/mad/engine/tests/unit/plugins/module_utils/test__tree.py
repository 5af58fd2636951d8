# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""_tree: the tarball halves of mad.engine.sync, in-process and as the `python -c` source sent to hosts."""

from __future__ import annotations

import base64
import inspect
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from ansible_collections.mad.engine.plugins.module_utils import _tree


def _tree_at(root: Path) -> None:
    (root / "scripts" / "dummy" / "__pycache__").mkdir(parents=True)
    (root / "scripts" / "dummy" / "run.sh").write_text("echo hi\n")
    (root / "scripts" / "dummy" / "__pycache__" / "x.pyc").write_bytes(b"x")
    (root / "scripts" / "common").mkdir()
    (root / "scripts" / "common" / "tools.json").write_text("{}")
    (root / "data.json").write_text("{}")
    os.chmod(root / "scripts" / "dummy" / "run.sh", 0o755)


def test_pack_and_unpack_selected_paths(tmp_path: Path) -> None:
    _tree_at(tmp_path / "src")
    out = tmp_path / "t" / "x.tar.gz"
    result = _tree.pack(str(out), str(tmp_path / "src"), ["scripts/dummy", "data.json", "nothere"], "mad")
    assert result == {"packed": ["scripts/dummy", "data.json"], "missing": ["nothere"]}
    assert _tree.unpack(str(out), str(tmp_path / "dest")) == {"files": 2}
    assert not out.exists()
    dest = tmp_path / "dest" / "mad"
    assert (dest / "scripts" / "dummy" / "run.sh").read_text() == "echo hi\n"
    assert os.access(dest / "scripts" / "dummy" / "run.sh", os.X_OK)
    assert not (dest / "scripts" / "dummy" / "__pycache__").exists()
    assert not (dest / "scripts" / "common").exists()


def test_pack_all_and_missing_root(tmp_path: Path) -> None:
    _tree_at(tmp_path / "src")
    _tree.pack(str(tmp_path / "a.tgz"), str(tmp_path / "src"))
    assert _tree.unpack(str(tmp_path / "a.tgz"), str(tmp_path / "a"))["files"] == 3
    assert _tree.pack(str(tmp_path / "b.tgz"), str(tmp_path / "none")) == {"packed": [], "missing": []}
    assert _tree.unpack(str(tmp_path / "b.tgz"), str(tmp_path / "b")) == {"files": 0}


def test_unpack_refuses_members_outside_dest(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tgz"
    (tmp_path / "f").write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(tmp_path / "f", arcname="../escaped")
    with pytest.raises(ValueError, match="outside"):
        _tree.unpack(str(evil), str(tmp_path / "dest"))
    assert not (tmp_path / "escaped").exists()


def test_unpack_replaces_symlinks_a_model_planted_in_dest(tmp_path: Path) -> None:
    """The host's MAD copy is bind-mounted writable into containers: a model swaps a synced file and a
    synced folder for links out. The next sync puts the real ones back, writing nothing outside."""
    _tree_at(tmp_path / "src")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shadow").write_text("SECRET\n")
    dest = tmp_path / "dest"
    _tree.pack(str(tmp_path / "1.tgz"), str(tmp_path / "src"), ["scripts"])
    _tree.unpack(str(tmp_path / "1.tgz"), str(dest))
    (dest / "scripts" / "dummy" / "run.sh").unlink()
    os.symlink(outside / "shadow", dest / "scripts" / "dummy" / "run.sh")
    os.rename(dest / "scripts" / "common", tmp_path / "old-common")
    os.symlink(outside, dest / "scripts" / "common")
    _tree.pack(str(tmp_path / "2.tgz"), str(tmp_path / "src"), ["scripts"])
    assert _tree.unpack(str(tmp_path / "2.tgz"), str(dest)) == {"files": 2}
    assert not (dest / "scripts" / "dummy" / "run.sh").is_symlink()
    assert (dest / "scripts" / "dummy" / "run.sh").read_text() == "echo hi\n"
    assert not (dest / "scripts" / "common").is_symlink() and (dest / "scripts" / "common" / "tools.json").is_file()
    assert sorted(p.name for p in outside.iterdir()) == ["shadow"] and (outside / "shadow").read_text() == "SECRET\n"


def test_source_runs_standalone_as_the_host_runs_it(tmp_path: Path) -> None:
    _tree_at(tmp_path / "src")
    code = inspect.getsource(_tree)
    out = tmp_path / "r.tgz"
    done = subprocess.run([sys.executable, "-c", code, "pack", str(out), str(tmp_path / "src"), "", "scripts"],
                          capture_output=True, text=True, check=True, cwd=tmp_path)
    assert json.loads(done.stdout) == {"packed": ["scripts"], "missing": []}
    done = subprocess.run([sys.executable, "-I", "-c", code, "unpack", str(out), str(tmp_path / "d")],
                          capture_output=True, text=True, check=True, cwd=tmp_path)
    assert json.loads(done.stdout) == {"files": 2}
    bad = subprocess.run([sys.executable, "-c", code, "unpack", str(tmp_path / "none.tgz"), str(tmp_path / "d")],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and json.loads(bad.stdout)["failed"] is True


def test_streams_through_stdin_and_stdout_as_the_sync_action_uses_them(tmp_path: Path) -> None:
    _tree_at(tmp_path / "src")
    code = inspect.getsource(_tree)
    done = subprocess.run([sys.executable, "-c", code, "pack", "-", str(tmp_path / "src"), "", "scripts", "x"],
                          capture_output=True, text=True, check=True)
    out = json.loads(done.stdout)
    assert (out["packed"], out["missing"]) == (["scripts"], ["x"])
    done = subprocess.run([sys.executable, "-c", code, "unpack", "-", str(tmp_path / "dest")],
                          input=base64.b64decode(out["data"]), capture_output=True, check=True)
    assert json.loads(done.stdout) == {"files": 2}
    assert (tmp_path / "dest" / "scripts" / "common" / "tools.json").read_text() == "{}"


def test_one_file_set_for_the_sync_the_bundle_and_k8s(tmp_path: Path) -> None:
    """What the sync packs is what package_files lists, and generate ansible/k8s use package_files too."""
    import tarfile

    from ansible_collections.mad.engine.plugins.module_utils._tree import SKIP_NAMES, pack, package_files

    from madengine import ansible_bundle as bundle
    from madengine import k8s

    root = tmp_path / "mad"
    for rel in ("scripts/m/run.sh", "scripts/m/lib/x.py", "scripts/m/__pycache__/x.cpython-311.pyc",
                "scripts/m/y.pyc", "scripts/m/.git/HEAD", "scripts/m/credential.json",
                "scripts/m/run_directory/old.txt", "scripts/m/.ruff_cache/c"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    listed = package_files(str(root), "scripts/m")
    assert sorted(listed) == ["scripts/m/lib/x.py", "scripts/m/run.sh"]
    out = tmp_path / "t.tgz"
    pack(str(out), str(root), ["scripts/m"])
    with tarfile.open(out) as tar:
        packed = sorted(m.name for m in tar.getmembers() if m.isfile())
    assert packed == sorted(listed)
    assert "credential.json" in SKIP_NAMES
    assert bundle.package_files is package_files and k8s.package_files is package_files
    assert not hasattr(bundle, "_SKIP_DIRS") and not hasattr(k8s, "_SKIP_DIRS")
