"""Trustworthy local runs against the real dockerd: the run ledger, `--resume` after a SIGKILL,
`--rerun-failed`, infrastructure retries with the failures injected for real (a registry stopped for the
first attempt, a container that cannot start), and `--baseline`.

The MAD trees come from madtree.py and the ``mad`` fixture (conftest.py), which removes the test's
containers and images. Every script notes its run in ``evidence/runs.txt`` of the MAD root (mounted
read-write at /myworkspace), so a test sees which models really ran in which invocation.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from madtree import BASE_ARG, Mad, build, by_model, cli, cli_command, mad_images, perf_rows, request, wait_for

pytestmark = pytest.mark.docker

EVIDENCE = "/myworkspace/evidence"


def counted(perf: str, before: str = "") -> str:
    """A script that notes its run in evidence/runs.txt, runs `before`, then reports `perf`."""
    return f'echo "$MAD_MODEL_NAME" >> {EVIDENCE}/runs.txt\n{before}echo "performance: {perf} items_per_second"\n'


def evidence(mad: Mad) -> Path:
    folder = mad.root / "evidence"
    folder.mkdir(exist_ok=True)
    return folder


def runs_of(mad: Mad) -> list[str]:
    """The models that ran, in order, over every invocation of the test."""
    path = mad.root / "evidence" / "runs.txt"
    return path.read_text().split() if path.is_file() else []


def ledger(mad: Mad, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(run record, attempt lines) of runs/<run_id>/ledger.jsonl, read as a user would."""
    lines = [json.loads(line) for line in (mad.root / "runs" / run_id / "ledger.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "run" and all(line["type"] == "attempt" for line in lines[1:]), lines
    return lines[0], lines[1:]


def attempts_of(lines: list[dict[str, Any]]) -> list[tuple[str, int, str, bool]]:
    return [(line["models"][0], line["attempt"], line["status"], line["infra_error"]) for line in lines]


def summary_run_id(mad: Mad, name: str) -> str:
    summary = json.loads((mad.root / name).read_text())
    return (summary.get("run_phase") or summary)["run_id"]


def mine(run_id: str) -> list[dict[str, str]]:
    return [row for row in perf_rows() if row["run_id"] == run_id]


# ------------------------------------------------------------------------------------------- resume
def test_resume_after_sigkill_runs_only_the_unfinished_models(capsys, mad, docker_client) -> None:
    marker = evidence(mad) / "slow.marker"
    marker.touch()  # the third model sleeps only while the marker exists
    names = [mad.add("m1", counted("11")), mad.add("m2", counted("12")),
             mad.add("m3", counted("13", f"echo SLOW-STARTED\nif [ -f {EVIDENCE}/slow.marker ]; then sleep 30; fi\n")),
             mad.add("m4", counted("14"))]
    build(capsys, mad)
    slow_log = mad.root / f"{names[2]}_base.run.live.log"
    with open(mad.root / "killed.out", "wb") as out:
        proc = subprocess.Popen([*cli_command(), "run", "--manifest-file", "build_manifest.json"], cwd=mad.root,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        try:
            wait_for(lambda: slow_log.is_file() and "SLOW-STARTED" in slow_log.read_text(), 120,
                     "the third model to start")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == -signal.SIGKILL, (mad.root / "killed.out").read_text()
    [run_id] = [path.name for path in (mad.root / "runs").iterdir()]

    # What the killed run left: two finished models in the ledger and perf.csv, the third one in flight.
    record, lines = ledger(mad, run_id)
    assert record["args"]["manifest_file"] == str(mad.root / "build_manifest.json")
    assert attempts_of(lines) == [(names[0], 1, "SUCCESS", False), (names[1], 1, "SUCCESS", False)]
    assert [(r["model"], r["status"]) for r in mine(run_id)] == [(names[0], "SUCCESS"), (names[1], "SUCCESS")]
    assert runs_of(mad) == names[:3]
    left = mad.containers(docker_client, "m3")
    assert [(c["State"], c["Labels"]["madengine.run_id"]) for c in left] == [("running", run_id)]
    finished_logs = {name: (mad.root / f"{name}_base.run.live.log").stat().st_mtime_ns for name in names[:2]}

    # Resume: the container of the killed run is still there (a user may not know); the resume copes.
    marker.unlink()
    res = cli(capsys, "run", "--resume", run_id)
    assert res.code == 0, res.text
    assert f"removing container madengine-{names[2]}-{run_id} left by an earlier process" in res.text
    assert runs_of(mad) == [*names[:3], names[2], names[3]]  # only the unfinished models ran again
    _, lines = ledger(mad, run_id)
    assert attempts_of(lines) == [(name, 1, "SUCCESS", False) for name in names]
    rows = mine(run_id)
    assert sorted((r["model"], r["status"]) for r in rows) == [(name, "SUCCESS") for name in names]
    assert len(rows) == len(names) == len(perf_rows())  # no duplicates
    assert by_model(rows)[names[2]]["performance"] == "13"
    # The finished models' logs were not touched; the resumed ones were written by this invocation.
    assert {name: (mad.root / f"{name}_base.run.live.log").stat().st_mtime_ns for name in names[:2]} == finished_logs
    assert "SLOW-STARTED" in slow_log.read_text() and "performance: 13" in slow_log.read_text()
    assert "performance: 14" in (mad.root / f"{names[3]}_base.run.live.log").read_text()
    assert mad.containers(docker_client) == []  # the killed run's container too
    assert not (mad.root / "attempt-2").exists()

    # Resuming a finished run runs nothing.
    res = cli(capsys, "run", "--resume", run_id)
    assert res.code == 0, res.text
    assert "Nothing to re-run" in res.text
    assert len(runs_of(mad)) == 5 and len(perf_rows()) == 4


def test_rerun_failed_reruns_only_the_failed_model(capsys, mad) -> None:
    broken = evidence(mad) / "broken"
    broken.touch()
    flaky = mad.add("flaky", counted("7", f"if [ -f {EVIDENCE}/broken ]; then echo BROKEN-NOW; exit 1; fi\n"))
    ok = mad.add("ok", counted("8"))
    res = cli(capsys, "run", "--tags", mad.uid, "--summary-output", "s1.json")
    assert res.code == 3, res.text
    run_id = summary_run_id(mad, "s1.json")
    _, lines = ledger(mad, run_id)
    assert attempts_of(lines) == [(flaky, 1, "FAILURE", False), (ok, 1, "SUCCESS", False)]
    assert lines[0]["reason"] == "non-zero exit 1"

    broken.unlink()  # fixed
    res = cli(capsys, "run", "--rerun-failed", run_id)
    assert res.code == 0, res.text
    assert runs_of(mad) == [flaky, ok, flaky]
    _, lines = ledger(mad, run_id)
    assert attempts_of(lines) == [(flaky, 1, "FAILURE", False), (ok, 1, "SUCCESS", False),
                                  (flaky, 2, "SUCCESS", False)]
    # Each attempt keeps its own log.
    first, second = Path(lines[0]["log_path"]), Path(lines[2]["log_path"])
    assert first == mad.root / f"{flaky}_base.run.live.log"
    assert second == mad.root / "attempt-2" / f"{flaky}_base.run.live.log"
    assert "BROKEN-NOW" in first.read_text()
    assert "BROKEN-NOW" not in second.read_text() and "performance: 7" in second.read_text()
    assert [(r["model"], r["status"]) for r in mine(run_id)] == [(flaky, "FAILURE"), (ok, "SUCCESS"),
                                                                  (flaky, "SUCCESS")]
    res = cli(capsys, "run", "--rerun-failed", run_id)
    assert res.code == 0 and "Nothing to re-run" in res.text, res.text
    assert len(runs_of(mad)) == 3


def test_resume_of_an_unknown_run_is_exit_4(capsys, mad) -> None:
    res = cli(capsys, "run", "--resume", "20000101-000000-abcdef")
    assert res.code == 4, res.text
    assert "20000101-000000-abcdef" in res.text


# ------------------------------------------------------------------------------------------- retries
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Registry:
    """A second `docker-registry serve` on a free loopback port that a test can stop and start again;
    its storage (in tmp_path) survives restarts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.address = f"127.0.0.1:{_free_port()}"
        self.config = root / "config.yml"
        self.config.write_text(yaml.safe_dump({
            "version": 0.1, "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
            "http": {"addr": self.address}}))
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def up(self) -> bool:
        with contextlib.suppress(OSError):
            return request(f"http://{self.address}/v2/")[0] == 200
        return False

    def start(self) -> None:
        with open(self.root / "registry.log", "ab") as log:
            self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.starts += 1
        wait_for(lambda: self.up() or self.proc.poll() is not None, 30, f"the registry on {self.address}")
        assert self.proc.poll() is None, (self.root / "registry.log").read_text()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        assert not self.up()


@pytest.fixture
def second_registry(tmp_path) -> Iterator[Registry]:
    root = tmp_path / "registry"
    root.mkdir()
    registry = Registry(root)
    registry.start()
    try:
        yield registry
    finally:
        registry.stop()


def test_a_registry_down_for_the_first_attempt_is_retried(capsys, mad, docker_client, second_registry,
                                                          monkeypatch) -> None:
    evidence(mad)
    pulled = mad.add("pulled", counted("3"))
    manifest = build(capsys, mad, "--registry", second_registry.address)
    digest = manifest["built_images"][mad.image("pulled")]["image_digest"]
    assert digest.startswith("sha256:")
    for image in mad_images(docker_client, mad):
        docker_client.images.remove(image.id, force=True)
    second_registry.stop()

    # --retries 0: the pull fails once, and that is the result.
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json", "--retries", "0", "--summary-output", "s0.json")
    assert res.code == 3, res.text
    run0 = summary_run_id(mad, "s0.json")
    [row] = mine(run0)
    assert (row["model"], row["status"]) == (pulled, "FAILURE") and row["reason"].startswith("pull failed"), row
    _, lines = ledger(mad, run0)
    assert attempts_of(lines) == [(pulled, 1, "FAILURE", True)]
    assert runs_of(mad) == []

    # --retries 1: the registry comes back once the first attempt's failure is in the ledger. The retry
    # follows that write at once (there is no back-off), so a thread polling the ledger would race it:
    # the restart runs inside the ledger write instead, before the retry starts. The retry pulls and runs.
    from madengine.ledger import Ledger

    record = Ledger.record

    def record_then_restart(self, key, host, attempt, rows, **kw):
        record(self, key, host, attempt, rows, **kw)
        if kw.get("infra_error") and not second_registry.up():
            second_registry.start()

    monkeypatch.setattr(Ledger, "record", record_then_restart)
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json", "--retries", "1", "--summary-output", "s1.json")
    assert res.code == 0, res.text
    assert f"{pulled}: attempt 1 failed (pull failed" in res.text and "retrying" in res.text
    assert second_registry.starts == 2
    run1 = summary_run_id(mad, "s1.json")
    _, lines = ledger(mad, run1)
    assert attempts_of(lines) == [(pulled, 1, "FAILURE", True), (pulled, 2, "SUCCESS", False)]
    assert lines[0]["reason"].startswith("pull failed")
    [row] = mine(run1)  # only the last attempt's rows reach perf.csv
    assert (row["model"], row["status"], row["image_digest"]) == (pulled, "SUCCESS", digest)
    assert runs_of(mad) == [pulled]
    # Each attempt keeps its own log: the failed pull's, and the run's under attempt-2/.
    assert Path(lines[1]["log_path"]) == mad.root / "attempt-2" / f"{pulled}_base.run.live.log"
    assert "performance: 3" in Path(lines[1]["log_path"]).read_text()
    assert lines[0]["log_path"] and "pull failed" in Path(lines[0]["log_path"]).read_text()


def test_a_container_that_cannot_start_is_retried_with_a_log_per_attempt(capsys, mad) -> None:
    # No bash in the image: the engine cannot start the container's `bash -c …` command.
    mad.write("docker/nobash.Dockerfile",
              BASE_ARG + f"LABEL madengine.test={mad.uid}\nRUN rm -f /usr/bin/bash /bin/bash\n")
    evidence(mad)
    nobash = mad.add("nobash", counted("1"), dockerfile="docker/nobash")
    res = cli(capsys, "run", "--tags", mad.uid, "--retries", "2", "--summary-output", "s.json")
    assert res.code == 3, res.text
    run_id = summary_run_id(mad, "s.json")
    _, lines = ledger(mad, run_id)
    assert attempts_of(lines) == [(nobash, k, "FAILURE", True) for k in (1, 2, 3)]
    assert all(line["reason"].startswith("container start failed") for line in lines), lines
    logs = [Path(line["log_path"]) for line in lines]
    assert logs == [mad.root / f"{nobash}_nobash.run.live.log",
                    mad.root / "attempt-2" / f"{nobash}_nobash.run.live.log",
                    mad.root / "attempt-3" / f"{nobash}_nobash.run.live.log"]
    assert all(log.read_text().startswith("$ docker run") for log in logs)
    [row] = mine(run_id)
    assert (row["model"], row["status"]) == (nobash, "FAILURE")


def test_a_model_that_failed_or_timed_out_is_never_retried(capsys, mad) -> None:
    evidence(mad)
    failing = mad.add("failing", counted("1", "exit 1\n"))
    slow = mad.add("slow", counted("2", "sleep 20\n"), timeout=1)
    res = cli(capsys, "run", "--tags", mad.uid, "--retries", "3", "--summary-output", "s.json")
    assert res.code == 3, res.text
    run_id = summary_run_id(mad, "s.json")
    _, lines = ledger(mad, run_id)
    assert attempts_of(lines) == [(failing, 1, "FAILURE", False), (slow, 1, "FAILURE", False)]
    assert [line["reason"] for line in lines] == ["non-zero exit 1", "timeout after 1 s"]
    assert runs_of(mad) == [failing, slow]
    assert not list(mad.root.glob("attempt-*"))
    assert sorted((r["model"], r["status"]) for r in mine(run_id)) == [(failing, "FAILURE"), (slow, "FAILURE")]


# ------------------------------------------------------------------------------------------- baseline
def _baseline(path: Path, model: str, performance: str) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["model", "host", "performance", "metric", "status"])
        writer.writeheader()
        writer.writerow({"model": model, "host": "localhost", "performance": performance,
                         "metric": "items_per_second", "status": "SUCCESS"})
    return path


def test_baseline_fills_relative_change_and_a_regression_is_exit_5(capsys, mad) -> None:
    evidence(mad)
    fast = mad.add("fast", counted("110"))
    build(capsys, mad)
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json",
              "--baseline", str(_baseline(mad.root / "better.csv", fast, "100")))
    assert res.code == 0, res.text
    assert [(r["model"], r["relative_change"]) for r in perf_rows()] == [(fast, "+10.00%")]
    assert "IMPROVEMENT" in res.text

    res = cli(capsys, "run", "--manifest-file", "build_manifest.json",
              "--baseline", str(_baseline(mad.root / "worse.csv", fast, "200")))
    assert res.code == 5, res.text
    assert perf_rows()[-1]["relative_change"] == "-45.00%"
    assert "REGRESSION" in res.text

    # A failed model outranks the regression: exit 3.
    mad.add("broken", "exit 1\n")
    build(capsys, mad)
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json",
              "--baseline", str(mad.root / "worse.csv"))
    assert res.code == 3, res.text
    rows = by_model(perf_rows()[-2:])
    assert rows[fast]["relative_change"] == "-45.00%" and rows[mad.name("broken")]["relative_change"] == ""


def test_resume_after_a_kill_between_perf_csv_and_the_ledger_and_a_torn_line(capsys, mad) -> None:
    broken = evidence(mad) / "broken"
    broken.touch()
    first = mad.add("a", counted("1"))
    second = mad.add("b", counted("2"))
    third = mad.add("c", counted("3", f"if [ -f {EVIDENCE}/broken ]; then exit 1; fi\n"))
    res = cli(capsys, "run", "--tags", mad.uid, "--summary-output", "s.json")
    assert res.code == 3, res.text
    run_id = summary_run_id(mad, "s.json")
    # What a SIGKILL can leave: b's row is in perf.csv but its ledger line is not, and the last line is torn.
    path = mad.root / "runs" / run_id / "ledger.jsonl"
    kept = [line for line in path.read_text().splitlines(keepends=True) if f'"{second}"' not in line]
    path.write_text("".join(kept) + '{"type": "attempt", "key": "')
    broken.unlink()
    res = cli(capsys, "run", "--resume", run_id)
    assert res.code == 0, res.text
    assert runs_of(mad) == [first, second, third, third]
    assert sorted((r["model"], r["status"]) for r in mine(run_id) if r["status"] == "SUCCESS") == [
        (first, "SUCCESS"), (second, "SUCCESS"), (third, "SUCCESS")]
    assert len(perf_rows()) == 4  # c's FAILURE row, then its SUCCESS row
    # The ledger is whole again: read back by the next resume.
    _, lines = ledger(mad, run_id)
    assert attempts_of(lines) == [(first, 1, "SUCCESS", False), (third, 1, "FAILURE", False),
                                  (third, 2, "SUCCESS", False)]
    res = cli(capsys, "run", "--resume", run_id)
    assert res.code == 0 and "Nothing to re-run" in res.text, res.text


def test_resume_tells_apart_models_whose_names_share_a_prefix(capsys, mad) -> None:
    broken = evidence(mad) / "broken"
    broken.touch()
    short = mad.add("p", counted("1", f"if [ -f {EVIDENCE}/broken ]; then exit 1; fi\n"))
    longer = mad.add("p_big", counted("2"))  # its perf.csv row must not count as one of `p`'s
    res = cli(capsys, "run", "--tags", mad.uid, "--summary-output", "s.json")
    assert res.code == 3, res.text
    run_id = summary_run_id(mad, "s.json")
    broken.unlink()
    res = cli(capsys, "run", "--resume", run_id)
    assert res.code == 0, res.text
    assert runs_of(mad) == [short, longer, short]
    _, lines = ledger(mad, run_id)
    assert attempts_of(lines)[-1] == (short, 2, "SUCCESS", False)
