"""The installable wheel: built from a clean copy of the source, installed into a fresh venv outside the repo.

`pip wheel --no-deps` builds the wheel (the package, its Jinja templates and the mad.engine collection as the
top-level `ansible_collections` package); a venv in tmp gets it with its dependencies (from the pip cache
up.sh filled). Every command then runs from a dir outside the repo, with no ANSIBLE_*/PYTHONPATH variable
and a fresh HOME (no ~/.ansible/collections that could shadow the wheel's copy), so what works here works
for a user who ran `pip install madengine`:
- `madengine-cli --version`, `madengine discover --mad-dir examples/MAD`;
- `ansible-doc mad.engine.run_model` finds the collection in the venv's site-packages;
- `madengine-cli run --inventory` (one local-connection host) runs a manifest through ansible-runner and the
  wheel's collection, and perf.csv gets its rows;
- `ansible-galaxy collection build` turns the installed collection into a tarball that installs offline.

The build and run use model names with a random prefix; images and containers are removed afterwards.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from tracked_tree import copy_tracked

REPO = Path(__file__).resolve().parents[2]
CTX = '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}'
# What a source checkout has that a wheel build reads: nothing else (no egg-info, build/, caches).
SOURCE = ("pyproject.toml", "README.md", "LICENSE", "madengine", "collections")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "output", ".pytest_cache", ".ruff_cache")


@dataclass
class Installed:
    wheel: Path
    venv: Path
    home: Path
    outside: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    @property
    def site_collection(self) -> Path:
        return Path(self.run_py("import ansible_collections.mad.engine as c; print(c.__path__[0])").strip())

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ANSIBLE_", "MOLECULE_", "MAD_", "VIRTUAL_ENV")) and k not in ("PYTHONPATH",
                                                                                                   "DOCKER_HOST")}
        return dict(env, HOME=str(self.home), LC_ALL="C.UTF-8", LANG="C.UTF-8", COLUMNS="200", NO_COLOR="1",
                    PATH=os.pathsep.join([str(self.venv / "bin"), env.get("PATH", "/usr/bin:/bin")]))

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), cwd=cwd or self.outside, env=self.env(), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def run_py(self, code: str) -> str:
        done = self.run(self.bin("python"), "-c", code)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel . --no-deps` of a clean copy of the source tree (the checkout stays untouched)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in SOURCE:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=IGNORE)
        else:
            shutil.copy2(path, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
                           "-w", str(root / "dist"), str(src)], capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = (root / "dist").glob("madengine-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh venv (no system site-packages) with the wheel and its dependencies."""
    root = tmp_path_factory.mktemp("venv")
    venv, home, outside = root / "venv", root / "home", root / "outside"
    home.mkdir()
    outside.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                           str(wheel)], capture_output=True, text=True, timeout=900, check=False, cwd=outside)
    assert done.returncode == 0, done.stdout + done.stderr
    return Installed(wheel, venv, home, outside)


# ------------------------------------------------------------------------------------------- the wheel
def test_wheel_carries_package_templates_and_collection(wheel: Path) -> None:
    import madengine

    names = set(zipfile.ZipFile(wheel).namelist())
    assert wheel.name == f"madengine-{madengine.__version__}-py3-none-any.whl"
    for template in (REPO / "madengine" / "templates").rglob("*"):
        if template.is_file() and "__pycache__" not in template.parts:
            assert template.relative_to(REPO).as_posix() in names
    collection = REPO / "collections" / "ansible_collections" / "mad" / "engine"
    shipped = {p.relative_to(REPO / "collections").as_posix() for p in collection.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and "tests" not in p.relative_to(collection).parts}
    assert shipped <= names, sorted(shipped - names)
    for must in ("ansible_collections/mad/engine/galaxy.yml", "ansible_collections/mad/engine/meta/runtime.yml",
                 "ansible_collections/mad/engine/roles/run_models/tasks/main.yml",
                 "ansible_collections/mad/engine/playbooks/run_models.yml", "madengine/cli/app.py"):
        assert must in names
    # The collection's own tests stay out of site-packages.
    assert not [n for n in names if n.startswith("ansible_collections/mad/engine/tests/")]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "madengine-cli = madengine.cli.app:main" in text and "madengine = madengine.cli.app:legacy_main" in text
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    core = next(line for line in metadata.splitlines() if line.startswith("Requires-Dist: ansible-core"))
    assert "<2.20" in core and ">=2.19" in core, core  # ansible-core 2.19.x
    assert "Requires-Python: >=3.11" in metadata


# ------------------------------------------------------------------------------------------- installed
def test_package_comes_from_the_venv(installed: Installed) -> None:
    paths = json.loads(installed.run_py(
        "import json, madengine, ansible_collections.mad.engine as c; "
        "print(json.dumps([madengine.__file__, c.__path__[0], madengine.__version__]))"))
    site = installed.venv.resolve()
    assert Path(paths[0]).resolve().is_relative_to(site), paths
    assert Path(paths[1]).resolve().is_relative_to(site), paths
    assert not Path(paths[0]).resolve().is_relative_to(REPO)


def test_cli_version_and_discover(installed: Installed) -> None:
    import madengine

    done = installed.run(installed.bin("madengine-cli"), "--version")
    assert done.returncode == 0, done.stderr
    assert madengine.__version__ in done.stdout
    done = installed.run(installed.bin("madengine"), "discover", "--mad-dir", str(REPO / "examples" / "MAD"),
                         "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dummy" in done.stdout


def test_ansible_doc_finds_the_collection_in_site_packages(installed: Installed) -> None:
    done = installed.run(installed.bin("ansible-doc"), "mad.engine.run_model")
    assert done.returncode == 0, done.stderr
    assert "request" in done.stdout
    assert str(installed.site_collection) in done.stdout  # the header names the module's file
    listing = installed.run(installed.bin("ansible-galaxy"), "collection", "list", "mad.engine")
    assert listing.returncode == 0, listing.stderr
    assert str(installed.site_collection.parents[1]) in listing.stdout  # …/site-packages/ansible_collections
    assert listing.stdout.count("mad.engine") == 1, listing.stdout


def _delete_repo(registry: str, repo: str) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
    with contextlib.suppress(OSError, ValueError):
        with opener.open(f"http://{registry}/v2/{repo}/tags/list", timeout=10) as resp:
            tags = json.loads(resp.read()).get("tags") or []
        for tag in tags:
            head = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{tag}", method="HEAD",
                                          headers={"Accept": accept})
            with opener.open(head, timeout=10) as resp:
                digest = resp.headers.get("Docker-Content-Digest")
            if digest:
                with contextlib.suppress(urllib.error.HTTPError):
                    opener.open(urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{digest}",
                                                       method="DELETE"), timeout=10).close()


@contextlib.contextmanager
def _removing(docker_client, registry: str, uid: str, manifest: Path) -> Iterator[None]:
    """Remove the test's containers, images and registry repositories (names carry `uid`) afterwards."""
    import docker.errors

    try:
        yield
    finally:
        for container in docker_client.containers.list(all=True):
            if uid in container.name:
                container.remove(force=True)
        built = json.loads(manifest.read_text())["built_images"].values() if manifest.is_file() else []
        for image in built:
            for ref in (image.get("registry_image"), image.get("registry_tag"), image["docker_image"]):
                if ref:
                    with contextlib.suppress(docker.errors.APIError):
                        docker_client.images.remove(ref, force=True)
            if image.get("registry_image"):
                _delete_repo(registry, image["registry_image"].split("@")[0].split("/", 1)[1])


@pytest.mark.docker
def test_run_inventory_uses_the_wheels_collection(installed: Installed, docker_client, base_image: str,
                                                  registry: str, tmp_path: Path) -> None:
    """`madengine-cli run --inventory` without ANSIBLE_COLLECTIONS_PATH: mad.engine.run_models from the wheel."""
    uid = f"mp{secrets.token_hex(4)}"
    mad = tmp_path / "MAD"
    copy_tracked(REPO / "examples" / "MAD", mad)
    models = [dict(m, name=f"{uid}_{m['name']}") for m in json.loads((mad / "models.json").read_text())]
    (mad / "models.json").write_text(json.dumps(models, indent=1))
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": installed.bin("python"),
        "mad_workdir": str(tmp_path / "work")}}}}))
    with _removing(docker_client, registry, uid, mad / "build_manifest.json"):
        done = installed.run(installed.bin("madengine-cli"), "build", "--tags", "dummy", "-c", CTX,
                             "--registry", registry, cwd=mad)
        assert done.returncode == 0, done.stdout + done.stderr
        done = installed.run(installed.bin("madengine-cli"), "run", "--manifest-file", "build_manifest.json",
                             "--inventory", str(inventory), cwd=mad, timeout=600)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    rows = list(csv.DictReader((mad / "perf.csv").open()))
    assert [(r["model"], r["status"], r["host"]) for r in rows] == [(f"{uid}_dummy", "SUCCESS", "localhost")], rows
    assert float(rows[0]["performance"]) > 0
    # The play ran the venv's ansible-playbook with no collection path of ours: the only mad.engine it can
    # see is the wheel's (cwd outside the repo, fresh HOME; see test_ansible_doc_finds_the_collection…).
    (command,) = (mad / "runs").glob("*/artifacts/*/command")
    recorded = json.loads(command.read_text())
    assert recorded["command"][0] == "ansible-playbook" and "mad.engine.run_models" in recorded["command"]
    assert recorded["env"]["PATH"].split(os.pathsep)[0] == str(installed.venv / "bin"), recorded["env"]
    assert not [k for k in recorded["env"] if k in ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_PATHS")]


def test_collection_builds_into_a_tarball(installed: Installed, tmp_path: Path) -> None:
    """`ansible-galaxy collection build` of the installed collection, then an offline install of the tarball."""
    import madengine

    out = tmp_path / "out"
    done = installed.run(installed.bin("ansible-galaxy"), "collection", "build", str(installed.site_collection),
                         "--output-path", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    tarball = out / f"mad-engine-{madengine.__version__}.tar.gz"
    assert tarball.is_file(), done.stdout
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
    assert {"MANIFEST.json", "FILES.json", "meta/runtime.yml", "plugins/modules/run_model.py",
            "roles/run_models/tasks/main.yml", "playbooks/run_models.yml"} <= names
    assert manifest["collection_info"]["version"] == madengine.__version__
    done = installed.run(installed.bin("ansible-galaxy"), "collection", "install", "--offline", "--force", str(tarball),
                         "-p", str(tmp_path / "coll"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "coll" / "ansible_collections" / "mad" / "engine" / "MANIFEST.json").is_file()
