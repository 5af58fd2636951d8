"""Hostile cards and hostile models on the real dockerd (issue 16 items 5 and 6).

A host file outside the MAD package holds a distinctive text (standing for ``/etc/ssh``'s private keys
or ``/etc/shadow``). A card may not make the run copy it (item 5: an absolute or ``..`` ``scripts``
path), and a model may not make the host read it for a later run or for the row (item 6: symlinks it
plants in the writable ``/myworkspace`` or its run directory, a ``multiple_results`` naming it). The
text must appear in no file the run writes, and in no log. The sync action's own refusal is checked
with a plain ``ansible`` call (local connection).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from madtree import OK, by_model, cli, perf_rows

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
SECRET = "HOSTSECRET-distinctive-9c41"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the MAD package (tmp_path/mad): a run.sh that would succeed, and a secret."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "run.sh").write_text(f"#!/bin/bash\n# {SECRET}\necho 'performance: 7 x'\n")
    (folder / "ssh_host_ed25519_key").write_text(f"{SECRET}-private-key\n")
    (folder / "shadow").write_text(f"root:{SECRET}:19000:0:99999:7:::\n")
    return folder


def assert_secret_nowhere(root: Path) -> None:
    """No file the run wrote under the MAD package (logs, perf.csv, run dirs, manifests) holds the secret."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET not in path.read_text(errors="replace"), path


def refused(res, rows_path: Path, name: str, field: str) -> None:
    """The card is refused: exit 4 naming it (nothing run), or its FAILURE row saying why (exit 3)."""
    assert res.code in (3, 4), res.text
    if res.code == 4:
        assert f"model {name}: {field}" in res.text and "outside" in res.text, res.text
        return
    row = by_model(perf_rows(rows_path))[name]
    assert row["status"] == "FAILURE" and f"model {name}: {field}" in row["reason"], row


# ------------------------------------------------------------------------------------------ item 5
@pytest.mark.parametrize("how", ["absolute", "dotdot"])
def test_scripts_outside_the_package_are_never_copied_or_run(capsys, mad, outside, how) -> None:
    name = mad.name(how)
    scripts = str(outside / "run.sh") if how == "absolute" else "../outside/run.sh"
    mad.models.append({"name": name, "tags": [mad.uid], "dockerfile": "docker/base", "scripts": scripts,
                       "n_gpus": "1", "args": ""})
    mad.save()
    res = cli(capsys, "run", "--tags", mad.uid)
    refused(res, mad.root / "perf.csv", name, "scripts")
    assert SECRET not in res.text
    assert_secret_nowhere(mad.root)
    assert not list(mad.root.rglob("ssh_host_ed25519_key"))


# ------------------------------------------------------------------------------------------ item 6
def test_symlinks_a_model_plants_in_the_package_are_not_followed_by_the_next_run(capsys, mad, outside) -> None:
    # The victim's folder has a legitimate symlink inside the package (it must keep working).
    mad.write("scripts/common/lib.sh", "echo lib-ok\n")
    victim = mad.add("victim", 'source ./lib.sh\ncat leak 2>&1 | head -1\ncat leakdir/ssh_host_ed25519_key 2>&1\n'
                               + OK)
    os.symlink("../common/lib.sh", mad.root / "scripts" / "victim" / "lib.sh")
    planter = mad.add("planter", f'ln -s {outside / "ssh_host_ed25519_key"} /myworkspace/scripts/victim/leak\n'
                                 f'ln -s {outside} /myworkspace/scripts/victim/leakdir\n' + OK)
    res = cli(capsys, "run", "--tags", planter)
    assert res.code == 0, res.text
    assert os.path.islink(mad.root / "scripts" / "victim" / "leak")  # planted on the host, through the bind mount
    res = cli(capsys, "run", "--tags", victim, "--keep-model-dir")
    assert res.code == 0, res.text
    assert by_model(perf_rows())[victim]["status"] == "SUCCESS"
    log = mad.log("victim")
    assert "lib-ok" in log and SECRET not in log
    run_dirs = list(mad.root.glob(f"{victim}.*.run_directory"))
    assert run_dirs and os.path.islink(run_dirs[0] / "leak")  # copied as the link, not its target
    assert_secret_nowhere(mad.root)


def test_multiple_results_symlink_to_a_host_file_is_not_read(capsys, mad, outside) -> None:
    name = mad.add("csvlink", f'ln -s {outside / "shadow"} "$MAD_OUTPUT_CSV"\n' + OK, multiple_results="results.csv")
    res = cli(capsys, "run", "--tags", mad.uid)
    assert res.code == 3, res.text
    [row] = perf_rows()
    assert row["model"] == name and row["status"] == "FAILURE", row
    assert "symlink" in row["reason"], row
    assert SECRET not in res.text
    assert_secret_nowhere(mad.root)


def test_multiple_results_naming_a_host_file_is_refused(capsys, mad, outside) -> None:
    name = mad.add("csvabs", OK, multiple_results=str(outside / "shadow"))
    res = cli(capsys, "run", "--tags", mad.uid)
    refused(res, mad.root / "perf.csv", name, "multiple_results")
    assert SECRET not in res.text
    assert_secret_nowhere(mad.root)


# ------------------------------------------------------------------------------------ the sync action
def test_sync_action_refuses_a_path_outside_src_before_sending(tmp_path, outside) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "scripts" / "a").mkdir(parents=True)
    (src / "scripts" / "a" / "run.sh").write_text("echo a\n")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), LC_ALL="C.UTF-8", LANG="C.UTF-8",
               ANSIBLE_NOCOLOR="1", PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    ansible = Path(sys.executable).parent / "ansible"

    def sync(*paths: str) -> subprocess.CompletedProcess[str]:
        args = json.dumps({"src": str(src), "dest": str(dest), "paths": list(paths)})
        return subprocess.run([str(ansible) if ansible.exists() else "ansible", "localhost", "-c", "local", "-i",
                               "localhost,", "-m", "mad.engine.sync", "-a", args, "-e",
                               f"ansible_python_interpreter={sys.executable}", "--one-line"],
                              env=env, capture_output=True, text=True, timeout=120, check=False)

    for path in (str(outside), "../outside", "scripts/a/../../../outside"):
        done = sync("scripts/a", path)
        assert done.returncode != 0, done.stdout
        assert "refusing to send" in done.stdout and "nothing was sent" in done.stdout, done.stdout
        assert not dest.exists() or not any(dest.rglob("*")), sorted(dest.rglob("*"))
    done = sync("scripts/a")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (dest / "scripts" / "a" / "run.sh").read_text() == "echo a\n"


def test_a_log_replaced_by_a_symlink_is_neither_read_nor_truncated(capsys, mad, outside) -> None:
    """The run logs go beside perf.csv, here the MAD root the container can write: a model swaps its own
    log for a link to a host file. The host must not parse that file as the model's output, and the next
    run must not truncate it."""
    target = outside / "victim.conf"
    target.write_text(f"performance: 1 {SECRET}\nkeep me\n")
    mad.add("logln", f'ln -sf {target} "/myworkspace/${{MAD_MODEL_NAME}}_base.run.live.log"\n')
    for _ in range(2):
        res = cli(capsys, "run", "--tags", mad.uid)
        assert res.code == 3, res.text
        assert SECRET not in res.text
        assert target.read_text() == f"performance: 1 {SECRET}\nkeep me\n"
    assert {row["reason"] for row in perf_rows()} == {"no performance line"}
    assert_secret_nowhere(mad.root)
