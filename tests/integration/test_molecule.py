"""`molecule test` for every scenario in molecule/, from the repo root (no galaxy.yml there: scenario mode).

- `default`: the delegated driver on this machine (local connection); builds two tiny models with
  `madengine-cli build`, converges `mad.engine.run_models`, verifies the fetched rows, logs and host facts;
- `nodes`: the docker driver, two containers from madengine-molecule-node:bookworm with the engine socket
  mounted; `mad.engine.host_facts` and `mad.engine.image` (a pull by digest from the test registry), with
  molecule's idempotence step (nothing may report `changed` the second time), then verify.

Needs tests/infra/up.sh and tests/infra/ansible_deps.sh (molecule, community.docker from the `ansible`
wheel, the node image). Runs of one scenario on one machine share molecule's ephemeral dir and the
scenario's fixed names, so they are serialised with a lock file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
DEPS_COLLECTIONS = Path(os.environ.get("MADENGINE_TEST_CACHE_DIR", "/var/cache/madengine-test")) / "collections"
NODE_IMAGE = "madengine-molecule-node:bookworm"
DEPS_HINT = "run `bash tests/infra/ansible_deps.sh` (after tests/infra/up.sh) first"


def molecule(scenario: str) -> subprocess.CompletedProcess[str]:
    from filelock import FileLock

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    env.pop("DOCKER_HOST", None)  # the scenarios use (and mount) the engine at /var/run/docker.sock
    # molecule and the madengine-cli the default scenario calls come from the interpreter running the tests.
    env.update(PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")]),
               LC_ALL="C.UTF-8", LANG="C.UTF-8", NO_COLOR="1", PY_COLORS="0", ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", COLUMNS="160")
    lock = Path(tempfile.gettempdir()) / f"madengine-molecule-{scenario}.lock"
    with FileLock(str(lock), timeout=1200):
        return subprocess.run([sys.executable, "-m", "molecule", "test", "--scenario-name", scenario], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=1200, check=False)


@pytest.fixture(scope="module", autouse=True)
def molecule_deps(docker_client, base_image: str) -> None:
    import docker.errors

    pytest.importorskip("molecule", reason=DEPS_HINT)
    pytest.importorskip("molecule_plugins.docker", reason=DEPS_HINT)
    missing = [c for c in ("community/docker", "ansible/posix")
               if not (DEPS_COLLECTIONS / "ansible_collections" / c / "MANIFEST.json").is_file()]
    if missing:
        pytest.fail(f"collections {missing} are missing in {DEPS_COLLECTIONS}; {DEPS_HINT}", pytrace=False)
    try:
        docker_client.images.get(NODE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {NODE_IMAGE} is missing; {DEPS_HINT}", pytrace=False)


def _recap(done: subprocess.CompletedProcess[str]) -> str:
    text = done.stdout + done.stderr
    return f"exit {done.returncode}\n{text[-12000:]}"


SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


def test_scenarios_are_found_in_scenario_mode() -> None:
    assert {"default", "nodes"} <= set(SCENARIOS)
    assert not (REPO / "galaxy.yml").exists()  # else molecule 26 looks in extensions/molecule/ instead


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario: str) -> None:
    """`molecule test -s SCENARIO`: every step of the scenario's test_sequence succeeds, Galaxy stays off."""
    config = yaml.safe_load((REPO / "molecule" / scenario / "molecule.yml").read_text())
    assert config["dependency"]["enabled"] is False  # Galaxy is unreachable
    done = molecule(scenario)
    text = done.stdout + done.stderr
    assert done.returncode == 0, _recap(done)
    assert re.search(rf"{scenario} > dependency: Executed: .*disabled", text), _recap(done)
    for step in config["scenario"]["test_sequence"]:
        if step != "dependency":
            assert f"{scenario} > {step}: Executed: Successful" in text, (step, _recap(done))
    if scenario == "nodes":
        assert "idempotence" in config["scenario"]["test_sequence"]
        # Both nodes ran the modules (through the docker connection), and one of them pulled the image.
        for node in ("madengine-molecule-node1", "madengine-molecule-node2"):
            assert f"ok: [{node}]" in text
        assert "changed: [madengine-molecule-node" in text, _recap(done)
    if scenario == "default":
        assert "changed: [madengine-local] => (item=molecule_tiny)" in text, _recap(done)  # the model ran
