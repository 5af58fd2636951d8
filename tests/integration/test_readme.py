"""The README's two commands, as a new user runs them: command 1 in this checkout, then the tests.

Command 1 leaves ``perf.csv``, ``build_manifest.json``, ``runs/`` and logs in ``examples/MAD``; no test may
depend on them (the tests copy the package with ``tracked_tree.copy_tracked``). The module runs command 1
for real first, then copies the package as the other tests do, in one checkout; afterwards the package is
put back as it was (a user's own earlier results are restored, not lost).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tracked_tree import copy_tracked, tracked_files

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "MAD"


def readme_commands() -> list[str]:
    """The commands of the README's first ``bash`` block (comments and blank lines dropped)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no ```bash block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def command_1_ran(docker_client) -> Iterator[subprocess.CompletedProcess[str]]:
    """README command 1, verbatim, from the checkout's root; the package is restored afterwards."""
    before = {p.name: (p.read_bytes() if p.is_file() else None) for p in EXAMPLE.iterdir()}
    command = readme_commands()[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAD_", "ANSIBLE_"))}
    done = subprocess.run(["bash", "-c", command], cwd=REPO, env=dict(env, NO_COLOR="1", COLUMNS="160"),
                          capture_output=True, text=True, timeout=900, check=False)
    try:
        yield done
    finally:
        for path in EXAMPLE.iterdir():
            if path.name not in before:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            elif before[path.name] is not None and path.is_file() and path.read_bytes() != before[path.name]:
                path.write_bytes(before[path.name])


def test_the_readme_opens_with_the_two_commands() -> None:
    commands = readme_commands()
    assert commands == ["bash tests/infra/up.sh && (cd examples/MAD && madengine-cli run --tags dummy)",
                        "python3 -m pytest -q"]


def test_command_1_builds_and_runs_the_dummy_models(command_1_ran) -> None:
    assert command_1_ran.returncode == 0, command_1_ran.stdout[-3000:] + command_1_ran.stderr[-3000:]
    with open(EXAMPLE / "perf.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    mine = [r for r in rows if r["run_id"] == rows[-1]["run_id"]]
    assert mine and all(r["status"] == "SUCCESS" for r in mine), mine
    assert "dummy" in {r["model"] for r in mine}


def test_a_copy_of_the_package_after_command_1_holds_only_tracked_files(command_1_ran, tmp_path) -> None:
    assert (EXAMPLE / "perf.csv").is_file() and (EXAMPLE / "build_manifest.json").is_file()
    copy = copy_tracked(EXAMPLE, tmp_path / "MAD")
    copied = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file())
    assert copied == sorted(tracked_files(EXAMPLE) or [])
    assert not (copy / "perf.csv").exists() and not (copy / "build_manifest.json").exists()
    assert not (copy / "runs").exists() and not list(copy.glob("*.live.log"))
