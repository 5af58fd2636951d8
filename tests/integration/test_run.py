"""`madengine-cli run` against the real dockerd and registry (tests/infra/up.sh).

Every test builds a tiny MAD tree in tmp_path whose model names carry a random prefix (``mt-1a2b3c4d_ok``),
so images (``ci-mt-1a2b3c4d_ok_base``), containers (label ``madengine.model``) and registry repositories
are unique; the ``mad`` fixture (conftest.py; the helpers are in madtree.py) removes all of them after the
test. Tests go through the real entry point (`invoke(app, ...)` in-process, or the `madengine-cli`
console script in a subprocess).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import time
from typing import Any

import pytest
from madtree import (
    BASE_ARG,
    OK,
    REGISTRY,
    build,
    by_model,
    cli,
    cli_command,
    mad_images,
    perf_header,
    perf_rows,
    wait_for,
)

pytestmark = pytest.mark.docker

# The column list, spelled out here (not imported) so that a drift in the code shows up.
UPSTREAM_29 = [
    "model", "n_gpus", "nnodes", "gpus_per_node", "training_precision", "pipeline", "args", "tags", "docker_file",
    "base_docker", "docker_sha", "docker_image", "git_commit", "machine_name", "deployment_type", "launcher",
    "gpu_architecture", "performance", "metric", "relative_change", "status", "build_duration", "test_duration",
    "dataname", "data_provider_type", "data_size", "data_download_duration", "build_number",
    "additional_docker_run_options",
]
OURS = ["host", "run_id", "image_digest", "reason", "started_at"]
SUMMARY_KEYS = {"successful_runs", "failed_runs", "skipped_runs", "total_runs", "total_execution_time", "run_id"}


# ------------------------------------------------------------------------------------------- outcomes
def test_success_nonzero_exit_and_no_performance_line(capsys, mad, docker_client) -> None:
    ok = mad.add("ok", OK)
    fail = mad.add("fail", 'echo "performance: 1 items_per_second"\necho boom >&2\nexit 3\n')
    noperf = mad.add("noperf", "echo 'no numbers here'\n")
    res = cli(capsys, "run", "--tags", mad.uid, "--summary-output", "summary.json")
    assert res.code == 3, res.text
    rows = by_model(perf_rows())
    assert set(rows) == {ok, fail, noperf}
    assert rows[ok]["status"] == "SUCCESS" and rows[ok]["reason"] == ""
    assert rows[ok]["performance"] == "42.5" and rows[ok]["metric"] == "items_per_second"
    assert rows[ok]["docker_image"] == mad.image("ok") and rows[ok]["host"] == "localhost"
    assert float(rows[ok]["test_duration"]) > 0 and rows[ok]["started_at"]
    # A performance line does not save a run that exited non-zero.
    assert rows[fail]["status"] == "FAILURE" and rows[fail]["reason"] == "non-zero exit 3"
    assert rows[noperf]["status"] == "FAILURE" and rows[noperf]["reason"] == "no performance line"
    assert len({row["run_id"] for row in rows.values()}) == 1
    # The run log holds the command line and the whole output (stderr too); a snapshot lies beside it.
    log = mad.log("fail")
    assert log.startswith("$ docker run --network host") and "boom" in log
    assert f"ok: {ok}" in mad.log("ok")
    snapshot = json.loads((mad.root / f"{ok}.sysenv.json").read_text())
    assert snapshot["docker"]["Version"] and snapshot["kernel"]
    assert mad.containers(docker_client) == []
    summary = json.loads((mad.root / "summary.json").read_text())
    assert set(summary) == {"build_phase", "run_phase", "overall_success"}
    assert summary["overall_success"] is False
    run = summary["run_phase"]
    assert [r["model"] for r in run["successful_runs"]] == [ok]
    assert sorted(r["model"] for r in run["failed_runs"]) == sorted([fail, noperf])
    assert run["total_runs"] == 3
    assert "Build phase" in res.err and "Run phase" in res.err
    assert "Run results" in res.out


def test_context_env_mounts_and_model_args_reach_the_container(capsys, mad, tmp_path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note.txt").write_text("mounted note\n")
    envy = mad.add("envy", 'echo "args=$* greeting=$GREETING vendor=$MAD_GPU_VENDOR name=$MAD_MODEL_NAME"\n'
                           'cat /mnt/shared/note.txt\necho kept > kept.txt\necho "performance: 2 x"\n',
                   args="--from-model")
    context = {"docker_env_vars": {"GREETING": "hi there"}, "docker_mounts": {"/mnt/shared": str(shared)},
               "model_args": "--from-context 1"}
    res = cli(capsys, "run", "--tags", mad.uid, "-c", json.dumps(context), "--keep-model-dir")
    assert res.code == 0, res.text
    log = mad.log("envy")
    assert f"args=--from-context 1 greeting=hi there vendor=CPU name={envy}" in log
    assert "mounted note" in log
    row = perf_rows()[0]
    assert row["args"] == "--from-context 1"
    # --keep-model-dir keeps the run directory, with what the script wrote in it.
    kept = list(mad.root.glob(f"{envy}.*.run_directory"))
    assert len(kept) == 1 and (kept[0] / "kept.txt").read_text() == "kept\n"


def test_timeout_removes_the_container_and_the_next_model_runs(capsys, mad, docker_client) -> None:
    slow = mad.add("slow", "echo started\nsleep 60\necho 'performance: 1 x'\n")
    after = mad.add("after", OK)
    t0 = time.monotonic()
    res = cli(capsys, "run", "--tags", mad.uid, "--timeout", "2")
    elapsed = time.monotonic() - t0
    assert res.code == 3, res.text
    rows = by_model(perf_rows())
    assert rows[slow]["status"] == "FAILURE" and rows[slow]["reason"] == "timeout after 2 s"
    assert 1.5 <= float(rows[slow]["test_duration"]) < 7
    assert rows[after]["status"] == "SUCCESS"
    assert elapsed < 12, elapsed  # build, 2 s to the deadline, the kill (within 5 s), the next model
    assert "started" in mad.log("slow")
    assert mad.containers(docker_client, "slow") == []
    assert [c for c in docker_client.api.containers(all=True)
            if any(name.startswith(f"/madengine-{slow}") for name in c["Names"])] == []


def test_model_timeout_applies_and_timeout_zero_means_none(capsys, mad) -> None:
    nap = mad.add("nap", "sleep 2\necho 'performance: 7 naps'\n", timeout=1)
    res = cli(capsys, "run", "--tags", mad.uid)
    assert res.code == 3, res.text
    assert by_model(perf_rows())[nap]["reason"] == "timeout after 1 s"
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json", "--timeout", "0")
    assert res.code == 0, res.text
    last = perf_rows()[-1]
    assert (last["model"], last["status"], last["performance"]) == (nap, "SUCCESS", "7")


def test_multiple_results_rows_and_extra_columns(capsys, mad) -> None:
    multi = mad.add("multi", 'cat > "$MAD_OUTPUT_CSV" <<EOF\n'
                             "model,performance,metric,latency_ms,batch\n"
                             "small,1200.5,samples_per_second,3.5,8\n"
                             "large,900,samples_per_second,7.25,64\n"
                             "EOF\n"
                             'echo "performance: 1200.5 samples_per_second"\n',
                    multiple_results="results.csv")
    res = cli(capsys, "run", "--tags", mad.uid)
    assert res.code == 0, res.text
    rows = perf_rows()
    assert [(r["model"], r["status"], r["performance"], r["latency_ms"], r["batch"]) for r in rows] == [
        (f"{multi}_small", "SUCCESS", "1200.5", "3.5", "8"),
        (f"{multi}_large", "SUCCESS", "900", "7.25", "64"),
    ]
    assert perf_header() == UPSTREAM_29 + OURS + ["latency_ms", "batch"]


# ------------------------------------------------------------------------------------------- tools, scripts
WRAP = 'echo "WRAP $1 begin"\nname=$1\nshift\n"$@"\nrc=$?\necho "WRAP $name end"\nexit $rc\n'


def test_tool_stacking_order_and_context_pre_post_scripts(capsys, mad) -> None:
    mad.add("tooled", 'echo "MODEL args=$* outer=$OUTER_ON inner=$INNER_ON"\necho "performance: 3 x"\n',
            args="--alpha 1")
    mad.write("scripts/common/wrap.sh", WRAP)
    for step in ("pre", "post"):
        for who in ("outer", "inner", "ctx"):
            mad.write(f"scripts/common/{step}_{who}.sh", f'echo "{step.upper()} {who} $*"\n')
    tool = {"cmd": "bash /myworkspace/scripts/common/wrap.sh {0}",
            "pre_scripts": [{"path": "scripts/common/pre_{0}.sh", "args": "{0}-arg"}],
            "post_scripts": [{"path": "scripts/common/post_{0}.sh"}],
            "env_vars": {"{1}_ON": "yes"}}

    def tool_entry(who: str) -> dict[str, Any]:
        return json.loads(json.dumps(tool).replace("{0}", who).replace("{1}", who.upper()))

    mad.write("scripts/common/tools.json", json.dumps({"tools": {"outer": tool_entry("outer"),
                                                                 "inner": tool_entry("inner")}}))
    context = {"tools": [{"name": "outer"}, {"name": "inner"}],
               "pre_scripts": [{"path": "scripts/common/pre_ctx.sh", "args": "a b"}],
               "post_scripts": [{"path": "scripts/common/post_ctx.sh"}]}
    res = cli(capsys, "run", "--tags", mad.uid, "-c", json.dumps(context), "--live-output")
    assert res.code == 0, res.text
    markers = [line.strip() for line in mad.log("tooled").splitlines()
               if line.split(" ")[0] in ("PRE", "POST", "WRAP", "MODEL")]
    assert markers == [
        "PRE outer outer-arg", "PRE inner inner-arg", "PRE ctx a b",
        "WRAP outer begin", "WRAP inner begin",
        "MODEL args=--alpha 1 outer=yes inner=yes",
        "WRAP inner end", "WRAP outer end",
        "POST ctx", "POST inner", "POST outer",
    ]
    assert perf_rows()[0]["status"] == "SUCCESS"
    # --live-output streams every line, prefixed with the model name.
    assert f"[{mad.name('tooled')}] WRAP outer begin" in res.out


def test_tools_config_option_is_read(capsys, mad, tmp_path, monkeypatch) -> None:
    mad.add("t", 'echo "performance: 1 x"\n')
    mad.write("scripts/common/mark.sh", "echo MARKER-TOOL-RAN\n")
    # Run from another directory: a relative --tools-config is found there, as the build finds it.
    work = tmp_path / "work"
    work.mkdir()
    (work / "my_tools.json").write_text(json.dumps({"tools": {"marker": {"pre_scripts": [
        {"path": "scripts/common/mark.sh"}]}}}))
    monkeypatch.chdir(work)
    res = cli(capsys, "run", "--mad-dir", str(mad.root), "--tags", mad.uid, "--tools-config", "my_tools.json",
              "-c", '{"tools": [{"name": "marker"}]}')
    assert res.code == 0, res.text
    assert "MARKER-TOOL-RAN" in (work / f"{mad.name('t')}_base.run.live.log").read_text()
    assert perf_rows(work / "perf.csv")[0]["status"] == "SUCCESS"


@pytest.mark.parametrize("context, needle", [
    ({"tools": [{"name": "no_such_tool"}]}, "no_such_tool"),
    ({"pre_scripts": [{"path": "scripts/common/missing_pre.sh"}]}, "missing_pre.sh"),
    ({"post_scripts": [{"path": "scripts/common/missing_post.sh"}]}, "missing_post.sh"),
])
def test_missing_tool_or_script_is_exit_4_before_anything_runs(capsys, mad, docker_client, context,
                                                                needle) -> None:
    mad.add("ok", OK)
    mad.write("scripts/common/tools.json", json.dumps({"tools": {"real": {"cmd": ""}}}))
    # Full workflow: caught before the build.
    res = cli(capsys, "run", "--tags", mad.uid, "-c", json.dumps(context))
    assert res.code == 4, res.text
    assert needle in res.text
    assert mad_images(docker_client, mad) == []
    assert not (mad.root / "perf.csv").exists()
    # Execution only, from a manifest: caught before any container.
    build(capsys, mad)
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json", "-c", json.dumps(context))
    assert res.code == 4, res.text
    assert needle in res.text
    assert not (mad.root / "perf.csv").exists() or perf_rows() == []
    assert mad.containers(docker_client) == []
    assert not list(mad.root.glob("*.run.live.log"))


# ------------------------------------------------------------------------------------------- data
def test_local_data_mount_and_a_missing_one(capsys, mad) -> None:
    mad.write("data/ds/hello.txt", "hello from the data set\n")
    mad.write("data.json", json.dumps({"ds": {"local": "data/ds"}, "gone": {"local": "data/not_there"}}))
    reader = mad.add("reader", 'echo "home=$MAD_DATAHOME name=$MAD_DATANAME"\ncat "$MAD_DATAHOME/hello.txt"\n'
                               'touch "$MAD_DATAHOME/new" 2>/dev/null && echo WRITABLE || echo READONLY\n'
                               'echo "performance: 5 reads"\n', data="ds")
    missing = mad.add("missing", OK, data="gone")
    after = mad.add("after", OK)
    res = cli(capsys, "run", "--tags", mad.uid)
    # Data that cannot be mounted does not stop its model (issue 14): the metric decides, the reason says so.
    assert res.code == 0, res.text
    rows = by_model(perf_rows())
    assert rows[reader]["status"] == "SUCCESS"
    assert (rows[reader]["dataname"], rows[reader]["data_provider_type"]) == ("ds", "local")
    log = mad.log("reader")
    assert "home=/data/ds name=ds" in log and "hello from the data set" in log and "READONLY" in log
    assert not (mad.root / "data/ds/new").exists()
    assert rows[missing]["status"] == "SUCCESS"
    assert rows[missing]["reason"].startswith("data gone is NOT mounted: data source gone not found")
    assert "data gone is NOT mounted" in mad.log("missing")
    assert rows[after]["status"] == "SUCCESS"


# ------------------------------------------------------------------------------------------- run modes
def test_keep_alive_leaves_the_container_running(capsys, mad, docker_client) -> None:
    kept = mad.add("kept", OK)
    res = cli(capsys, "run", "--tags", mad.uid, "--keep-alive")
    containers = mad.containers(docker_client, "kept")
    try:
        assert res.code == 0, res.text
        assert len(containers) == 1
        container = docker_client.containers.get(containers[0]["Id"])
        assert container.status == "running"
        assert perf_rows()[0]["status"] == "SUCCESS"
        line = f"docker exec -it {container.name} bash"
        assert line in res.err  # printed whole, on one line, ready to paste
        assert container.exec_run(["bash", "-c", "echo $MAD_MODEL_NAME"]).output.decode().strip() == kept
        assert container.exec_run(["ls", "/myworkspace/run_directory"]).exit_code == 0
    finally:
        for entry in containers:
            docker_client.api.remove_container(entry["Id"], force=True)


def test_skip_model_run_runs_pre_scripts_only(capsys, mad, docker_client) -> None:
    skipped = mad.add("skipped", 'echo MODEL-RAN\necho "performance: 1 x"\n')
    mad.write("scripts/common/pre.sh", 'echo "PRE-RAN $1"\n')
    res = cli(capsys, "run", "--tags", mad.uid, "--skip-model-run",
              "-c", '{"pre_scripts": [{"path": "scripts/common/pre.sh", "args": "hello"}]}')
    assert res.code == 0, res.text
    row = perf_rows()[0]
    assert (row["model"], row["status"], row["reason"]) == (skipped, "SKIPPED", "--skip-model-run")
    log = mad.log("skipped")
    assert "PRE-RAN hello" in log and "MODEL-RAN" not in log.split("\n", 1)[1]
    assert mad.containers(docker_client) == []


def test_skip_gpu_arch_is_skipped_unless_disabled(capsys, mad) -> None:
    picky = mad.add("picky", OK, skip_gpu_arch=["gfx90a"])
    ctx = '{"gpu_architecture": "gfx90a"}'
    res = cli(capsys, "run", "--tags", mad.uid, "-c", ctx)
    assert res.code == 0, res.text
    row = perf_rows()[-1]
    assert (row["model"], row["status"], row["reason"]) == (picky, "SKIPPED", "skip_gpu_arch lists gfx90a")
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json", "-c", ctx, "--disable-skip-gpu-arch")
    assert res.code == 0, res.text
    row = perf_rows()[-1]
    assert (row["model"], row["status"], row["gpu_architecture"]) == (picky, "SUCCESS", "gfx90a")


def test_timeout_below_minus_one_is_exit_4(capsys, mad, docker_client) -> None:
    mad.add("ok", OK)
    res = cli(capsys, "run", "--tags", mad.uid, "--timeout", "-2")
    assert res.code == 4, res.text
    assert "--timeout -2" in res.text
    assert mad_images(docker_client, mad) == []
    assert not (mad.root / "build_manifest.json").exists()


# ------------------------------------------------------------------------------------------- manifests
def test_manifest_run_pulls_by_digest_after_the_local_image_is_gone(capsys, mad, docker_client) -> None:
    pulled = mad.add("pulled", OK)
    mad.repos.append(mad.image("pulled"))
    manifest = build(capsys, mad, "--registry", REGISTRY)
    entry = manifest["built_images"][mad.image("pulled")]
    digest = entry["image_digest"]
    assert digest and digest.startswith("sha256:")
    for image in mad_images(docker_client, mad):
        docker_client.images.remove(image.id, force=True)
    assert mad_images(docker_client, mad) == []
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json")
    assert res.code == 0, res.text
    row = perf_rows()[0]
    assert (row["model"], row["status"]) == (pulled, "SUCCESS")
    assert row["image_digest"] == digest
    assert row["docker_image"] == f"{REGISTRY}/{mad.image('pulled')}@{digest}"
    assert any(d.endswith("@" + digest) for d in docker_client.images.get(row["docker_image"]).attrs["RepoDigests"])
    # A digest the registry does not have: a FAILURE row for that model, and the run goes on.
    other = mad.add("other", OK)
    bogus = "sha256:" + "0" * 64
    manifest["built_images"]["bogus"] = dict(entry, docker_image="bogus", image_digest=bogus,
                                             registry_image=f"{REGISTRY}/{mad.image('pulled')}@{bogus}")
    manifest["built_models"] = {
        "other": dict(manifest["built_models"][mad.image("pulled")], name=other, docker_image="bogus"),
        mad.image("pulled"): manifest["built_models"][mad.image("pulled")]}
    (mad.root / "bad_digest.json").write_text(json.dumps(manifest))
    res = cli(capsys, "run", "--manifest-file", "bad_digest.json")
    assert res.code == 3, res.text
    rows = perf_rows()[1:]
    assert [(r["model"], r["status"]) for r in rows] == [(other, "FAILURE"), (pulled, "SUCCESS")]
    assert rows[0]["reason"].startswith("pull failed"), rows[0]


@pytest.mark.parametrize("content, needle", [
    (None, "not found"),
    ('{"built_images": {', "malformed JSON"),
    ('{"manifest_version": 99, "built_images": {}}', "manifest_version 99"),
])
def test_bad_manifest_is_exit_4_and_never_builds(capsys, mad, docker_client, content, needle) -> None:
    mad.add("ok", OK)
    if content is not None:
        mad.write("m.json", content)
    res = cli(capsys, "run", "--manifest-file", "m.json")  # (with --tags too: refused, exit 4)
    assert res.code == 4, res.text
    assert needle in res.text
    assert mad_images(docker_client, mad) == []
    assert not (mad.root / "build_manifest.json").exists()
    assert not (mad.root / "perf.csv").exists()


def test_neither_manifest_nor_tags_is_exit_4_with_an_example(capsys, mad) -> None:
    res = cli(capsys, "run")
    assert res.code == 4, res.text
    assert "madengine-cli run --tags" in res.text and "--manifest-file" in res.text


# ------------------------------------------------------------------------------------------- perf.csv
def test_perf_csv_columns_and_appending_to_an_old_25_column_file(capsys, mad) -> None:
    ok = mad.add("ok", OK)
    old_header = UPSTREAM_29[:25]
    old_rows = [dict.fromkeys(old_header, ""), dict.fromkeys(old_header, "")]
    old_rows[0].update(model="legacy_a", performance="12.5", metric="fps", status="SUCCESS", args="--x 1,2")
    old_rows[1].update(model="legacy_b", status="FAILURE", dataname="imagenet")
    with open("perf.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, old_header)
        writer.writeheader()
        writer.writerows(old_rows)
    res = cli(capsys, "run", "--tags", mad.uid)
    assert res.code == 0, res.text
    assert perf_header() == UPSTREAM_29 + OURS
    rows = perf_rows()
    assert [r["model"] for r in rows] == ["legacy_a", "legacy_b", ok]
    for old, new in zip(old_rows, rows, strict=False):
        assert {k: new[k] for k in old_header} == old
        assert all(new[k] == "" for k in UPSTREAM_29[25:] + OURS)
    assert rows[2]["status"] == "SUCCESS"


def test_concurrent_runs_append_to_one_perf_csv_without_loss(capsys, mad) -> None:
    names = [mad.add(f"c{i}", f'echo "performance: {i + 1} x"\n') for i in range(4)]
    build(capsys, mad)
    shared = mad.root / "results" / "perf.csv"
    procs = [subprocess.Popen([*cli_command(), "run", "--manifest-file", "build_manifest.json",
                               "--output", str(shared), "--summary-output", f"s{n}.json"],
                              cwd=mad.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for n in range(2)]
    outputs = [proc.communicate(timeout=180)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    rows = perf_rows(shared)
    run_ids = [json.loads((mad.root / f"s{n}.json").read_text())["run_id"] for n in range(2)]
    assert len(rows) == 8
    for run_id in run_ids:
        mine = [r for r in rows if r["run_id"] == run_id]
        assert sorted((r["model"], r["status"], r["performance"]) for r in mine) == sorted(
            (name, "SUCCESS", str(i + 1)) for i, name in enumerate(names))
    assert shared.read_text().count("model,n_gpus,") == 1
    # Each run log is whole: a run never writes into the log another run is writing.
    for i, name in enumerate(names):
        logs = list(shared.parent.glob(f"{name}_base*.run.live.log"))
        assert 1 <= len(logs) <= 2
        for log in logs:
            text = log.read_text()
            assert text.startswith("$ docker run") and text.count("$ docker run") == 1, text
            assert f"performance: {i + 1} x" in text and "\0" not in text
    assert not (mad.root / "run_directory").is_dir() or not any((mad.root / "run_directory").iterdir())


def test_ctrl_c_removes_the_container_and_keeps_finished_rows(mad, docker_client) -> None:
    fast = mad.add("fast", OK)
    slow = mad.add("slow", "echo SLOW-STARTED\nsleep 60\necho 'performance: 1 x'\n")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([*cli_command(), "run", "--tags", mad.uid, "--live-output"], cwd=mad.root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        log = mad.root / f"{slow}_base.run.live.log"
        wait_for(lambda: log.is_file() and "SLOW-STARTED" in log.read_text(), 120, "the slow model to start")
        # Rows are appended as each model finishes: the fast one's is there while the slow one runs.
        assert [r["model"] for r in perf_rows(mad.root / "perf.csv")] == [fast]
        assert [c["State"] for c in mad.containers(docker_client, "slow")] == ["running"]
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, output
    assert "Interrupted" in output
    assert mad.containers(docker_client, "slow") == []
    rows = perf_rows(mad.root / "perf.csv")
    assert [(r["model"], r["status"]) for r in rows] == [(fast, "SUCCESS")]
    assert not list(mad.root.glob("*.run_directory"))


# ------------------------------------------------------------------------------------------- summaries
def test_summary_output_execution_only(capsys, mad) -> None:
    ok = mad.add("ok", OK)
    bad = mad.add("bad", "exit 1\n")
    build(capsys, mad)
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json", "--summary-output", "s.json")
    assert res.code == 3, res.text
    summary = json.loads((mad.root / "s.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert [r["model"] for r in summary["successful_runs"]] == [ok]
    assert [(r["model"], r["reason"]) for r in summary["failed_runs"]] == [(bad, "non-zero exit 1")]
    assert summary["skipped_runs"] == [] and summary["total_runs"] == 2
    assert summary["total_execution_time"] > 0
    assert {r["run_id"] for r in perf_rows()} == {summary["run_id"]}


def test_full_workflow_build_failure_is_exit_2_and_good_models_still_run(capsys, mad) -> None:
    good = mad.add("good", OK)
    mad.write("docker/broken.Dockerfile", BASE_ARG + f"LABEL madengine.test={mad.uid}\nRUN exit 7\n")
    mad.add("broken", OK)
    mad.models[-1]["dockerfile"] = "docker/broken"
    mad.save()
    res = cli(capsys, "run", "--tags", mad.uid, "--summary-output", "s.json")
    assert res.code == 2, res.text
    summary = json.loads((mad.root / "s.json").read_text())
    assert set(summary) == {"build_phase", "run_phase", "overall_success"}
    assert summary["overall_success"] is False
    assert [f["model"] for f in summary["build_phase"]["failed_builds"]] == [mad.name("broken")]
    assert set(summary["run_phase"]) == SUMMARY_KEYS
    assert [r["model"] for r in summary["run_phase"]["successful_runs"]] == [good]
    assert [(r["model"], r["status"]) for r in perf_rows()] == [(good, "SUCCESS")]


def test_full_workflow_success_summary(capsys, mad) -> None:
    ok = mad.add("ok", OK)
    res = cli(capsys, "run", "--tags", mad.uid, "--summary-output", "s.json")
    assert res.code == 0, res.text
    summary = json.loads((mad.root / "s.json").read_text())
    assert summary["overall_success"] is True
    assert [r["model"] for r in summary["run_phase"]["successful_runs"]] == [ok]
    assert summary["build_phase"]["failed_builds"] == []


# ------------------------------------------------------------------------------------------- secrets
def test_cred_env_reaches_the_container_and_never_a_file(capsys, mad, unique_name) -> None:
    password = f"pw-{unique_name}-s3cr3t"
    cred = "mtcred"
    mad.write("credential.json", json.dumps({cred: {"username": "someone", "password": password}}))
    mad.add("secret", f'printf %s "${cred}_PASSWORD" | sha256sum\nprintf %s "${cred}_USERNAME" | sha256sum\n'
                      f'echo "user=${cred}_USERNAME"\necho "performance: 1 x"\n', cred=cred)
    res = cli(capsys, "run", "--tags", mad.uid, "--summary-output", "s.json")
    assert res.code == 0, res.text
    log = mad.log("secret")
    assert hashlib.sha256(password.encode()).hexdigest() in log  # both reached the container
    assert hashlib.sha256(b"someone").hexdigest() in log
    assert "user=******" in log  # credential.json values are secrets, the username too
    assert f"{cred}_PASSWORD=******" in log
    assert password not in res.out + res.err
    leaks = [str(path.relative_to(mad.root)) for path in mad.root.rglob("*")
             if path.is_file() and path.name != "credential.json" and password in path.read_text(errors="replace")]
    assert leaks == []
    assert perf_rows()[0]["status"] == "SUCCESS"
    manifest = (mad.root / "build_manifest.json").read_text()
    assert cred in manifest and password not in manifest


def test_a_model_printing_its_own_secret_is_masked_everywhere(capsys, mad, unique_name) -> None:
    password = f"pw-{unique_name}-s3cr3t"
    cred = "mtleak"
    mad.write("credential.json", json.dumps({cred: {"username": "someone", "password": password}}))
    # Printed whole, and in two writes a moment apart (split over the log stream's frames).
    mad.add("leaky", f'echo "debug: password is ${cred}_PASSWORD"\n'
                     f'printf %s "${{{cred}_PASSWORD:0:5}}"; sleep 0.5; echo "${{{cred}_PASSWORD:5}} <- split"\n'
                     'echo "performance: 1 x"\n', cred=cred)
    res = cli(capsys, "run", "--tags", mad.uid, "--live-output")
    assert res.code == 0, res.text
    log = mad.log("leaky")
    assert "debug: password is ******" in log and "****** <- split" in log
    assert password not in res.out + res.err and "password is ******" in res.out + res.err
    leaks = [str(path.relative_to(mad.root)) for path in mad.root.rglob("*")
             if path.is_file() and path.name != "credential.json" and password in path.read_text(errors="replace")]
    assert leaks == []
    assert perf_rows()[0]["status"] == "SUCCESS"
