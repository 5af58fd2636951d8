"""Helpers shared by the integration tests of `madengine-cli run` (test_run.py, test_resume_retry.py).

A :class:`Mad` is a tiny MAD tree in tmp_path whose model names carry a random prefix
(``mt-1a2b3c4d_ok``), so images (``ci-mt-1a2b3c4d_ok_base``), containers (label ``madengine.model``) and
registry repositories are unique; the ``mad`` fixture (conftest.py) removes all of them after the test.
"""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from madengine.cli.app import app, invoke

BASE_ARG = "ARG BASE_DOCKER=madengine-base:bookworm\nFROM $BASE_DOCKER\n"
BUILD_CTX = '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}'
REGISTRY = "127.0.0.1:5000"
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy

OK = 'echo "ok: $MAD_MODEL_NAME"\necho "performance: 42.5 items_per_second"\n'


class Mad:
    """A MAD package in tmp_path: one shared Dockerfile, a models.json, scripts per model."""

    def __init__(self, root: Path, uid: str) -> None:
        self.root = root
        self.uid = uid
        self.models: list[dict[str, Any]] = []
        self.repos: list[str] = []  # registry repositories pushed by the test
        self.write("docker/base.Dockerfile", BASE_ARG + f"LABEL madengine.test={uid}\n")
        self.save()

    def name(self, short: str) -> str:
        return f"{self.uid}_{short}"

    def image(self, short: str) -> str:
        return f"ci-{self.name(short)}_base"

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def add(self, short: str, script: str, **fields: Any) -> str:
        """A model `<uid>_<short>` tagged with the uid and its own name; returns its name."""
        name = self.name(short)
        self.write(f"scripts/{short}/run.sh", "#!/bin/bash\n" + script)
        self.models.append({"name": name, "tags": [self.uid, name], "dockerfile": "docker/base",
                            "scripts": f"scripts/{short}/run.sh", "n_gpus": "1", "args": "", **fields})
        self.save()
        return name

    def save(self) -> None:
        self.write("models.json", json.dumps(self.models, indent=1))

    def log(self, short: str) -> str:
        return (self.root / f"{self.name(short)}_base.run.live.log").read_text()

    def containers(self, docker_client, short: str | None = None) -> list[dict[str, Any]]:
        """The engine's list entries of the containers (running or not) of one model of this test, or of
        all of them. The low-level list: the SDK's inspects each container, racing other tests' removals."""
        found = docker_client.api.containers(all=True, filters={"label": "madengine.model"})
        want = self.name(short) if short else self.uid
        return [c for c in found if ((c.get("Labels") or {}).get("madengine.model") or "").startswith(want)]


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with _HTTP.open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), b""


def delete_repo(repo: str, registry: str = REGISTRY) -> None:
    with contextlib.suppress(OSError, ValueError):
        status, _, body = request(f"http://{registry}/v2/{repo}/tags/list")
        if status != 200:
            return
        accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
        for tag in json.loads(body).get("tags") or []:
            status, headers, _ = request(f"http://{registry}/v2/{repo}/manifests/{tag}", "HEAD", {"Accept": accept})
            digest = headers.get("Docker-Content-Digest")
            if status == 200 and digest:
                request(f"http://{registry}/v2/{repo}/manifests/{digest}", "DELETE")


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        """stdout + stderr without panel borders and line wrapping, for substring checks."""
        return " ".join((self.out + "\n" + self.err).replace("│", " ").split())


def cli(capsys, *args: str) -> Result:
    code = invoke(app, list(args), "madengine-cli")
    out, err = capsys.readouterr()
    return Result(code, out, err)


def cli_command() -> list[str]:
    exe = shutil.which("madengine-cli")
    return [exe] if exe else [sys.executable, "-c", "from madengine.cli.app import main; main()"]


def perf_rows(path: Path | str = "perf.csv") -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def perf_header(path: Path | str = "perf.csv") -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh))


def by_model(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["model"]: row for row in rows}


def build(capsys, mad: Mad, *args: str) -> dict[str, Any]:
    """`madengine-cli build --tags <uid>`; returns the manifest."""
    res = cli(capsys, "build", "--tags", mad.uid, "-c", BUILD_CTX, *args)
    assert res.code == 0, res.text
    return json.loads((mad.root / "build_manifest.json").read_text())


def mad_images(docker_client, mad: Mad) -> list[Any]:
    return docker_client.images.list(filters={"label": f"madengine.test={mad.uid}"})


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
