"""The ROCm/MAD hub's run conventions, end to end with the real docker engine (issue 14).

The fixture tree tests/fixtures/hub/run/ (written for these tests, modelled on the hub's cards) is copied
into the test's MAD root with a random prefix, then built and run with `madengine-cli run --tags <uid>`:
a provider-less ``huggingface`` data card with ``env_vars``, a data source missing from data.json, a
card whose script is missing, ``.slurm``/``.sbatch`` scripts, a card ``url`` cloned from a local git
repository, a ``multiple_results`` CSV with the column ``models``, and a performance line without a
number. The host's ``MAD_SECRETS_HFTOKEN`` reaches the container, and no file of the run holds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from madtree import by_model, cli, perf_rows

pytestmark = pytest.mark.docker

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hub" / "run"


def _git_repo(path: Path) -> str:
    """A local git repository with one commit (VERSION), as a file:// URL: no network."""
    path.mkdir()
    (path / "VERSION").write_text("fixture-repo-v1\n")
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(git + ["add", "VERSION"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "v1"], check=True)
    return f"file://{path}"


def _hub_tree(root: Path, uid: str, repo_url: str) -> None:
    """The fixture copied over the test's MAD root with its placeholders filled in."""
    for rel in ("models.json", "docker"):
        target = root / rel
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    shutil.copytree(FIXTURE, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("README.md"))
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".Dockerfile"):
            path.write_text(path.read_text().replace("@UID@", uid).replace("@REPO_URL@", repo_url))


def _files_holding(root: Path, needle: str) -> list[str]:
    found = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            try:
                if needle.encode() in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


def test_hub_cards_run(capsys, mad, tmp_path, monkeypatch) -> None:
    uid = mad.uid
    repo_url = _git_repo(tmp_path / "model-repo")
    _hub_tree(mad.root, uid, repo_url)
    token = "hf_" + secrets.token_hex(12)
    monkeypatch.setenv("MAD_SECRETS_HFTOKEN", token)
    context = {"gpu_vendor": "CPU", "guest_os": "UBUNTU", "docker_env_vars": {"OVERRIDDEN": "from-context"}}
    res = cli(capsys, "run", "--tags", uid, "-c", json.dumps(context), "--summary-output", "summary.json")
    # One card's script is missing and one line has no value: FAILURE rows, the run goes on (exit 3, not 4).
    assert res.code == 3, res.text
    assert "nothing was run" not in res.text
    rows = by_model(perf_rows())
    env, slurm, more = "hubrun_env/" + uid, "hubrun_slurm/" + uid, "hubrun_more/" + uid
    assert set(rows) == {f"{env}_hf", f"{env}_nodata", f"{env}_gone", f"{env}_url", f"{slurm}_xpyd",
                         f"{slurm}_nested", f"{slurm}_sbatch", f"{more}_multi_batch_1", f"{more}_multi_batch_8",
                         f"{more}_novalue"}, res.text

    # 1. Provider-less data: the model runs with MAD_DATANAME and no mount; the metric decides.
    hf = rows[f"{env}_hf"]
    assert (hf["status"], hf["performance"], hf["reason"]) == ("SUCCESS", "12.5", ""), hf
    assert (hf["dataname"], hf["data_provider_type"]) == ("huggingface", "")
    log = (mad.root / f"hubrun_env_{uid}_hf_hubrun.run.live.log").read_text()
    assert "MAD_DATANAME=huggingface" in log and "MAD_DATAHOME=<unset>" in log and "data mounts: none" in log
    assert "names no provider in the data config: nothing is mounted" in log
    # 15. The timeout line of every run (a card without a timeout: the 7200 s default).
    assert "\nSetting timeout to " in log
    # 6. env_vars reach the container; the context's docker_env_vars win over the card's.
    assert "MODEL_NAME=Tiny-Model-8B RUN_MORI=1" in log
    assert "QUOTED=say \"hi\" it's" in log
    assert 'BENCHMARK_COMBINATIONS=[{"isl": 1024, "osl": 128}]' in log
    assert 'SHAPE={"tp": [1, 2]} STEPS=3' in log
    assert "OVERRIDDEN=from-context" in log
    # 5. MAD_SECRETS_HFTOKEN reaches the container (its hash proves the value) and is masked in the log.
    assert f"HF_TOKEN sha256: {hashlib.sha256(token.encode()).hexdigest()[:16]}" in log
    assert "HF_TOKEN=******" in log and token not in log

    # 1. A data source missing from data.json does not stop the model: SUCCESS, and the reason says so.
    nodata = rows[f"{env}_nodata"]
    assert nodata["status"] == "SUCCESS", nodata
    assert nodata["reason"].startswith("data not_in_data_json is NOT mounted: "), nodata
    nodata_log = (mad.root / f"hubrun_env_{uid}_nodata_hubrun.run.live.log").read_text()
    assert "data not_in_data_json is NOT mounted" in nodata_log and "MAD_DATANAME=not_in_data_json" in nodata_log
    assert "\nSetting timeout to 7200 seconds.\n" in nodata_log
    assert res.err.count("data not_in_data_json is NOT mounted: data source not_in_data_json is not defined") == 1

    # 3. The card whose script is missing: its FAILURE row names the file.
    gone = rows[f"{env}_gone"]
    assert gone["status"] == "FAILURE" and "scripts/hubrun_env/missing_run.sh not found" in gone["reason"], gone

    # 15. The card url is cloned into the run directory before the script runs.
    url_log = (mad.root / f"hubrun_env_{uid}_url_hubrun.run.live.log").read_text()
    assert rows[f"{env}_url"]["status"] == "SUCCESS"
    assert "cloned: model-repo fixture-repo-v1" in url_log

    # 2. .slurm and .sbatch scripts (one in a subfolder) run with bash on one host.
    assert rows[f"{slurm}_xpyd"]["status"] == "SUCCESS" and rows[f"{slurm}_xpyd"]["performance"] == "3.25"
    xpyd_log = (mad.root / f"hubrun_slurm_{uid}_xpyd_hubrun.run.live.log").read_text()
    assert "slurm script under bash 5: xP=1 yD=1 MAD_DATANAME=huggingface" in xpyd_log
    assert rows[f"{slurm}_nested"]["status"] == "SUCCESS" and rows[f"{slurm}_nested"]["metric"] == "GB/s"
    sbatch = rows[f"{slurm}_sbatch"]
    assert (sbatch["status"], sbatch["performance"]) == ("SUCCESS", "99")
    assert "sbatch script under bash 5: --mode single" in (
        mad.root / f"hubrun_slurm_{uid}_sbatch_hubrun.run.live.log").read_text()

    # 15. A multiple_results CSV with the column "models"; a performance line without a number.
    assert rows[f"{more}_multi_batch_8"]["performance"] == "80"
    assert rows[f"{more}_novalue"]["reason"] == "no performance value on the performance line"
    # 15. The summary counts model runs and rows apart (9 cards, 10 rows).
    assert "9 model run(s), 10 row(s): 8 succeeded, 2 failed, 0 skipped" in res.text

    # 5. No file of the tree, the run directory (runs/), perf.csv or the logs holds the secret.
    assert _files_holding(tmp_path, token) == []
    assert token not in res.out + res.err


def test_manifest_run_with_a_missing_script_runs_the_others(capsys, mad) -> None:
    """Regression: `run --manifest-file` with one card's script gone exited 4 "nothing was run"."""
    ok = mad.add("ok", 'echo "performance: 1 x"\n')
    bad = mad.add("bad", 'echo "performance: 2 x"\n')
    res = cli(capsys, "build", "--tags", mad.uid, "-c", '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}')
    assert res.code == 0, res.text
    (mad.root / "scripts/bad/run.sh").unlink()
    (mad.root / "perf_entry.csv").write_text("left by an upstream run\n")
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json", "--cleanup-perf", "--live-output")
    assert res.code == 3, res.text
    # --cleanup-perf: the intermediate perf files go, perf.csv stays.
    assert not (mad.root / "perf_entry.csv").exists() and "removed 1 intermediate perf file(s)" in res.text
    assert "Setting timeout to 7200 seconds." in res.text  # the live output shows the log's timeout line
    rows = by_model(perf_rows())
    assert rows[ok]["status"] == "SUCCESS"
    assert rows[bad]["status"] == "FAILURE" and "scripts/bad/run.sh not found" in rows[bad]["reason"]
