"""The mad.engine collection as the Ansible tools see it: ansible-lint (production) and ansible-test sanity.

- `ansible-lint` with the repo's `.ansible-lint` (production profile, offline) on the collection, playbooks/
  and molecule/, and on a bundle made by `madengine-cli generate ansible` (with the bundle's own config);
- `ansible-test sanity --venv` on a copy of the collection under a temp `ansible_collections/mad/engine/`
  (ansible-test wants the collection root as cwd, and writes tests/output/ there). It runs offline from
  Galaxy and ci-files.testing.ansible.com thanks to tests/infra/ansible_deps.sh's get_pip stand-in; the
  first run on a machine builds ansible-test's venvs (about a minute), later ones reuse them.

The action group test (meta/runtime.yml lists exactly plugins/modules/) is in test_collection.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tracked_tree import copy_tracked

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "collections" / "ansible_collections" / "mad" / "engine"
DEPS_COLLECTIONS = Path(os.environ.get("MADENGINE_TEST_CACHE_DIR", "/var/cache/madengine-test")) / "collections"
CTX = '{"gpu_vendor": "CPU", "guest_os": "UBUNTU"}'
DEPS_HINT = "run `bash tests/infra/ansible_deps.sh` (after tests/infra/up.sh) first"


def tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def ansible_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8", NO_COLOR="1", PY_COLORS="0", ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([str(REPO / "collections"), str(DEPS_COLLECTIONS)]),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")]))
    return dict(env, **extra)


def tail(done: subprocess.CompletedProcess[str], n: int = 6000) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout[-n:]}\n--- stderr\n{done.stderr[-n:]}"


def ansible_lint(*paths: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("ansible-lint"), "--nocolor", *paths], cwd=cwd, env=ansible_env(),
                          capture_output=True, text=True, timeout=600, check=False)


def assert_production_passed(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, tail(done)
    assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr, tail(done)


# ------------------------------------------------------------------------------------------ ansible-lint
def test_ansible_lint_production_on_collection_playbooks_and_molecule() -> None:
    pytest.importorskip("ansiblelint", reason=DEPS_HINT)
    done = ansible_lint("collections/ansible_collections/mad/engine", "playbooks", "molecule", cwd=REPO)
    assert_production_passed(done)


@pytest.mark.docker
def test_ansible_lint_production_on_a_generated_bundle(docker_client, base_image: str, tmp_path: Path) -> None:
    """`madengine-cli generate ansible` from a real build of a copy of examples/MAD, linted in its folder."""
    pytest.importorskip("ansiblelint", reason=DEPS_HINT)
    pytest.importorskip("madengine.ansible_bundle")
    import docker.errors

    uid = f"ql{secrets.token_hex(4)}"
    mad = tmp_path / "MAD"
    copy_tracked(REPO / "examples" / "MAD", mad)
    models = [dict(m, name=f"{uid}_{m['name']}") for m in json.loads((mad / "models.json").read_text())]
    (mad / "models.json").write_text(json.dumps(models, indent=1))
    env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8", COLUMNS="200", NO_COLOR="1")
    bundle = tmp_path / "bundle"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([tool("madengine-cli"), *args], cwd=mad, env=env, capture_output=True, text=True,
                              timeout=600, check=False)

    try:
        for args in (("build", "--tags", "dummy", "--tags", "multi", "-c", CTX),
                     ("export-config", "--tags", "dummy", "--tags", "multi", "-c", CTX),
                     ("generate", "ansible", "--manifest-file", "build_manifest.json", "--execution-config",
                      "execution_config.json", "--output", str(bundle / "madengine_distributed.yml"))):
            done = cli(*args)
            assert done.returncode == 0, tail(done)
    finally:
        manifest = mad / "build_manifest.json"
        for image in json.loads(manifest.read_text())["built_images"] if manifest.is_file() else []:
            with contextlib.suppress(docker.errors.APIError):
                docker_client.images.remove(image, force=True)
    assert (bundle / ".ansible-lint").is_file()
    done = ansible_lint(cwd=bundle)  # the bundle's own .ansible-lint: production, offline, mad/ excluded
    assert_production_passed(done)


# ------------------------------------------------------------------------------------------ ansible-test
def _sanity_ignores() -> list[str]:
    ignore = COLLECTION / "tests" / "sanity" / "ignore-2.19.txt"
    return [line for line in ignore.read_text().splitlines() if line.strip()]


def test_sanity_ignore_file_is_minimal_and_documented() -> None:
    """Only the GPLv3 header check is ignored (the collection is Apache-2.0), each line with its reason."""
    lines = _sanity_ignores()
    modules = sorted(p.name for p in (COLLECTION / "plugins" / "modules").glob("*.py"))
    assert sorted(line.split()[0] for line in lines) == [f"plugins/modules/{m}" for m in modules]
    for line in lines:
        assert re.fullmatch(r"plugins/modules/\w+\.py validate-modules:missing-gplv3-license # .*\S", line), line


def test_ansible_test_sanity(tmp_path: Path) -> None:
    import ansible

    major, minor = (int(x) for x in ansible.__version__.split(".")[:2])
    ignore = COLLECTION / "tests" / "sanity" / f"ignore-{major}.{minor}.txt"
    assert ignore.is_file(), f"no sanity ignore file for ansible-core {major}.{minor}: {ignore}"
    cache = Path.home() / ".ansible" / "test" / "cache"
    if not list(cache.glob("get_pip_*.py")):
        pytest.fail(f"ansible-test's pip bootstrap is not cached in {cache} (it cannot be downloaded here); "
                    f"{DEPS_HINT}", pytrace=False)
    root = tmp_path / "ansible_collections" / "mad" / "engine"
    shutil.copytree(COLLECTION, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "output"))
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    done = subprocess.run([tool("ansible-test"), "sanity", "--venv", "--python", python, "--color", "no"],
                          cwd=root, env=ansible_env(ANSIBLE_COLLECTIONS_PATH=str(tmp_path)), capture_output=True,
                          text=True, timeout=1200, check=False)
    assert done.returncode == 0, tail(done, 12000)
    assert "ERROR" not in done.stdout + done.stderr, tail(done, 12000)
