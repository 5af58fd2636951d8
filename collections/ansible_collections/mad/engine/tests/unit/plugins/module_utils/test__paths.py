# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""_paths: card paths stay inside the MAD package; model-written files are read and copied without
following a symlink out."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest
from ansible_collections.mad.engine.plugins.module_utils._paths import (
    OutsideError,
    card_problems,
    copy_tree,
    inside,
    read_beneath,
)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "mad", tmp_path / "outside"
    (root / "scripts" / "a").mkdir(parents=True)
    (root / "scripts" / "common").mkdir()
    outside.mkdir()
    (outside / "secret").write_text("SECRET\n")
    (root / "scripts" / "a" / "run.sh").write_text("echo a\n")
    (root / "scripts" / "common" / "lib.sh").write_text("lib\n")
    return root, outside


@pytest.mark.parametrize("path", ["scripts/a/run.sh", "./scripts/a", "scripts/../scripts/a", "scripts/new/x.sh",
                                  "docker/../scripts"])
def test_inside_accepts_paths_in_the_package(tree, path) -> None:
    root = tree[0]
    assert not inside(str(root), path).startswith("..")


def test_inside_refuses_absolute_dotdot_and_symlinks_out(tree) -> None:
    root, outside = tree
    os.symlink(outside, root / "scripts" / "out")
    os.symlink(outside / "secret", root / "scripts" / "a" / "key")
    for path in ("/etc/ssh/run.sh", "../outside/secret", "scripts/../../outside", str(outside / "secret"),
                 "scripts/out", "scripts/out/secret", "scripts/a/key", "scripts/out/../../etc"):
        with pytest.raises(OutsideError, match="outside the MAD package"):
            inside(str(root), path, "model m: scripts")
    # An absolute path inside the package is fine, as is a symlink that stays inside.
    assert inside(str(root), str(root / "scripts" / "a")) == "scripts/a"
    os.symlink("../common", root / "scripts" / "a" / "common")
    assert inside(str(root), "scripts/a/common/lib.sh") == "scripts/a/common/lib.sh"


def test_card_problems_names_the_card_and_field(tree) -> None:
    root, outside = tree
    model = {"name": "m", "scripts": str(outside / "run.sh"), "dockerfile": "../x/y", "dockercontext": "/etc",
             "multiple_results": "../../etc/shadow"}
    problems = card_problems(model, str(root), ("scripts", "dockerfile", "dockercontext", "multiple_results"))
    fields = [p.split(" ")[:3] for p in problems]
    assert fields == [["model", "m:", name] for name in ("scripts", "dockerfile", "dockercontext", "multiple_results")]
    good = {"name": "g", "scripts": "scripts/a", "dockerfile": "docker/x", "multiple_results": "out/perf.csv"}
    assert card_problems(good, str(root), ("scripts", "dockerfile", "multiple_results")) == []


def test_read_beneath_follows_no_symlink_and_opens_no_fifo(tree) -> None:
    root, outside = tree
    run = root / "run"
    (run / "sub").mkdir(parents=True)
    (run / "sub" / "ok.csv").write_text("model,performance,metric\n")
    assert read_beneath(str(run), "sub/ok.csv") == b"model,performance,metric\n"
    os.symlink(outside / "secret", run / "link.csv")
    os.symlink(outside, run / "dir")
    os.mkfifo(run / "fifo.csv")
    for rel, code in (("link.csv", errno.ELOOP), ("dir/secret", errno.ELOOP), ("fifo.csv", errno.EINVAL),
                      ("../outside/secret", errno.EINVAL), ("sub", errno.EINVAL)):
        caught: list[BaseException] = []

        def read(rel: str, caught: list[BaseException]) -> None:
            try:
                read_beneath(str(run), rel)
            except OSError as exc:
                caught.append(exc)

        # A blocking open of the FIFO would hang here.
        reader = threading.Thread(target=read, args=(rel, caught), daemon=True)
        reader.start()
        reader.join(5)
        assert not reader.is_alive(), f"reading {rel} blocked"
        assert caught and caught[0].errno == code, (rel, caught)
        assert "SECRET" not in str(caught[0])


def test_copy_tree_keeps_links_out_as_links_and_follows_links_inside(tree) -> None:
    root, outside = tree
    src = root / "scripts" / "a"
    os.symlink(outside / "secret", src / "stolen")  # planted by a model: absolute, to a host file
    os.symlink("../../../outside", src / "stolen_dir")  # relative, out of the package
    os.symlink("../common", src / "common")  # inside: copied as what it points to
    os.symlink(".", src / "loop")  # a loop: kept as a link
    os.symlink("nowhere", src / "dangling")
    os.mkfifo(src / "fifo")
    os.chmod(src / "run.sh", 0o750)
    dest = root.parent / "run_directory"
    copy_tree(str(root), "scripts/a", str(dest))
    assert (dest / "run.sh").read_text() == "echo a\n" and (dest / "run.sh").stat().st_mode & 0o777 == 0o750
    assert (dest / "common").is_dir() and not (dest / "common").is_symlink()
    assert (dest / "common" / "lib.sh").read_text() == "lib\n"
    for name, target in (("stolen", str(outside / "secret")), ("stolen_dir", "../../../outside"), ("loop", "."),
                         ("dangling", "nowhere")):
        assert (dest / name).is_symlink() and os.readlink(dest / name) == target, name
    assert not (dest / "fifo").exists()
    for path in dest.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert "SECRET" not in path.read_text()


def test_copy_tree_refuses_a_folder_outside(tree) -> None:
    root, outside = tree
    os.symlink(outside, root / "scripts" / "out")
    for rel in ("scripts/out", "../outside", str(outside)):
        with pytest.raises(OutsideError):
            copy_tree(str(root), rel, str(root.parent / "dest"))
    assert not (root.parent / "dest").exists()
