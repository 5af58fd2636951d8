"""The madengine-cli guide's promises that need the real engine (tests/infra/up.sh): builds, pushes,
runs, timeouts, parallel builds, and how all of that looks in a CI log and on a terminal.

Each test names the guide section it proves. Commands run as the user runs them: the `madengine-cli`
console script (or `python -m madengine.distributed_cli`) in a subprocess, in the MAD package's folder,
with pipes (a CI log) or on a pseudo-terminal. Every model, image and registry repository carries a
random prefix; the `guide` fixture removes them after the test. The rest of the guide is proved without
Docker in tests/unit/test_guide_cli.py and tests/unit/test_compat_formats.py.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.docker

REGISTRY = "127.0.0.1:5000"
BASE = "ARG BASE_DOCKER=madengine-base:bookworm\nFROM $BASE_DOCKER\n"
CPU_CTX = '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}'
OK_SCRIPT = 'echo "running $MAD_MODEL_NAME"\necho "performance: 42.5 samples_per_second"\n'
SPINNER = set("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
UPSTREAM = Path(__file__).resolve().parents[1] / "fixtures" / "upstream"
UPSTREAM_IMAGES = ("ci-dummy_dummy.ubuntu.amd", "ci-dummy_multi_dummy.ubuntu.amd",
                   "ci-dummy2_dummy_2_dummy.ubuntu.amd")
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


# ------------------------------------------------------------------------------------------- helpers
class GuideMad:
    """A MAD package in tmp_path whose models are named `<uid>_<short>` and tagged with the uid."""

    def __init__(self, root: Path, uid: str) -> None:
        self.root, self.uid = root, uid
        self.models: list[dict[str, Any]] = []
        self.repos: list[str] = []  # registry repositories to delete afterwards
        root.mkdir(parents=True)
        self.write("docker/base.Dockerfile", BASE + f"LABEL madengine.test={uid}\n")
        self.save()

    def name(self, short: str) -> str:
        return f"{self.uid}_{short}"

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def add(self, short: str, script: str = OK_SCRIPT, dockerfile: str | None = None, **fields: Any) -> str:
        """A model; with `dockerfile` (its body after FROM) it gets an image of its own."""
        name = self.name(short)
        self.write(f"scripts/{short}/run.sh", "#!/bin/bash\n" + script)
        docker = "docker/base"
        if dockerfile is not None:
            docker = f"docker/{short}"
            self.write(f"{docker}.Dockerfile", BASE + f"LABEL madengine.test={self.uid}\n" + dockerfile)
        self.models.append({"name": name, "url": "", "dockerfile": docker, "scripts": f"scripts/{short}/run.sh",
                            "n_gpus": "1", "owner": "guide@example.com", "training_precision": "",
                            "tags": [self.uid], "args": "", **fields})
        self.save()
        return name

    def save(self) -> None:
        self.write("models.json", json.dumps(self.models, indent=1))

    def manifest(self) -> dict[str, Any]:
        data = json.loads((self.root / "build_manifest.json").read_text())
        for image in data["built_images"].values():
            if image.get("registry_tag"):
                self.repos.append(image["registry_tag"].split("/", 1)[1].rsplit(":", 1)[0])
        return data

    def perf_rows(self, name: str = "perf.csv") -> list[dict[str, str]]:
        with open(self.root / name, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))


@pytest.fixture
def guide(tmp_path, unique_name, docker_client, base_image) -> Iterator[GuideMad]:
    mad = GuideMad(tmp_path / "MAD", unique_name)
    yield mad
    import docker.errors

    for container in docker_client.api.containers(all=True):
        labels = container.get("Labels") or {}
        if unique_name in (labels.get("madengine.model") or "") or any(unique_name in n for n in container["Names"]):
            with contextlib.suppress(docker.errors.APIError):
                docker_client.api.remove_container(container["Id"], force=True)
    for image in docker_client.images.list(filters={"label": f"madengine.test={unique_name}"}):
        for ref in image.tags:
            with contextlib.suppress(docker.errors.APIError):
                docker_client.images.remove(ref, force=True)
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(image.id, force=True)
    for repo in mad.repos:
        _delete_repo(repo)


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    try:
        with _HTTP.open(urllib.request.Request(url, method=method, headers=headers or {}), timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), b""


def _delete_repo(repo: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        status, _, body = _request(f"http://{REGISTRY}/v2/{repo}/tags/list")
        if status != 200:
            return
        accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
        for tag in json.loads(body).get("tags") or []:
            status, headers, _ = _request(f"http://{REGISTRY}/v2/{repo}/manifests/{tag}", "HEAD", {"Accept": accept})
            if status == 200 and headers.get("Docker-Content-Digest"):
                _request(f"http://{REGISTRY}/v2/{repo}/manifests/{headers['Docker-Content-Digest']}", "DELETE")


def cli_command() -> list[str]:
    exe = shutil.which("madengine-cli")
    return [exe] if exe else [sys.executable, "-c", "from madengine.cli.app import main; main()"]


def ci_env(**extra: str) -> dict[str, str]:
    """A CI job's environment: nothing from this shell that changes the output (colour, width, MAD dir)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("_MADENGINE", "FORCE_COLOR", "NO_COLOR", "MAD_DIR", "MODEL_DIR", "COLUMNS", "TTY_"))}
    env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8", **extra)
    return env


def run_piped(cwd: Path, *args: str, argv: list[str] | None = None, timeout: float = 300,
              **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*(argv or cli_command()), *args], cwd=cwd, env=ci_env(**env), capture_output=True,
                          text=True, timeout=timeout)


def run_on_terminal(cwd: Path, *args: str, timeout: float = 300, **env: str) -> tuple[int, str]:
    """Run madengine-cli on a 120×40 pseudo-terminal (stdout and stderr both); return (exit code, screen bytes)."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([*cli_command(), *args], cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                            env=ci_env(**{"TERM": "xterm-256color", **env}), start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert time.monotonic() < deadline, f"madengine-cli {' '.join(args)} did not finish in {timeout}s"
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the last writer closed the terminal
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=30), out.decode("utf-8", errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def assert_plain(text: str) -> None:
    """What a CI log should hold: no escape sequences, carriage returns or spinner frames."""
    assert "\x1b[" not in text, "escape sequences in captured output"
    assert "\r" not in text, "carriage returns in captured output"
    assert not SPINNER & set(text), "spinner frames in captured output"


def colour_codes(text: str) -> set[str]:
    """The SGR parameters in `text` that set a colour (foreground, background, 256-colour, bright)."""
    found = set()
    for params in re.findall(r"\x1b\[([0-9;]*)m", text):
        for part in params.split(";"):
            if part and (30 <= int(part) <= 49 or 90 <= int(part) <= 107):
                found.add(params)
    return found


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


def in_order(text: str, *needles: str) -> None:
    positions = [text.find(n) for n in needles]
    assert all(p >= 0 for p in positions), [n for n, p in zip(needles, positions, strict=True) if p < 0]
    assert positions == sorted(positions), list(zip(needles, positions, strict=True))


# ------------------------------------------------------------------------------------------- Quick Start / Output
@pytest.mark.parametrize("env", [{}, {"NO_COLOR": "1"}], ids=["piped", "piped+NO_COLOR"])
def test_single_command_workflow_in_a_ci_log(guide, env) -> None:
    """Quick Start → Single Command Workflow (`run --tags … --registry … --timeout 3600`) as a CI log sees it
    (Output & User Experience): configuration panels, the Build → Run phases, one plain line per model
    event, the build/run summary tables, the combined workflow summary and `--summary-output`
    `{build_phase, run_phase, overall_success}`; no escape codes or spinner frames."""
    first, second = guide.add("one"), guide.add("two")
    registry = "localhost:5000"  # the guide's spelling of the test registry (127.0.0.1:5000)
    done = run_piped(guide.root, "run", "--tags", guide.uid, "--registry", registry, "--timeout", "3600",
                     "--summary-output", "workflow_summary.json", **env)
    guide.manifest()
    assert done.returncode == 0, done.stderr
    assert_plain(done.stdout + done.stderr)
    err, out = done.stderr, done.stdout
    in_order(err, "🔨 Build phase", "📋 Build configuration", f"🔨 {first}: building", f"✅ {first}: built",
             f"📤 {first}: pushed", "✅ All images built and pushed", "🚀 Run phase", "📋 Run configuration",
             f"▶ {first}: starting", f"✅ {first}: SUCCESS", f"▶ {second}: starting", f"✅ {second}: SUCCESS")
    assert re.search(rf"registry\s+{re.escape(registry)}", err)  # the panel's settings
    assert re.search(r"timeout\s+3600 s", err) and re.search(r"summary\s+workflow_summary\.json", err)
    assert '"gpu_vendor": "CPU"' in err  # the context, as JSON (detected: no -c needed for run)
    in_order(out, "Build summary", "Run results", "Workflow summary")
    assert re.search(r"┃ performance ┃ metric\s+┃", out) and "│ samples_per_second │" in out  # nothing cut short
    assert re.search(r"Build\s+│\s+✅ success\s+│\s+1 image\(s\) built, 0 model\(s\) failed", out)
    assert re.search(r"Run\s+│\s+✅ success\s+│\s+2 succeeded, 0 failed, 0 skipped", out)
    summary = json.loads((guide.root / "workflow_summary.json").read_text())
    assert set(summary) == {"build_phase", "run_phase", "overall_success"}
    assert summary["overall_success"] is True
    assert len(summary["build_phase"]["successful_pushes"]) == 2  # one built image, a tag per card
    assert [r["model"] for r in summary["run_phase"]["successful_runs"]] == [first, second]


def test_separated_build_and_run_with_registry_auto_detection(guide, docker_client) -> None:
    """Quick Start → Separated Build and Run; Configuration Files → Registry Auto-Detection (the run finds
    the registry in the manifest and pulls from it), the guide's data.json/tools.json examples, and the
    execution summary (`--summary-output` of an execution-only run)."""
    name = guide.add("sep")
    guide.write("configs/prod-data.json", json.dumps({"data_sources": {"default": "/path/to/datasets"},
                                                      "preprocessing": {"enabled": True, "batch_size": 32}}))
    guide.write("configs/prod-tools.json", json.dumps({"docker": {"buildkit": True, "cache_type": "registry"},
                                                       "compilers": {"optimization": "O3"}}))
    built = run_piped(guide.root, "build", "--tags", guide.uid, "--registry", REGISTRY, "--additional-context",
                      CPU_CTX, "--data-config", "./configs/prod-data.json", "--tools-config",
                      "./configs/prod-tools.json", "--summary-output", "build_summary.json")
    manifest = guide.manifest()
    assert built.returncode == 0, built.stderr
    assert manifest["registry"] == REGISTRY
    (image,) = manifest["built_images"].values()
    assert image["registry_image"].startswith(f"{REGISTRY}/") and "@sha256:" in image["registry_image"]
    assert json.loads((guide.root / "build_summary.json").read_text())["failed_builds"] == []
    for ref in (image["docker_image"], image["registry_tag"]):  # only the registry has it now
        docker_client.images.remove(ref, force=True)
    ran = run_piped(guide.root, "run", "--manifest-file", "build_manifest.json", "--timeout", "1800",
                    "--summary-output", "execution_summary.json")
    assert ran.returncode == 0, ran.stderr
    assert re.search(rf"registry\s+{re.escape(REGISTRY)}", ran.stderr)  # auto-detected, not given
    assert "Build phase" not in ran.stderr  # execution only
    assert [(r["model"], r["status"], r["image_digest"]) for r in guide.perf_rows()] == [
        (name, "SUCCESS", image["image_digest"])]
    summary = json.loads((guide.root / "execution_summary.json").read_text())
    assert [r["model"] for r in summary["successful_runs"]] == [name] and summary["failed_runs"] == []


def test_terminal_shows_panels_progress_and_tables(guide) -> None:
    """Output & User Experience on a terminal: the configuration panel with syntax-highlighted JSON and
    masked secrets, spinners and progress bars (images to build, models to run), ✅ summary tables."""
    secret = f"hf-{guide.uid}-secret"
    guide.add("tty")
    context = json.dumps({"gpu_vendor": "CPU", "guest_os": "UBUNTU", "docker_env_vars": {"HF_TOKEN": secret}})
    code, screen = run_on_terminal(guide.root, "run", "--tags", guide.uid, "-c", context)
    assert code == 0, strip_ansi(screen)
    assert secret not in screen and "******" in screen
    plain = strip_ansi(screen)
    in_order(plain, "🔨 Build phase", "📋 Build configuration", "🚀 Run phase", "📋 Run configuration",
             "Run results", "Workflow summary")
    assert re.search(r"\x1b\[(\d+;)*(3[0-7]|38;5;\d+)m\"gpu_vendor\"", screen), "the context JSON is not highlighted"
    assert SPINNER & set(screen), "no spinner while building/running"
    assert re.search(r"images\s+━+\s+1/1", plain), "no progress bar over the images"
    assert re.search(r"models\s+━+\s+1/1", plain), "no progress bar over the models"
    assert colour_codes(screen)  # colour-coded status
    assert "✅ success" in plain


def test_no_color_on_a_terminal_has_no_colour(guide) -> None:
    """Output: NO_COLOR is honoured on a terminal too (bold and dim stay; colours go)."""
    guide.add("nocolor")
    code, screen = run_on_terminal(guide.root, "build", "--tags", guide.uid, "-c", CPU_CTX, NO_COLOR="1")
    guide.manifest()
    assert code == 0, strip_ansi(screen)
    assert colour_codes(screen) == set()
    assert "📋 Build configuration" in screen and "Build summary" in strip_ansi(screen)


def test_dumb_terminal_gets_plain_lines(guide) -> None:
    """Output: a terminal that cannot redraw (TERM=dumb, e.g. an editor's shell) gets the plain lines of a
    CI log instead of a spinner it cannot animate."""
    name = guide.add("dumb")
    code, screen = run_on_terminal(guide.root, "run", "--tags", guide.uid, TERM="dumb")
    assert code == 0, screen
    assert not SPINNER & set(screen) and "\x1b[2K" not in screen
    in_order(screen, f"🔨 {name}: building", f"✅ {name}: built", f"▶ {name}: starting", f"✅ {name}: SUCCESS",
             "Workflow summary")


# ------------------------------------------------------------------------------------------- Troubleshooting
def test_registry_connection_refused(guide) -> None:
    """Troubleshooting → Registry Connection Issues: `❌ Failed to push to registry: connection refused`,
    with what to check; the images are still built (exit 2)."""
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    guide.add("push")
    done = run_piped(guide.root, "build", "--tags", guide.uid, "--registry", f"127.0.0.1:{port}", "-c", CPU_CTX)
    assert done.returncode == 2, done.stderr
    assert_plain(done.stderr)
    assert f"❌ Failed to push to registry: connection refused at 127.0.0.1:{port}" in done.stderr
    assert f"💡 is a registry running at 127.0.0.1:{port}?" in done.stderr and "--registry" in done.stderr
    (image,) = json.loads((guide.root / "build_manifest.json").read_text())["built_images"].values()
    assert image["push_failed"] is True and image["image_id"]


def test_build_failures_for_two_models(guide) -> None:
    """Troubleshooting → Build Failures: `💥 Build failed for 2 models`, each cause and log, the guide's
    debugging steps, and the errors in `--summary-output`; the good model is still built (exit 2)."""
    good = guide.add("good")
    bad1 = guide.add("bad1", dockerfile="RUN echo broken one && exit 3\n")
    bad2 = guide.add("bad2", dockerfile="RUN echo broken two && exit 4\n")
    done = run_piped(guide.root, "build", "--tags", guide.uid, "-c", CPU_CTX, "--summary-output", "build_summary.json")
    assert done.returncode == 2
    assert_plain(done.stderr)
    err = flat(done.stderr)
    assert "💥 Build failed for 2 models" in err
    assert f"❌ {bad1}: " in err and "non-zero code: 3" in err and f"❌ {bad2}: " in err
    assert "📝 log:" in err
    for step in ("--verbose", "--live-output", "--clean-docker-cache"):
        assert step in err.split("💥 Build failed for 2 models", 1)[1], step
    summary = json.loads((guide.root / "build_summary.json").read_text())
    assert sorted(f["model"] for f in summary["failed_builds"]) == [bad1, bad2]
    assert all(f["error"] and Path(f["log_file"]).is_file() for f in summary["failed_builds"])
    assert [b["model"] for b in summary["successful_builds"]] == [good]
    assert list(json.loads((guide.root / "build_manifest.json").read_text())["built_models"]) == [f"ci-{good}_base"]


def test_operation_timed_out(guide, docker_client) -> None:
    """Troubleshooting → Timeout Issues: `⏱️ Operation timed out after N seconds` with the fixes
    (`--timeout N`, `--timeout 0`); Best Practices: `--timeout` prevents hanging (the container is removed)."""
    slow = guide.add("slow", "echo started\nsleep 60\necho 'performance: 1 x'\n")
    start = time.monotonic()
    done = run_piped(guide.root, "run", "--tags", guide.uid, "--timeout", "2")
    elapsed = time.monotonic() - start
    assert done.returncode == 3, done.stderr
    assert_plain(done.stderr)
    assert f"⏱️ Operation timed out after 2 seconds ({slow})" in done.stderr
    assert "--timeout N" in done.stderr and "--timeout 0" in done.stderr
    assert elapsed < 30, elapsed
    rows = [(r["model"], r["status"], r["reason"]) for r in guide.perf_rows()]
    assert rows == [(slow, "FAILURE", "timeout after 2 s")]
    assert docker_client.api.containers(all=True, filters={"label": f"madengine.model={slow}"}) == []


# ------------------------------------------------------------------------------------------- Best Practices
def test_parallel_builds_overlap_with_jobs(guide) -> None:
    """Best Practices → Parallel execution: `build --tags a b --jobs 2` builds the two images at once
    (each RUN sleeps 3 s: their RUN steps overlap in time, and the wall time is below the sum)."""
    step = 'RUN echo "start $(date +%s.%N)" && sleep 3 && echo "end $(date +%s.%N)" && echo {}\n'
    first = guide.add("par_a", dockerfile=step.format("a"))
    second = guide.add("par_b", dockerfile=step.format("b"))
    done = run_piped(guide.root, "build", "--tags", first, second, "--jobs", "2", "-c", CPU_CTX)
    assert done.returncode == 0, done.stderr
    summary = guide.manifest()["summary"]
    spans = []
    for name, short in ((first, "par_a"), (second, "par_b")):
        log = (guide.root / f"{name}_{short}.build.live.log").read_text()
        (begin,) = re.findall(r"^start (\d+\.\d+)$", log, re.MULTILINE)
        (end,) = re.findall(r"^end (\d+\.\d+)$", log, re.MULTILINE)
        spans.append((float(begin), float(end)))
    assert max(s for s, _ in spans) < min(e for _, e in spans), f"the builds did not overlap: {spans}"
    assert summary["total_build_time"] >= 6 and summary["wall_time"] < summary["total_build_time"] - 1.5, summary


# ------------------------------------------------------------------------------------------- Migration Guide
def test_distributed_cli_build_and_run(guide) -> None:
    """Migration Guide → Original Command: `python -m madengine.distributed_cli build --tags … --registry …`
    then `… run --manifest-file build_manifest.json` (here with --live-output): same results, one
    deprecation line each."""
    name = guide.add("legacy")
    legacy = [sys.executable, "-m", "madengine.distributed_cli"]
    built = run_piped(guide.root, "build", "--tags", guide.uid, "--registry", REGISTRY, "--additional-context",
                      CPU_CTX, argv=legacy)
    guide.manifest()
    assert built.returncode == 0, built.stderr
    ran = run_piped(guide.root, "run", "--manifest-file", "build_manifest.json", "--live-output", argv=legacy)
    assert ran.returncode == 0, ran.stderr
    for done, command in ((built, "build"), (ran, "run")):
        notes = [line for line in done.stderr.splitlines() if "deprecated" in line]
        assert notes == [done.stderr.splitlines()[0]] and f"madengine-cli {command}" in notes[0]
    assert f"[{name}] running {name}" in ran.stdout  # --live-output: each line, prefixed with the model
    assert_plain(built.stdout + built.stderr + ran.stdout + ran.stderr)
    assert [(r["model"], r["status"]) for r in guide.perf_rows()] == [(name, "SUCCESS")]


def test_upstream_manifest_and_perf_csv_run_unchanged(guide, docker_client) -> None:
    """Migration Guide → Backward Compatibility: a build_manifest.json as ROCm madengine writes it (images
    pushed by tag, no digests) runs as it is, appending to an upstream perf.csv without touching its rows,
    and `compare` reads the result against an upstream baseline."""
    mad = guide.root
    shutil.rmtree(mad)
    shutil.copytree(UPSTREAM / "MAD", mad)
    shutil.copy(UPSTREAM / "perf.csv", mad / "perf.csv")
    shutil.copy(UPSTREAM / "perf_baseline.csv", mad / "perf_baseline.csv")
    image, _ = docker_client.images.build(path=str(mad / "docker"), dockerfile="dummy.ubuntu.amd.Dockerfile",
                                          labels={"madengine.test": guide.uid}, network_mode="host", rm=True)
    # The fixture as it is, but with this test's image names and registry: values change, the layout does not.
    text = (UPSTREAM / "build_manifest.json").read_text().replace("localhost:5000", REGISTRY)
    names = {key: key.replace("ci-", f"ci-{guide.uid}-", 1) for key in UPSTREAM_IMAGES}
    for key, name in names.items():
        text = text.replace(key, name)
        image.tag(f"{REGISTRY}/{name}", "latest")
        guide.repos.append(name)
        for line in docker_client.images.push(f"{REGISTRY}/{name}", tag="latest", stream=True, decode=True):
            assert "error" not in line, line
    for name in names.values():  # only the registry has them now: the run pulls them by tag
        docker_client.images.remove(f"{REGISTRY}/{name}:latest")
    (mad / "build_manifest.json").write_text(text)
    before = guide.perf_rows()
    done = run_piped(mad, "run", "--manifest-file", "build_manifest.json", "-c", '{"gpu_vendor": "CPU"}')
    assert done.returncode == 0, done.stderr
    rows = guide.perf_rows()
    assert [{k: row[k] for k in before[0]} for row in rows[:len(before)]] == before  # upstream rows intact
    new = {row["model"]: row for row in rows[len(before):]}
    assert set(new) == {"dummy", "dummy_multi_dummy_multi_a", "dummy_multi_dummy_multi_b", "dummy2/dummy_2"}
    assert all(row["status"] == "SUCCESS" for row in new.values())
    assert new["dummy"]["docker_image"] == f"{REGISTRY}/{names[UPSTREAM_IMAGES[0]]}"
    assert (new["dummy2/dummy_2"]["n_gpus"], new["dummy2/dummy_2"]["args"]) == ("-1", "--size 2")
    assert new["dummy_multi_dummy_multi_b"]["metric"] == "ms"
    compared = run_piped(mad, "compare", "perf.csv", "--baseline", "perf_baseline.csv", "--json")
    assert compared.returncode in (0, 5), compared.stderr
    entries = {e["model"]: e for e in json.loads(compared.stdout)["entries"]}
    assert entries["dummy_multi_dummy_multi_b"]["direction"] == "lower"
    assert entries["dummy2/dummy_2"]["status"] == "NEW"
