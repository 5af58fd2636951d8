"""`madengine-cli build` against the real dockerd and registry (tests/infra/up.sh).

Every test builds MAD trees in tmp_path whose model names carry a random prefix, so image names are
unique (``ci-mt-1a2b3c4d_...``); the ``made`` fixture removes those images, and the registry manifests
pushed, after each test.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.mad.engine.plugins.module_utils._secrets import MASK
from tracked_tree import copy_tracked

from madengine.build import BuildOptions, build_models
from madengine.cli.app import app, invoke
from madengine.cli.render.build import summary_table
from madengine.discover import discover_models
from madengine.manifest import load_manifest

needs_engine = pytest.mark.docker  # every test but the bad-input one needs the engine

CTX = '{"gpu_vendor": "AMD", "guest_os": "UBUNTU"}'
BASE_ARG = "ARG BASE_DOCKER=madengine-base:bookworm\nFROM $BASE_DOCKER\n"
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


# ------------------------------------------------------------------------------------------- helpers
class Made:
    """What one test created: a name prefix for its images and the registry repositories it pushed."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.repos: list[tuple[str, str, tuple[str, str] | None]] = []  # (registry, repo, basic auth)
        self.ids: list[str] = []  # image ids that lose their tag during the test (rebuilt images)

    def model(self, name: str) -> str:
        return f"{self.uid}_{name}"


@pytest.fixture
def made(docker_client, base_image, unique_name) -> Iterator[Made]:
    made = Made(unique_name)
    yield made
    import docker.errors

    for image in docker_client.images.list():
        for tag in image.tags:
            if made.uid in tag or made.uid.replace("-", "_") in tag:
                with contextlib.suppress(docker.errors.APIError):
                    docker_client.images.remove(tag, force=True)
    for image_id in made.ids:
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(image_id, force=True)
    for registry, repo, auth in made.repos:
        _delete_repo(registry, repo, auth)


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None,
             auth: tuple[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    if auth:
        import base64

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with _HTTP.open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), b""


def _delete_repo(registry: str, repo: str, auth: tuple[str, str] | None = None) -> None:
    with contextlib.suppress(OSError, ValueError):
        status, _, body = _request(f"http://{registry}/v2/{repo}/tags/list", auth=auth)
        if status != 200:
            return
        accept = ("application/vnd.docker.distribution.manifest.v2+json, "
                  "application/vnd.oci.image.manifest.v1+json")
        for tag in json.loads(body).get("tags") or []:
            status, headers, _ = _request(f"http://{registry}/v2/{repo}/manifests/{tag}", "HEAD",
                                          {"Accept": accept}, auth)
            digest = headers.get("Docker-Content-Digest")
            if status == 200 and digest:
                _request(f"http://{registry}/v2/{repo}/manifests/{digest}", "DELETE", auth=auth)


def write_mad(root: Path, models: list[dict[str, Any]], dockerfiles: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "models.json").write_text(json.dumps(models))
    for rel, text in dockerfiles.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def model(name: str, dockerfile: str = "docker/a", **extra: Any) -> dict[str, Any]:
    return {"name": name, "tags": extra.pop("tags", ["t"]), "dockerfile": dockerfile,
            "scripts": "scripts/x/run.sh", "n_gpus": "1", **extra}


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = invoke(app, list(args), "madengine-cli")
    out, err = capsys.readouterr()
    return code, out, err


def build_cli(capsys, mad: Path, out: Path, *args: str, context: str = CTX) -> tuple[int, str, str]:
    return cli(capsys, "build", "--mad-dir", str(mad), "--manifest-output", str(out / "build_manifest.json"),
               "-c", context, *args)


def flat(text: str) -> str:
    """Terminal output without panel borders and line wrapping, for substring checks."""
    return " ".join(text.replace("│", " ").split())


def read_manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "build_manifest.json").read_text())


def label(docker_client, image: str, key: str) -> str | None:
    return (docker_client.images.get(image).labels or {}).get(key)


# ------------------------------------------------------------------------------------------- sources
@needs_engine
def test_root_dir_and_dynamic_models_with_params(capsys, tmp_path, made, docker_client) -> None:
    u = made.uid
    mad = write_mad(tmp_path / "mad", [model(made.model("root"), "docker/a")], {
        "docker/a.Dockerfile": BASE_ARG + "LABEL which=a\n",
        "docker/b.Dockerfile": BASE_ARG + "LABEL which=b\n",
        "docker/c.Dockerfile": BASE_ARG + "COPY . /ctx\nLABEL which=c\n",
        "docker/c_ctx/marker.txt": "from the dockercontext\n",
    })
    d = u.replace("-", "_")  # a scripts dir of this test only
    sdir = mad / "scripts" / d
    sdir.mkdir(parents=True)
    (sdir / "models.json").write_text(json.dumps([{"name": "dm", "tags": ["t"], "dockerfile": "../../docker/b",
                                                   "scripts": "run.sh"}]))
    ddir = mad / "scripts" / "dy"
    ddir.mkdir(parents=True)
    (ddir / "get_models_json.py").write_text(
        "from madengine.tools.discover_models import CustomModel\n\n"
        "def list_models(params):\n"
        "    bs = params.get('bs', '1')\n"
        f"    return [CustomModel(name='{u}_dyn', tags=['t'], dockerfile='../../docker/c', scripts='run.sh',\n"
        "                        dockercontext='docker/c_ctx', args=f'--bs {bs}')]\n")  # from the MAD root
    out = tmp_path / "out"
    code, stdout, stderr = build_cli(capsys, mad, out, "--tags", made.model("root"), "--tags", f"{d}:dm",
                                     "--tags", f"dy:{u}_dyn:bs=4", "--summary-output", str(out / "s.json"))
    assert code == 0, stderr
    data = read_manifest(out)
    names = {f"ci-{u}_root_a", f"ci-{d}_dm_b", f"ci-dy_{u}_dyn_c"}
    assert set(data["built_images"]) == names
    assert set(data["built_models"]) == names
    dyn = data["built_models"][f"ci-dy_{u}_dyn_c"]
    assert dyn["name"] == f"dy/{u}_dyn" and dyn["params"] == {"bs": "4"} and "--bs 4" in dyn["args"]
    assert data["built_models"][f"ci-{d}_dm_b"]["source"] == "dir"
    for name, which in ((f"ci-{u}_root_a", "a"), (f"ci-{d}_dm_b", "b"), (f"ci-dy_{u}_dyn_c", "c")):
        assert label(docker_client, name, "which") == which
    # The dynamic model's dockercontext is the build context: its file made it into the image.
    ctx_out = docker_client.containers.run(f"ci-dy_{u}_dyn_c", ["cat", "/ctx/marker.txt"], remove=True,
                                           network_mode="host")
    assert b"from the dockercontext" in ctx_out
    for entry in data["built_images"].values():
        log_file = out / entry["log_file"]
        assert log_file.is_file() and "Successfully tagged" in log_file.read_text()
        assert entry["gpu_vendor"] == "AMD" and entry["guest_os"] == "UBUNTU"
        assert entry["build_command"].startswith("docker build --network host")
    assert (out / f"{u}_root_a.build.live.log").is_file()
    assert (out / f"{d}_dm_b.build.live.log").is_file()
    assert (out / f"dy_{u}_dyn_c.build.live.log").is_file()
    assert "Build summary" in stdout and "✅" in stdout
    loaded = load_manifest(out / "build_manifest.json")
    assert sorted(e.model.name for e in loaded.entries()) == sorted([f"{u}_root", f"{d}/dm", f"dy/{u}_dyn"])


@needs_engine
def test_context_header_filtering_and_multiple_matches(capsys, tmp_path, made, docker_client) -> None:
    u = made.uid
    mad = write_mad(tmp_path / "mad", [model(made.model("m"), "docker/m"), model(made.model("nv"), "docker/nv")], {
        "docker/m.amd.Dockerfile": "# CONTEXT {'gpu_vendor': 'AMD'}\n" + BASE_ARG + "LABEL v=amd\n",
        "docker/m.nvidia.Dockerfile": '# CONTEXT {"gpu_vendor": "NVIDIA"}\n' + BASE_ARG + "LABEL v=nvidia\n",
        "docker/m.ubuntu.Dockerfile": "# a comment first\n# CONTEXT {'guest_os': 'ubuntu'}\n" + BASE_ARG
                                      + "LABEL v=ubuntu\n",
        "docker/m.any.Dockerfile": BASE_ARG + "LABEL v=any\n",
        "docker/m.broken.Dockerfile": "# CONTEXT {gpu_vendor: oops\n" + BASE_ARG + "LABEL v=broken\n",
        "docker/nv.cuda.Dockerfile": "# CONTEXT {'gpu_vendor': 'NVIDIA'}\n" + BASE_ARG,
    })
    out = tmp_path / "out"
    code, stdout, stderr = build_cli(capsys, mad, out, "--tags", "t",
                                     context='{"gpu_vendor": "amd", "guest_os": "Ubuntu"}')
    assert code == 2
    data = read_manifest(out)
    expected = {f"ci-{u}_m_m.{v}": v for v in ("amd", "any", "broken", "ubuntu")}
    assert set(data["built_images"]) == set(expected)
    for image, v in expected.items():
        assert label(docker_client, image, "v") == v
    failed = data["summary"]["failed_builds"]
    assert [f["model"] for f in failed] == [f"{u}_nv"]
    assert "nv.cuda.Dockerfile" in failed[0]["error"] and "NVIDIA" in failed[0]["error"]
    assert "nv.cuda.Dockerfile" in stderr and "Build failed for 1 model" in stderr


@needs_engine
def test_build_arg_overrides_base_docker(capsys, tmp_path, made, docker_client) -> None:
    u = made.uid
    base = f"{u}-base:override"
    docker_client.images.build(fileobj=_fileobj("FROM madengine-base:bookworm\nLABEL flavour=override\n"),
                               tag=base, network_mode="host", rm=True)
    mad = write_mad(tmp_path / "mad", [model(made.model("m"))], {"docker/a.Dockerfile": BASE_ARG + "RUN true\n"})
    out = tmp_path / "out"
    ctx = json.dumps({"gpu_vendor": "AMD", "guest_os": "UBUNTU", "docker_build_arg": {"BASE_DOCKER": base}})
    code, _, stderr = build_cli(capsys, mad, out, "--tags", "t", context=ctx)
    assert code == 0, stderr
    entry = read_manifest(out)["built_images"][f"ci-{u}_m_a"]
    assert entry["base_docker"] == base
    assert f"--build-arg BASE_DOCKER={base}" in entry["build_command"]
    assert entry["docker_sha"] == docker_client.images.get(base).id
    assert label(docker_client, f"ci-{u}_m_a", "flavour") == "override"
    assert read_manifest(out)["context"]["docker_build_arg"] == {"BASE_DOCKER": base}


def _fileobj(text: str):
    import io

    return io.BytesIO(text.encode())


@needs_engine
def test_shared_dockerfile_is_built_once(tmp_path, made, docker_client, monkeypatch) -> None:
    u = made.uid
    (tmp_path / "mad").mkdir()
    (tmp_path / "mad" / "credential.json").write_text(json.dumps({"c1": {"token": "tok-abc-123"}}))
    mad = write_mad(tmp_path / "mad", [model(made.model(f"s{i}")) for i in range(3)] + [
        model(made.model("cred"), cred="c1")], {"docker/a.Dockerfile": BASE_ARG + "ARG c1_TOKEN\nRUN true\n"})
    events: list[tuple[str, str]] = []
    out = tmp_path / "out"
    result = build_models(discover_models(mad, ["t"]),
                          BuildOptions(mad_dir=mad, context={"gpu_vendor": "AMD", "guest_os": "UBUNTU"},
                                       manifest_output=out / "build_manifest.json"),
                          progress=lambda image, event, text: events.append((image, event)))
    assert result.exit_code == 0
    assert result.docker_builds == 2
    assert [e for e in events if e[1] == "start"] == [(f"ci-{u}_s0_a", "start"), (f"ci-{u}_cred_a", "start")]
    data = read_manifest(out)
    # One build, but every card its own image name (issue 14 item 12; ROCm's manifest shape).
    own = {f"ci-{u}_s0_a", f"ci-{u}_s1_a", f"ci-{u}_s2_a", f"ci-{u}_cred_a"}
    assert set(data["built_images"]) == own == set(data["built_models"])
    shared = data["built_images"][f"ci-{u}_s0_a"]
    assert shared["models"] == [f"{u}_s0", f"{u}_s1", f"{u}_s2"]
    assert data["built_models"][f"ci-{u}_s2_a"]["docker_image"] == f"ci-{u}_s2_a"
    ids = {docker_client.images.get(f"ci-{u}_s{i}_a").id for i in range(3)}
    assert len(ids) == 1 and ids == {data["built_images"][f"ci-{u}_s1_a"]["image_id"]}
    assert data["built_models"][f"ci-{u}_s2_a"]["name"] == f"{u}_s2"
    assert data["credentials_required"] == ["c1"]
    assert sorted(p.name for p in out.glob("*.build.live.log")) == [f"{u}_cred_a.build.live.log",
                                                                    f"{u}_s0_a.build.live.log"]
    assert f"c1_TOKEN={MASK}" in data["built_images"][f"ci-{u}_cred_a"]["build_command"]
    assert "tok-abc-123" not in json.dumps(data)
    # Rendering: one row per model, the shared ones marked as such.
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=140)
    console.print(summary_table(result))
    table = console.file.getvalue()
    assert table.count("shared") == 2 and f"{u}_s2" in table and "2 docker build(s)" in table


@needs_engine
def test_failing_dockerfile_alongside_good_one(capsys, tmp_path, made) -> None:
    u = made.uid
    mad = write_mad(tmp_path / "mad", [model(made.model("good"), "docker/good"),
                                       model(made.model("bad"), "docker/bad")], {
        "docker/good.Dockerfile": BASE_ARG + "RUN echo fine\n",
        "docker/bad.Dockerfile": BASE_ARG + "RUN echo about to fail && exit 3\n",
    })
    out = tmp_path / "out"
    code, _, stderr = build_cli(capsys, mad, out, "--tags", "t", "--summary-output", str(out / "summary.json"))
    assert code == 2
    manifest = load_manifest(out / "build_manifest.json")
    assert list(manifest.built_images) == [f"ci-{u}_good_good"]
    summary = json.loads((out / "summary.json").read_text())
    assert [f["model"] for f in summary["failed_builds"]] == [f"{u}_bad"]
    assert summary["failed_builds"][0]["dockerfile"] == "docker/bad.Dockerfile"
    assert "returned a non-zero code: 3" in summary["failed_builds"][0]["error"]
    bad_log = (out / f"{u}_bad_bad.build.live.log").read_text()
    assert "about to fail" in bad_log and "non-zero code: 3" in bad_log
    assert f"{u}_bad" in stderr and "non-zero code: 3" in stderr and "Build failed for 1 model" in stderr
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


@needs_engine
def test_push_then_pull_by_recorded_digest(capsys, tmp_path, made, docker_client, registry) -> None:
    u = made.uid
    mad = write_mad(tmp_path / "mad", [model(made.model("p"))], {"docker/a.Dockerfile": BASE_ARG + f"LABEL u={u}\n"})
    out = tmp_path / "out"
    made.repos.append((registry, f"ci-{u}_p_a", None))
    code, _, stderr = build_cli(capsys, mad, out, "--tags", "t", "--registry", registry)
    assert code == 0, stderr
    data = read_manifest(out)
    entry = data["built_images"][f"ci-{u}_p_a"]
    assert data["registry"] == registry
    assert entry["registry_image"] == f"{registry}/ci-{u}_p_a@{entry['image_digest']}"
    assert entry["image_digest"].startswith("sha256:") and entry["pushed"] is True
    assert data["summary"]["successful_pushes"][0]["image_digest"] == entry["image_digest"]
    image_id = entry["image_id"]
    docker_client.images.remove(f"ci-{u}_p_a", force=True)
    docker_client.images.remove(f"{registry}/ci-{u}_p_a:latest", force=True)
    pulled = docker_client.images.pull(entry["registry_image"])
    assert pulled.id == image_id
    assert pulled.labels["u"] == u
    docker_client.images.remove(pulled.id, force=True)


@needs_engine
def test_unreachable_registry_is_one_line_cause_and_exit_2(capsys, tmp_path, made) -> None:
    u = made.uid
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mad = write_mad(tmp_path / "mad", [model(made.model("a"), "docker/a"), model(made.model("b"), "docker/b")], {
        "docker/a.Dockerfile": BASE_ARG + "LABEL x=a\n", "docker/b.Dockerfile": BASE_ARG + "LABEL x=b\n"})
    out = tmp_path / "out"
    code, _, stderr = build_cli(capsys, mad, out, "--tags", "t", "--registry", f"127.0.0.1:{port}")
    assert code == 2
    assert f"connection refused at 127.0.0.1:{port}" in stderr
    assert "💡" in stderr and "registry running" in stderr
    data = read_manifest(out)
    assert set(data["built_images"]) == {f"ci-{u}_a_a", f"ci-{u}_b_b"}  # both still built
    for entry in data["built_images"].values():
        assert entry["push_failed"] is True and entry["registry_image"] is None
        assert entry["push_error"] == f"connection refused at 127.0.0.1:{port}"
    assert len(data["summary"]["failed_pushes"]) == 2 and data["push_failures"]


# ------------------------------------------------------------------------------------------- secrets
@pytest.fixture
def auth_registry(tmp_path_factory) -> Iterator[tuple[str, str, str]]:
    """A second registry with htpasswd auth on a free loopback port: (address, user, password)."""
    if not shutil.which("htpasswd") or not shutil.which("docker-registry"):
        pytest.fail("htpasswd (apache2-utils) and docker-registry are needed; run tests/infra/up.sh")
    root = tmp_path_factory.mktemp("auth-registry")
    user, password = "builder", f"pw-{secrets.token_hex(8)}"
    htpasswd = subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True)
    (root / "htpasswd").write_text(htpasswd.stdout)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
        f"auth: {{htpasswd: {{realm: r, path: {root / 'htpasswd'}}}}}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError):
                if _request(f"http://127.0.0.1:{port}/v2/")[0] == 401:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"auth registry did not start on 127.0.0.1:{port}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}", user, password
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@needs_engine
def test_htpasswd_registry_with_credentials_leaks_no_secret(capsys, tmp_path, made, docker_client,
                                                             auth_registry, monkeypatch) -> None:
    u = made.uid
    address, user, password = auth_registry
    token, env_secret = f"hf-{secrets.token_hex(8)}", f"env-{secrets.token_hex(8)}"
    monkeypatch.setenv("MAD_SECRETS_HFTOKEN", env_secret)
    mad = write_mad(tmp_path / "mad", [model(made.model("sec"), cred="hf")], {
        # A careless Dockerfile that prints its secrets: the log must still not show them.
        "docker/a.Dockerfile": BASE_ARG + "ARG hf_TOKEN\nARG MAD_SECRETS_HFTOKEN\n"
                               "RUN echo \"token=$hf_TOKEN env=$MAD_SECRETS_HFTOKEN\"\n",
    })
    (mad / "credential.json").write_text(json.dumps({
        address: {"username": user, "password": password, "repository": f"{u}-team"},
        "hf": {"username": "hfuser", "token": token},
    }))
    out = tmp_path / "out"
    ctx = json.dumps({"gpu_vendor": "AMD", "guest_os": "UBUNTU",
                      "docker_build_arg": {"API_TOKEN": f"ctx-{token}"}})
    code, stdout, stderr = build_cli(capsys, mad, out, "--tags", "t", "--registry", address, "--live-output",
                                     "--summary-output", str(out / "summary.json"), context=ctx)
    assert code == 0, stderr
    entry = read_manifest(out)["built_images"][f"ci-{u}_sec_a"]
    assert entry["registry_tag"] == f"{address}/{u}-team:ci-{u}_sec_a"
    assert entry["registry_image"] == f"{address}/{u}-team@{entry['image_digest']}"
    log_text = (out / f"{u}_sec_a.build.live.log").read_text()
    assert f"token={MASK} env={MASK}" in log_text  # the RUN step really ran, masked
    assert f"[{u}_sec] " in stdout  # --live-output prefixes each line with the model
    _assert_no_secret([password, token, env_secret], out, stdout + stderr)
    # The pushed image is in the auth registry (HTTP check with the same credentials).
    status, _, body = _request(f"http://{address}/v2/{u}-team/tags/list", auth=(user, password))
    assert status == 200 and f"ci-{u}_sec_a" in json.loads(body)["tags"]
    docker_client.images.remove(f"{address}/{u}-team:ci-{u}_sec_a", force=True)

    # Wrong password: the push fails (exit 2), is explained, and the wrong password is not shown either.
    wrong = f"wrong-{secrets.token_hex(6)}"
    (mad / "credential.json").write_text(json.dumps({address: {"username": user, "password": wrong},
                                                     "hf": {"username": "hfuser", "token": token}}))
    code, stdout, stderr = build_cli(capsys, mad, out, "--tags", "t", "--registry", address)
    assert code == 2
    assert "authentication failed" in stderr and "credential.json" in stderr
    _assert_no_secret([password, token, env_secret, wrong], out, stdout + stderr)
    assert read_manifest(out)["built_images"][f"ci-{u}_sec_a"]["push_failed"] is True


def _assert_no_secret(values: list[str], folder: Path, output: str) -> None:
    for value in values:
        assert value not in output
        for path in folder.rglob("*"):
            if path.is_file():
                assert value not in path.read_text(errors="replace"), f"{value!r} leaked into {path}"


# ------------------------------------------------------------------------------------------- options
@needs_engine
def test_clean_cache_jobs_2_and_summary(capsys, tmp_path, made, docker_client, registry) -> None:
    u = made.uid
    registry_base = f"{registry}/{u}-base:1"
    docker_client.images.build(fileobj=_fileobj("FROM madengine-base:bookworm\nLABEL from=registry\n"),
                               tag=registry_base, network_mode="host", rm=True)
    docker_client.images.push(registry_base)
    made.repos.append((registry, f"{u}-base", None))
    mad = write_mad(tmp_path / "mad", [model(made.model("one"), "docker/one"),
                                       model(made.model("two"), "docker/two")], {
        "docker/one.Dockerfile": BASE_ARG + "RUN sleep 2 && echo one > /one\n",
        "docker/two.Dockerfile": f"ARG BASE_DOCKER={registry_base}\nFROM $BASE_DOCKER\n"
                                 "RUN sleep 2 && echo two > /two\n",
    })
    out = tmp_path / "out"
    code, _, stderr = build_cli(capsys, mad, out, "--tags", "t")  # warm the cache
    assert code == 0, stderr
    made.ids += [docker_client.images.get(f"ci-{u}_{n}_{n}").id for n in ("one", "two")]
    code, _, stderr = build_cli(capsys, mad, out, "--tags", "t", "--clean-docker-cache", "--jobs", "2",
                                "--summary-output", str(out / "build_summary.json"))
    assert code == 0, stderr
    one = (out / f"{u}_one_one.build.live.log").read_text()
    two = (out / f"{u}_two_two.build.live.log").read_text()
    for text in (one, two):
        assert "Using cache" not in text and "--no-cache" in text
    # A local-only base is not pulled (Docker Hub has no madengine-base); one from a registry is.
    assert "exists only locally" in one and "docker pull" not in one
    assert f"$ docker pull {registry_base}" in two and "--pull" in two
    summary = json.loads((out / "build_summary.json").read_text())
    assert set(summary) >= {"successful_builds", "failed_builds", "total_build_time", "successful_pushes",
                            "failed_pushes"}
    assert sorted(b["docker_image"] for b in summary["successful_builds"]) == [f"ci-{u}_one_one",
                                                                               f"ci-{u}_two_two"]
    assert summary["failed_builds"] == [] and summary["successful_pushes"] == []
    # --jobs 2: the two 2-second builds overlapped.
    assert summary["wall_time"] < summary["total_build_time"] * 0.8
    assert read_manifest(out)["summary"] == summary


@needs_engine
def test_deprecated_models_and_run_options(capsys, tmp_path, made) -> None:
    u = made.uid
    mad = write_mad(tmp_path / "mad", [model(made.model("new")), model(made.model("old"), deprecated=True)],
                    {"docker/a.Dockerfile": BASE_ARG + "RUN true\n"})
    (mad / "data.json").write_text("{}")
    out = tmp_path / "out"
    code, _, stderr = build_cli(capsys, mad, out, "--tags", "t", "--data-config", str(mad / "data.json"),
                                "--force-mirror-local", str(tmp_path / "mirror"), "--disable-skip-gpu-arch",
                                "--no-sys-env-details", "--output", "my_perf.csv")
    assert code == 0, stderr
    data = read_manifest(out)
    assert list(data["built_models"]) == [f"ci-{u}_new_a"]
    assert data["summary"]["skipped_models"][0]["model"] == f"{u}_old"
    assert f"{u}_old: skipped, deprecated" in stderr
    assert data["run_options"] == {
        "data_config": str((mad / "data.json").resolve()), "tools_config": None,
        "force_mirror_local": str(tmp_path / "mirror"), "disable_skip_gpu_arch": True, "skip_gpu_arch": False,
        "sys_env_details": False, "output": "my_perf.csv"}
    code, _, stderr = build_cli(capsys, mad, out, "--tags", "t", "--ignore-deprecated")
    assert code == 0, stderr
    assert set(read_manifest(out)["built_models"]) == {f"ci-{u}_new_a", f"ci-{u}_old_a"}


def test_bad_input_is_exit_4(capsys, tmp_path) -> None:
    """Rejected before any docker call: runs without the engine too."""
    mad = write_mad(tmp_path / "mad", [model("m")], {"docker/a.Dockerfile": BASE_ARG})
    out = tmp_path / "out"
    code, _, stderr = cli(capsys, "build", "--mad-dir", str(mad), "--tags", "t")
    assert code == 4 and "Additional context is required" in stderr and "Example usage" in stderr
    code, _, stderr = build_cli(capsys, mad, out, "--tags", "no_such_tag")
    assert code == 4 and "no_such_tag" in stderr
    (mad / "credential.json").write_text('{"x": ')
    code, _, stderr = build_cli(capsys, mad, out, "--tags", "t")
    assert code == 4 and "credential.json" in stderr
    (mad / "credential.json").unlink()
    code, _, stderr = build_cli(capsys, mad, out, "--tags", "t", "--tools-config", "nope.json")
    assert code == 4 and "--tools-config" in stderr
    assert not (out / "build_manifest.json").exists()


@needs_engine
def test_no_engine_is_a_clear_build_error(capsys, tmp_path, made, monkeypatch) -> None:
    mad = write_mad(tmp_path / "mad", [model(made.model("m"))], {"docker/a.Dockerfile": BASE_ARG})
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/nothing.sock")
    code, _, stderr = build_cli(capsys, mad, tmp_path / "out", "--tags", "t")
    assert code == 2
    assert "Cannot reach the Docker engine at unix:///nonexistent/nothing.sock (no such socket)" in flat(stderr)


@needs_engine
def test_example_mad_builds_and_pushes(capsys, tmp_path, docker_client, registry, monkeypatch) -> None:
    """The bundled example through the CLI from inside a copy of it (cwd = MAD dir, default paths)."""
    mad = tmp_path / "MAD"
    copy_tracked(Path(__file__).resolve().parents[2] / "examples" / "MAD", mad)
    monkeypatch.chdir(mad)
    monkeypatch.delenv("MAD_DIR", raising=False)
    monkeypatch.delenv("MODEL_DIR", raising=False)
    code, stdout, stderr = cli(capsys, "build", "--tags", "dummies", "-c",
                               '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}', "--registry", registry)
    assert code == 0, stderr
    data = json.loads((mad / "build_manifest.json").read_text())
    own = {"ci-dummy_dummy", "ci-dummy2_dummy_2_dummy", "ci-dummy3_dummy_3_dummy"}
    assert set(data["built_images"]) == own == set(data["built_models"])
    assert data["built_images"]["ci-dummy_dummy"]["models"] == ["dummy", "dummy2/dummy_2", "dummy3/dummy_3"]
    assert all(data["built_images"][k]["pushed"] for k in own)  # each card's tag is pushed
    assert data["run_options"]["tools_config"] == str(mad / "scripts" / "common" / "tools.json")
    assert (mad / "dummy_dummy.build.live.log").is_file()
    assert os.path.exists(mad / "build_manifest.json")
    assert "demo-not-a-secret" not in (stdout + stderr + (mad / "build_manifest.json").read_text())
