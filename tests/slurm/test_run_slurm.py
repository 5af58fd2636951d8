"""`madengine-cli run --slurm` on the real SLURM test cluster (tests/infra/slurm.sh over 3 loopback nodes).

Real slurmctld/slurmd/munged, each node's own dockerd (DOCKER_HOST from the TaskProlog), the real
registry. The CLI runs as a subprocess, so exit codes, signals and output are real.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _slurmlib import OK, SlurmMad, nap, slurm_sh, wait_for

pytestmark = pytest.mark.docker
NODES = {"node2", "node3", "node4"}


def test_run_slurm_rows_from_the_nodes(smad: SlurmMad) -> None:
    names = [smad.add(f"ok{i}", OK) for i in range(3)]
    bad = smad.add("bad", 'echo "no metric here"\nexit 1\n')
    smad.build()
    result = smad.run()
    assert result.code == 3, result.text
    rows = {row["model"]: row for row in smad.rows()}
    for name in names:
        row = rows[name]
        assert row["status"] == "SUCCESS", row
        assert row["host"] in NODES
        assert row["deployment_type"] == "slurm"
        assert row["slurm_job_id"].isdigit()
        assert row["nnodes"] == "1" and row["gpus_per_node"] == "1"
    assert rows[bad]["status"] == "FAILURE"
    assert len({row["slurm_job_id"] for row in rows.values()}) == 4
    # Each node that ran a model pulled its image by digest into its own engine.
    for node in smad.nodes:
        ran = [r for r in rows.values() if r["host"] == node.name]
        images = node.docker("images", "--digests", "--format", "{{.Repository}}@{{.Digest}}").stdout
        for row in ran:
            assert row["image_digest"] and f"@{row['image_digest']}" in images, (node.name, images)
    assert not smad.squeue()
    # Nothing of ours is installed on a node: the job ran the executor zipapp from the shared dir.
    scripts = list((smad.root / "runs").glob("*/slurm/jobs/*.sbatch"))
    assert scripts and all("--no-requeue" in s.read_text() and "executor.pyz" in s.read_text() for s in scripts)


def test_context_slurm_object_and_flags(smad: SlurmMad) -> None:
    name = smad.add("ctx", OK)
    smad.build()
    result = smad.run("-c", '{"slurm": {"partition": "nope", "nodelist": "node3"}}', "--partition", "batch")
    assert result.code == 0, result.text  # the flag wins over the context's bad partition
    row = smad.rows()[0]
    assert row["model"] == name and row["host"] == "node3"
    script = next((smad.root / "runs").glob("*/slurm/jobs/*.sbatch")).read_text()
    assert "--partition=batch" in script and "--nodelist=node3" in script


@pytest.mark.parametrize("case", ["partition", "no-sbatch", "controller"])
def test_bad_slurm_setup_exits_4_before_submitting(smad: SlurmMad, tmp_path: Path, case: str) -> None:
    smad.add("never", OK)
    smad.build()
    env = smad.env()
    args: list[str] = []
    if case == "partition":
        args = ["--partition", "nosuchpart"]
        want = "partition 'nosuchpart' does not exist"
    elif case == "no-sbatch":
        bindir = tmp_path / "bin"
        bindir.mkdir()
        for tool in ("python3", "docker"):
            os.symlink(shutil.which(tool), bindir / tool)  # type: ignore[arg-type]
        env["PATH"] = str(bindir)
        want = "not found on PATH: sbatch"
    else:
        conf = tmp_path / "slurm.conf"
        text = Path(smad.conf).read_text().replace("SlurmctldPort=6917", "SlurmctldPort=6999")
        conf.write_text(text)
        env["SLURM_CONF"] = str(conf)
        want = "controller does not answer"
    result = smad.run(*args, env=env)
    assert result.code == 4, result.text
    assert want in " ".join(result.err.split()), result.err
    assert "Traceback" not in result.text
    assert not smad.squeue() and not (smad.root / "perf.csv").exists()


def test_time_limit_exceeded_is_a_failure_row(smad: SlurmMad) -> None:
    name = smad.add("slow", nap(300))
    smad.build()
    started = time.monotonic()
    result = smad.run("--slurm-time", "00:01:00", "--timeout", "0")
    assert result.code == 3, result.text
    row = smad.rows()[0]
    assert row["model"] == name and row["status"] == "FAILURE"
    assert "time limit" in row["reason"], row
    assert time.monotonic() - started < 150
    assert not smad.squeue()
    wait_for(lambda: not any(smad.containers().values()), 30, "the container removed")


def _wait_running(smad: SlurmMad, count: int) -> list[tuple[str, str, str, str]]:
    return wait_for(lambda: (lambda q: q if len([j for j in q if j[1] == "RUNNING"]) >= count else None)(
        smad.squeue()), 60, f"{count} job(s) running")


def test_ctrl_c_cancels_every_job(smad: SlurmMad) -> None:
    smad.add("quick", OK)
    sleepers = [smad.add(f"sleep{i}", nap(300, "asleep")) for i in range(2)]
    smad.build()
    proc = smad.background()
    try:
        _wait_running(smad, 2)
        wait_for(lambda: (smad.root / "perf.csv").exists(), 60, "the quick model's row")
        wait_for(lambda: sum(len(v) for v in smad.containers().values()) >= 2, 60, "containers running")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert time.monotonic() - t0 < 30
    assert not smad.squeue()
    wait_for(lambda: not any(smad.containers().values()), 30, "containers removed")
    rows = smad.rows()
    assert [r["status"] for r in rows] == ["SUCCESS"]
    assert not any(r["model"] in sleepers for r in rows)


def test_kill_9_then_resume_adopts_the_jobs(smad: SlurmMad) -> None:
    names = [smad.add(f"nap{i}", nap(6)) for i in range(2)]
    smad.build()
    proc = smad.background()
    queued = _wait_running(smad, 2)
    proc.kill()
    proc.communicate()
    first_ids = sorted(j[0] for j in queued)
    run_id = next(p.name for p in (smad.root / "runs").iterdir() if p.is_dir())
    result = smad.cli("run", "--resume", run_id, "--slurm")
    assert result.code == 0, result.text
    rows = smad.rows()
    assert sorted(r["model"] for r in rows) == sorted(names)
    # Adopted: the rows come from the first run's jobs; nothing was submitted twice.
    assert sorted(r["slurm_job_id"] for r in rows) == first_ids
    logs = list((smad.root / "runs" / run_id / "slurm" / "results").glob("*.slurm-*.out"))
    assert len(logs) == 2, logs


def test_node_killed_mid_job_is_a_failure_not_requeued(smad: SlurmMad) -> None:
    victim = smad.add("victim", nap(300, "victim-running"))
    other = smad.add("other", nap(3))
    smad.models[0]["slurm"] = {"nodelist": "node3"}
    smad.models[1]["slurm"] = {"nodelist": "node2"}
    smad.save()
    smad.build()
    proc = smad.background()
    try:
        wait_for(lambda: any(j[1] == "RUNNING" and victim in j[2] for j in smad.squeue()), 60, "victim running")
        wait_for(lambda: smad.containers()["node3"], 60, "victim container")
        assert slurm_sh("kill-node", "node3").returncode == 0
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, out + err
    rows = {r["model"]: r for r in smad.rows()}
    assert rows[other]["status"] == "SUCCESS"
    assert rows[victim]["status"] == "FAILURE"
    assert rows[victim]["reason"].startswith("node failed: node3"), rows[victim]
    assert not smad.squeue()  # not requeued
    up = slurm_sh("up")  # the node rejoins for the next test
    assert up.returncode == 0, up.stderr


def test_generate_slurm_bundle_runs_with_plain_sbatch(smad: SlurmMad, tmp_path: Path) -> None:
    names = [smad.add(f"gen{i}", OK) for i in range(2)]
    smad.build()
    bundle = tmp_path / "bundle"
    result = smad.cli("generate", "slurm", "--manifest-file", "build_manifest.json", "--output-dir", str(bundle))
    assert result.code == 0, result.text
    for rel in ("submit.sh", "executor.pyz", "build_manifest.json", "README.md"):
        assert (bundle / rel).is_file(), rel
    assert len(list((bundle / "jobs").glob("*.sbatch"))) == 2
    submitted = subprocess.run(["bash", str(bundle / "submit.sh")], env=smad.env(), capture_output=True,
                               text=True, timeout=60, check=False)
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.count(": job ") == 2
    for name in names:
        rows_file = bundle / "results" / f"{name}.rows.json"
        wait_for(rows_file.is_file, 60, f"{rows_file}")
        wait_for(lambda f=rows_file: json.loads(f.read_text())[0].get("slurm_job_id"), 30, "the slurm columns")
        row = json.loads(rows_file.read_text())[0]
        assert row["status"] == "SUCCESS" and row["host"] in NODES and row["deployment_type"] == "slurm"
    wait_for(lambda: not smad.squeue(), 30, "the queue empty")


def test_multi_node_torchrun_card_one_container_per_node(smad: SlurmMad) -> None:
    script = ('echo "rank=$NODE_RANK nnodes=$NNODES master=$MASTER_ADDR:$MASTER_PORT world=$WORLD_SIZE"\n'
              'echo "runner=$MAD_MULTI_NODE_RUNNER"\n'
              'if [ "$NODE_RANK" = 1 ]; then echo "performance: 7.5 samples_per_second"; fi\n')
    name = smad.add("mn", script, distributed={"launcher": "torchrun", "nnodes": 3, "nproc_per_node": 1})
    smad.build()
    result = smad.run()
    assert result.code == 0, result.text
    rows = smad.rows()
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["model"] == name and row["status"] == "SUCCESS" and row["performance"] == "7.5"
    assert row["nnodes"] == "3" and row["deployment_type"] == "slurm"
    results = next((smad.root / "runs").glob("*/slurm/results"))
    logs = sorted(results.glob("rank*/*.run.live.log"))
    assert len(logs) == 3, logs  # every node's log kept
    texts = [p.read_text() for p in logs]
    ranks = sorted(line.split()[0] for t in texts for line in t.splitlines() if line.startswith("rank="))
    assert ranks == ["rank=0", "rank=1", "rank=2"]
    assert all("nnodes=3 master=127.0.0." in t and "world=3" in t for t in texts)
    assert all("runner=torchrun --nnodes=3 --nproc_per_node=1 --node_rank=" in t for t in texts)
    rank1 = json.loads((results / "rank1" / f"{name}.rows.json").read_text())[0]
    assert row["host"] == rank1["host"] and row["host"] in NODES
    assert {json.loads(p.read_text())[0]["host"] for p in results.glob("rank*/*.rows.json")} == NODES


def test_slurm_multi_card_script_runs_outside_containers(smad: SlurmMad) -> None:
    name = smad.name("sm")
    smad.write("scripts/sm/run.slurm", (
        '#!/bin/bash\n'
        'echo "first=$(hostname) model=$MAD_MODEL_NAME image=$MAD_DOCKER_IMAGE card=$CARD_KNOB"\n'
        'srun --ntasks-per-node=1 bash -c \'echo "step on $(hostname)"\'\n'
        'printf "model,performance,metric\\nalpha,1.5,tok/s\\nbeta,2.5,tok/s\\n" > perf_sm.csv\n'))
    smad.models.append({"name": name, "tags": [smad.uid], "dockerfile": "docker/base",
                        "scripts": "scripts/sm/run.slurm", "n_gpus": "1", "args": "",
                        "multiple_results": "perf_sm.csv", "env_vars": {"CARD_KNOB": "on"},
                        "distributed": {"launcher": "slurm_multi"}, "slurm": {"nodes": 2}})
    smad.save()
    smad.build()
    result = smad.run()
    assert result.code == 0, result.text
    rows = sorted(smad.rows(), key=lambda r: r["model"])
    assert [r["model"] for r in rows] == [f"{name}_alpha", f"{name}_beta"]
    assert [r["performance"] for r in rows] == ["1.5", "2.5"]
    assert all(r["deployment_type"] == "slurm" and r["nnodes"] == "2" and r["host"] in NODES for r in rows)
    log = next((smad.root / "runs").glob("*/slurm/results/*.run.live.log")).read_text()
    assert f"model={name}" in log and "card=on" in log and "image=127.0.0.1:5000/" in log
    assert log.count("step on node") == 2, log
    assert not any(smad.containers().values())  # no container of ours: the script manages its own


def test_image_transfer_copy_loads_the_tarball_on_the_node(smad: SlurmMad) -> None:
    name = smad.add("cp", OK, slurm={"nodelist": "node4"})
    done = smad.cli("build", "--tags", smad.uid, "-c", '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}')
    assert done.code == 0, done.text  # no registry: a local tag only
    node4 = next(n for n in smad.nodes if n.name == "node4")
    result = smad.run("--image-transfer", "copy")
    assert result.code == 0, result.text
    row = smad.rows()[0]
    assert row["model"] == name and row["status"] == "SUCCESS" and row["host"] == "node4"
    labelled = node4.docker("images", "-q", "--filter", f"label=madengine.test={smad.uid}").stdout.split()
    assert labelled, "the image was loaded into node4's engine"


def test_full_workflow_tags_slurm_registry(smad: SlurmMad) -> None:
    name = smad.add("wf", OK)
    missing = smad.cli("run", "--tags", smad.uid, "--slurm", "-c", '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}')
    assert missing.code == 4 and "--registry" in missing.err, missing.text
    result = smad.cli("run", "--tags", smad.uid, "--slurm", "--registry", "127.0.0.1:5000",
                      "-c", '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}')
    assert result.code == 0, result.text
    row = smad.rows()[0]
    assert row["model"] == name and row["status"] == "SUCCESS" and row["deployment_type"] == "slurm"
    assert row["image_digest"].startswith("sha256:")  # pushed, pulled by digest on the node
    assert "@sha256:" in row["docker_image"]  # pulled by digest on the node


def test_rerun_failed_does_not_take_the_earlier_rows(smad: SlurmMad) -> None:
    name = smad.add("flaky", 'if [ "$FLAKY_OK" = 1 ]; then sleep 1; echo "performance: 3 x"; else exit 1; fi\n')
    smad.build()
    first = smad.run()
    assert first.code == 3, first.text
    run_id = next(p.name for p in (smad.root / "runs").iterdir() if p.is_dir())
    again = smad.cli("run", "--rerun-failed", run_id, "-c", '{"docker_env_vars": {"FLAKY_OK": "1"}}')
    assert again.code == 0, again.text
    rows = [r for r in smad.rows() if r["model"] == name]
    assert [r["status"] for r in rows] == ["FAILURE", "SUCCESS"], rows
    assert rows[0]["slurm_job_id"] != rows[1]["slurm_job_id"]


def test_a_cards_credential_reaches_its_container_and_no_file(smad: SlurmMad) -> None:
    """A card's `cred` (credential.json) reaches its job as the local run gives it (X_USERNAME,
    X_PASSWORD), through sbatch's environment: in no request, batch script, log or row."""
    secret = "slurm-cred-" + os.urandom(8).hex()
    smad.write("credential.json", json.dumps({"SLURMCRED": {"username": "svc", "password": secret}}))
    name = smad.add("cred", 'echo "user=$SLURMCRED_USERNAME seen=${#SLURMCRED_PASSWORD} $SLURMCRED_PASSWORD"\n'
                            'echo "performance: 1 items_per_second"\n', cred="SLURMCRED")
    other = smad.add("nocred", 'echo "seen=${#SLURMCRED_PASSWORD}"\necho "performance: 1 items_per_second"\n')
    smad.build()
    result = smad.run()
    assert result.code == 0, result.text
    rows = {r["model"]: r for r in smad.rows()}
    assert rows[name]["status"] == "SUCCESS" and rows[other]["status"] == "SUCCESS", rows
    logs = {log.name: log.read_text() for log in (smad.root / "runs").glob("*/slurm/results/*.run.live.log")}
    assert any(f"user=svc seen={len(secret)} ******" in text for text in logs.values()), logs
    assert any("seen=0" in text for text in logs.values()), "a card without cred gets none"
    requests = [json.loads(p.read_text()) for p in (smad.root / "runs").glob("*/slurm/requests/*.json")]
    assert sorted(n for r in requests for n in r["secret_env_names"]) == ["SLURMCRED_PASSWORD", "SLURMCRED_USERNAME"]
    assert secret not in result.text
    for path in [p for p in smad.root.rglob("*") if p.is_file() and p.name != "credential.json"]:
        assert secret.encode() not in path.read_bytes(), path


def test_a_context_secret_reaches_the_job_but_no_file(smad: SlurmMad) -> None:
    """A secret-named context value goes through sbatch's environment, never the shared directory."""
    secret = "slurm-secret-" + os.urandom(8).hex()
    name = smad.add("sec", 'echo "seen=${#MY_API_TOKEN} $MY_API_TOKEN"\necho "performance: 1 items_per_second"\n')
    smad.build()
    result = smad.run("-c", json.dumps({"docker_env_vars": {"MY_API_TOKEN": secret, "OMP_NUM_THREADS": "2"}}))
    assert result.code == 0, result.text
    [row] = [r for r in smad.rows() if r["model"] == name]
    assert row["status"] == "SUCCESS", row
    logs = list((smad.root / "runs").glob("*/slurm/results/*.run.live.log"))
    assert any(f"seen={len(secret)} ******" in log.read_text() for log in logs), "the container saw it, masked"
    request = json.loads(next((smad.root / "runs").glob("*/slurm/requests/*.json")).read_text())
    assert request["secret_env_names"] == ["MY_API_TOKEN"]
    assert request["context"]["docker_env_vars"] == {"OMP_NUM_THREADS": "2"}
    for path in [p for p in smad.root.rglob("*") if p.is_file()]:
        assert secret.encode() not in path.read_bytes(), path
