"""`build --dry-run [--json]` and the build plan for hub conventions (issue 14 items 4, 11, 12, 13,
`--target-archs`): per-card image tags, contexts from the MAD root, warnings, ready images. No docker:
planning never touches the engine. The fixture tree is tests/fixtures/hub/build/MAD.
"""

from __future__ import annotations

import json
import posixpath
import shutil
from pathlib import Path

import pytest

from madengine.cli.app import invoke, legacy_app

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "hub" / "build" / "MAD"
REALMAD = Path("/work/shared/realmad")
AMD = '{"gpu_vendor": "AMD", "guest_os": "UBUNTU"}'


@pytest.fixture
def hub(tmp_path) -> Path:
    root = tmp_path / "MAD"
    shutil.copytree(FIXTURE, root)
    cards = [{"name": n, "tags": ["shared"], "dockerfile": "../../docker/hub_shared", "scripts": "run.sh"}
             for n in ("a", "b")]
    (root / "scripts" / "hub_shared" / "models.json").write_text(json.dumps(cards))
    return root


def plan(capsys, root: Path, *args: str, ctx: str = AMD) -> tuple[int, dict, str]:
    code = invoke(legacy_app, ["build", "--dry-run", "--json", "--mad-dir", str(root), "-c", ctx, *args],
                  "madengine")
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def test_shared_dockerfile_one_build_a_tag_per_card_and_contexts(capsys, hub, monkeypatch):
    monkeypatch.setenv("MAD_SECRETS_HFTOKEN", "hf-secret-value-123")
    code, data, err = plan(capsys, hub, "--tags", "shared,hub_rootctx")
    assert code == 0, err
    assert data["cards"] == 3 and data["docker_builds"] == 2
    shared, rootctx = data["images"]
    assert shared["tags"] == ["ci-hub_shared_a_hub_shared", "ci-hub_shared_b_hub_shared"]
    assert shared["docker_image"] == "ci-hub_shared_a_hub_shared"
    assert shared["context"] == "docker" and shared["dockerfile"] == "docker/hub_shared.Dockerfile"
    # A generator's dockercontext "." is the MAD root (item 4), not scripts/hub_rootctx.
    assert rootctx["context"] == "." and rootctx["models"] == ["hub_rootctx/fixture_rootctx"]
    from ansible_collections.mad.engine.plugins.module_utils._secrets import MASK

    assert shared["build_args"]["MAD_SECRETS_HFTOKEN"] == MASK
    assert "hf-secret-value-123" not in json.dumps(data) + err


def test_headerless_dockerfile_for_a_vendor_it_does_not_name_warns(capsys, hub):
    code, data, _ = plan(capsys, hub, "--tags", "hub_nested")
    assert code == 0
    assert data["images"][0]["dockerfile"] == "docker/hub_plain.Dockerfile"
    (warning,) = data["warnings"]
    assert "hub_plain.Dockerfile has no # CONTEXT header" in warning and "AMD" in warning
    # Named for the vendor: no warning.
    (hub / "docker" / "hub_plain.Dockerfile").rename(hub / "docker" / "hub_plain.amd.Dockerfile")
    assert plan(capsys, hub, "--tags", "hub_nested")[1]["warnings"] == []


def test_prefix_matching_several_dockerfiles_warns(capsys, hub):
    text = (hub / "docker" / "hub_shared.Dockerfile").read_text()
    (hub / "docker" / "hub_shared.variant.Dockerfile").write_text(text)
    code, data, err = plan(capsys, hub, "--tags", "hub_shared/a")
    assert code == 0
    assert len(data["images"]) == 2
    (warning,) = data["warnings"]
    assert "matches 2 files" in warning and "built and run 2 times" in warning
    # The table form shows the same warning on stderr.
    code = invoke(legacy_app, ["build", "--dry-run", "--mad-dir", str(hub), "-c", AMD, "--tags", "hub_shared/a"],
                  "madengine")
    out, err = capsys.readouterr()
    assert code == 0 and "Build plan" in out and "matches 2 files" in " ".join(err.split())


def test_target_archs_plan(capsys, hub):
    code, data, _ = plan(capsys, hub, "--tags", "hub_shared/a", "--target-archs", "gfx942,gfx90a")
    assert code == 0
    assert [i["docker_image"] for i in data["images"]] == ["ci-hub_shared_a_hub_shared_gfx942",
                                                           "ci-hub_shared_a_hub_shared_gfx90a"]
    assert [i["build_args"]["MAD_SYSTEM_GPU_ARCHITECTURE"] for i in data["images"]] == ["gfx942", "gfx90a"]
    assert [i["gpu_architecture"] for i in data["images"]] == ["gfx942", "gfx90a"]
    # A context MAD_SYSTEM_GPU_ARCHITECTURE turns --target-archs off (ROCm's rule), with a warning.
    ctx = '{"gpu_vendor": "AMD", "guest_os": "UBUNTU", "docker_build_arg": {"MAD_SYSTEM_GPU_ARCHITECTURE": "gfx908"}}'
    code, data, _ = plan(capsys, hub, "--tags", "hub_shared/a", "-a", "gfx942", ctx=ctx)
    assert [i["docker_image"] for i in data["images"]] == ["ci-hub_shared_a_hub_shared"]
    assert "ignored" in data["warnings"][0]
    # A Dockerfile that lists its architectures refuses others.
    dockerfile = hub / "docker" / "hub_shared.Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + 'ENV PYTORCH_ROCM_ARCH="gfx90a;gfx942"\n')
    code, data, _ = plan(capsys, hub, "--tags", "hub_shared/a", "-a", "gfx942", "-a", "gfx1100")
    assert code == 2
    assert [i["gpu_architecture"] for i in data["images"]] == ["gfx942"]
    assert "gfx1100" in data["failures"][0]["error"] and "PYTORCH_ROCM_ARCH" in data["failures"][0]["error"]


def test_use_image_and_mad_container_image(capsys, hub):
    code, data, _ = plan(capsys, hub, "--tags", "hub_nested,hub_shared/a", "--use-image", "auto")
    assert code == 2  # hub_shared/a has no DOCKER_IMAGE_NAME
    (image,) = data["images"]
    assert image["prebuilt"] and image["docker_image"] == "madengine-base:bookworm"
    assert image["models"] == ["nested/inner/nested_card"] and data["docker_builds"] == 0
    assert "DOCKER_IMAGE_NAME" in data["failures"][0]["error"]
    # The context key does the same, and needs no gpu_vendor/guest_os (nothing is built).
    code, data, _ = plan(capsys, hub, "--tags", "shared", ctx='{"MAD_CONTAINER_IMAGE": "ready:1"}')
    assert code == 0
    assert [(i["docker_image"], i["tags"]) for i in data["images"]] == [
        ("ready:1", ["ci-hub_shared_a_hub_shared"]), ("ready:1", ["ci-hub_shared_b_hub_shared"])]
    code = invoke(legacy_app, ["build", "--dry-run", "--mad-dir", str(hub), "--use-image", "x:1",
                               "--registry", "127.0.0.1:5000", "--tags", "shared"], "madengine")
    assert code == 4 and "--registry" in capsys.readouterr().err


def test_json_needs_dry_run(capsys, hub):
    code = invoke(legacy_app, ["build", "--json", "--mad-dir", str(hub), "-c", AMD], "madengine")
    assert code == 4 and "--dry-run" in capsys.readouterr().err


@pytest.mark.skipif(not REALMAD.is_dir(), reason="the real MAD hub cards (/work/shared/realmad) are absent")
def test_real_hub_cards_plan(capsys, tmp_path):
    """Every real card discovered and planned: first as kept (no Dockerfiles: every card fails, exit 2),
    then with one stand-in Dockerfile per prefix (written here, `# CONTEXT` AMD/UBUNTU)."""
    code, data, _ = plan(capsys, REALMAD, "--tags", "all")
    assert code == 2 and data["cards"] == 108 and len(data["failures"]) == 108 and data["images"] == []
    root = tmp_path / "realmad"
    shutil.copytree(REALMAD, root)
    for path in root.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)
    prefixes = set()
    for file in [root / "models.json", *root.glob("scripts/**/models.json")]:
        base = file.parent.relative_to(root).as_posix()
        for card in json.loads(file.read_text()):
            prefixes.add(posixpath.normpath(posixpath.join(base, card["dockerfile"])) if base != "."
                         else posixpath.normpath(card["dockerfile"]))
    for prefix in prefixes:
        target = root / f"{prefix}.ubuntu.amd.Dockerfile"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text('# CONTEXT {"gpu_vendor": "AMD", "guest_os": "UBUNTU"}\nFROM madengine-base:bookworm\n')
    code, data, _ = plan(capsys, root, "--tags", "all")
    assert code == 0
    assert data["cards"] == 108 and data["failures"] == []
    assert data["docker_builds"] == len(prefixes) == 15
    # docker/vllm_disagg_inference is a prefix of two other prefixes: its 14 cards get 3 Dockerfiles each.
    tags = [t for image in data["images"] for t in image["tags"]]
    assert len(tags) == len(set(tags)) == 108 + 14 * 2
    assert {image["context"] for image in data["images"]} == {"docker"}  # ROCm's default ./docker
    assert len(data["warnings"]) == 14 and all("matches 3 files" in w for w in data["warnings"])
