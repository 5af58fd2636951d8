"""Hub conventions built and run for real (issue 14 items 4, 11, 12, `--target-archs`).

The fixture tree tests/fixtures/hub/build/MAD is copied into the `mad` fixture's tree (conftest.py),
with cards named after the test's unique id; images carry the `madengine.test=<uid>` label (a build
arg), so the fixture removes them, and every tag of them, afterwards.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from madtree import by_model, cli, perf_rows

pytestmark = pytest.mark.docker

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hub" / "build" / "MAD"


def setup(mad) -> dict[str, str]:
    shutil.copytree(FIXTURE, mad.root, dirs_exist_ok=True)
    names = {short: mad.name(short) for short in ("a", "b")}
    cards = [{"name": n, "tags": [mad.uid], "dockerfile": "../../docker/hub_shared", "scripts": "run.sh",
              "n_gpus": "1"} for n in names.values()]
    (mad.root / "scripts" / "hub_shared" / "models.json").write_text(json.dumps(cards))
    return names


def context(mad, **extra) -> str:
    return json.dumps({"gpu_vendor": "CPU", "guest_os": "UBUNTU", "docker_build_arg": {"MAD_TEST_UID": mad.uid},
                       **extra})


def test_one_build_a_tag_per_card_and_root_context(capsys, mad, docker_client) -> None:
    names = setup(mad)
    res = cli(capsys, "build", "--tags", mad.uid, "--tags", f"hub_rootctx:uid={mad.uid}", "-c", context(mad))
    assert res.code == 0, res.text
    data = json.loads((mad.root / "build_manifest.json").read_text())
    a, b = (f"ci-hub_shared_{names[s]}_hub_shared" for s in ("a", "b"))
    rootctx = f"ci-hub_rootctx_{mad.uid}_rootctx_hub_rootctx"
    assert set(data["built_images"]) == {a, b, rootctx} == set(data["built_models"])
    assert data["summary"]["successful_builds"][0]["docker_images"] == [a, b]
    assert docker_client.images.get(a).id == docker_client.images.get(b).id  # built once, tagged twice
    assert "2 docker build(s)" in res.text
    # dockercontext "." is the MAD root: the Dockerfile's COPY scripts/... worked.
    out = docker_client.containers.run(rootctx, ["cat", "/payload.txt"], remove=True, network_mode="host")
    assert b"payload from the MAD root context" in out
    # The run rows and the run output name each card's own image.
    res = cli(capsys, "run", "--manifest-file", "build_manifest.json")
    assert res.code == 0, res.text
    rows = by_model(perf_rows())
    assert rows[f"hub_shared/{names['a']}"]["docker_image"] == a
    assert rows[f"hub_shared/{names['b']}"]["docker_image"] == b
    assert b in res.text


def test_target_archs_build_one_image_per_arch(capsys, mad, docker_client) -> None:
    names = setup(mad)
    res = cli(capsys, "build", "--tags", f"hub_shared/{names['a']}", "--target-archs", "gfx942,gfx90a",
              "-c", context(mad))
    assert res.code == 0, res.text
    data = json.loads((mad.root / "build_manifest.json").read_text())
    base = f"ci-hub_shared_{names['a']}_hub_shared"
    assert set(data["built_images"]) == {f"{base}_gfx942", f"{base}_gfx90a"}
    assert data["built_images"][f"{base}_gfx942"]["gpu_architecture"] == "gfx942"
    for arch in ("gfx942", "gfx90a"):
        out = docker_client.containers.run(f"{base}_{arch}", ["cat", "/arch.txt"], remove=True, network_mode="host")
        assert out.decode().strip() == arch


def test_mad_container_image_skips_the_build_and_rows_name_it(capsys, mad, docker_client) -> None:
    names = setup(mad)
    res = cli(capsys, "build", "--tags", f"hub_shared/{names['a']}", "-c", context(mad))
    assert res.code == 0, res.text
    ready = f"ci-hub_shared_{names['a']}_hub_shared"
    (mad.root / "build_manifest.json").unlink()
    # Both cards run in the ready image; nothing is built (card b's own tag never comes to exist).
    res = cli(capsys, "run", "--tags", mad.uid, "-c", json.dumps({"MAD_CONTAINER_IMAGE": ready}))
    assert res.code == 0, res.text
    rows = by_model(perf_rows())
    assert {r["docker_image"] for r in rows.values()} == {ready} and len(rows) == 2
    assert not docker_client.images.list(name=f"ci-hub_shared_{names['b']}_hub_shared")
    manifest = json.loads((mad.root / "build_manifest.json").read_text())
    assert {i["docker_image"] for i in manifest["built_images"].values()} == {ready}
    # build --use-image writes the same kind of manifest.
    res = cli(capsys, "build", "--tags", mad.uid, "--use-image", ready, "--manifest-output", "m2.json")
    assert res.code == 0, res.text
    m2 = json.loads((mad.root / "m2.json").read_text())
    assert {i["docker_image"] for i in m2["built_images"].values()} == {ready}
