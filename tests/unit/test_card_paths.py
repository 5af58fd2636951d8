"""Hostile cards (issue 16 items 5, 6, 10): no consumer of a card reads, sends or writes a file outside the
MAD package, whatever the card's paths say (absolute, ``..``, or a symlink out of the package).

Each consumer is checked on the same hostile package: the cluster planner (``_plan.host_plan``, what
the sync sends), the host's preflight, the data planner, ``generate ansible``, ``generate k8s`` and the
build planner. The outside files hold a distinctive text that must appear nowhere. The real runs (local
containers planting symlinks, the loopback cluster) are in tests/integration/test_hostile_paths.py and
tests/cluster/test_hostile_paths.py; the rule itself in the collection's test__paths.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.mad.engine.plugins.module_utils._data import DataError, plan_data
from ansible_collections.mad.engine.plugins.module_utils._execute import preflight
from ansible_collections.mad.engine.plugins.module_utils._plan import host_plan

from madengine.cli.app import app, invoke
from madengine.credentials import Credentials
from madengine.execution_config import ExportOptions, build_execution_config, execution_config_from_dict
from madengine.manifest import BuiltImage, Manifest, write_manifest
from madengine.model import Model

SECRET = "OUTSIDE-distinctive-host-secret-4471"
OK = "#!/bin/bash\necho 'performance: 1 x'\n"
CTX = {"gpu_vendor": "CPU", "guest_os": "UBUNTU"}
DIGEST = "sha256:" + "5e" * 32


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def hostile(tmp_path: Path) -> dict[str, Any]:
    """A MAD package in tmp_path/mad, and outside it tmp_path/outside (a run.sh and a secret file).

    Cards: ``good`` (inside), ``abs`` (absolute path outside, as ``/etc/ssh/run.sh``), ``dotdot``
    (``../outside/run.sh``), ``linkdir`` (scripts/linkdir -> the outside folder), ``linkfile`` (inside,
    but its folder holds a file symlink to the outside secret: the card runs, the link is never followed)
    and ``csv`` (multiple_results naming an absolute file).
    """
    root, outside = tmp_path / "mad", tmp_path / "outside"
    write(outside / "run.sh", f"#!/bin/bash\n# {SECRET}\necho 'performance: 1 x'\n")
    write(outside / "id_ed25519", f"{SECRET}\n")
    write(root / "docker" / "base.Dockerfile", "FROM madengine-base:bookworm\n")
    write(root / "scripts" / "common" / "tools.json", '{"tools": {}}\n')
    write(root / "scripts" / "good" / "run.sh", OK)
    write(root / "scripts" / "linkfile" / "run.sh", OK)
    os.symlink(outside / "id_ed25519", root / "scripts" / "linkfile" / "key")
    os.symlink(outside, root / "scripts" / "linkdir")
    # A symlink that stays inside the package is fine (and followed).
    os.symlink("../good/run.sh", root / "scripts" / "linkfile" / "alias.sh")
    cards = {
        "good": "scripts/good/run.sh",
        "abs": str(outside / "run.sh"),
        "dotdot": "../outside/run.sh",
        "linkdir": "scripts/linkdir/run.sh",
        "linkfile": "scripts/linkfile/run.sh",
        "csv": "scripts/good/run.sh",
    }
    models = [Model(name=name, tags=["hostile"], dockerfile="docker/base", scripts=scripts, n_gpus=1,
                    multiple_results="/etc/shadow" if name == "csv" else None)
              for name, scripts in cards.items()]
    (root / "models.json").write_text(json.dumps([m.to_dict() for m in models]))
    write(root / "data.json", "{}\n")
    return {"root": root, "outside": outside, "models": models, "tmp": tmp_path}


BAD = ("abs", "dotdot", "linkdir", "csv")


def manifest_of(models: list[Model], mad_dir: str = "") -> Manifest:
    image = BuiltImage(docker_image="ci-base", dockerfile="docker/base.Dockerfile",
                       base_docker="madengine-base:bookworm", docker_sha="sha256:" + "0b" * 32, build_duration=1.0,
                       gpu_vendor="CPU", guest_os="UBUNTU", models=[m.name for m in models])
    image.registry_image = f"127.0.0.1:5000/ci-base@{DIGEST}"
    image.image_digest = DIGEST
    image.registry = "127.0.0.1:5000"
    image.pushed = True
    manifest = Manifest(built_images={"ci-base": image}, registry="127.0.0.1:5000", context=dict(CTX),
                        mad_dir=mad_dir)
    for model in models:
        manifest.built_models[f"ci-{model.name}"] = model
        manifest.model_images[f"ci-{model.name}"] = "ci-base"
    return manifest


def exec_config(root: Path, models: list[Model]):
    options = ExportOptions(mad_dir=root, data_config="data.json", tools_config="scripts/common/tools.json",
                            data_config_given=False, tools_config_given=False)
    result = build_execution_config(models, CTX, options)
    return execution_config_from_dict(json.loads(json.dumps(result.config)))


def no_secret_in(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET not in path.read_text(errors="replace"), path


# ------------------------------------------------------------------------------- the cluster planner
def test_host_plan_sends_nothing_outside_and_fails_only_the_hostile_cards(hostile) -> None:
    root = hostile["root"]
    manifest = manifest_of(hostile["models"]).to_dict()
    plan = host_plan(manifest, list(manifest["built_models"]), host="node2", run_id="r1", workdir="/w",
                     mad_dir=str(root))
    for rel in plan["sync"]:
        assert not os.path.isabs(rel) and not rel.startswith(".."), plan["sync"]
        assert os.path.realpath(root / rel).startswith(str(root) + os.sep), rel
    assert "scripts/linkdir" not in plan["sync"] and "scripts/good" in plan["sync"]
    errors = {m["name"]: m["request"].get("error", "") for m in plan["models"]}
    for name in BAD:
        assert f"model {name}: " in errors[name] and "outside" in errors[name], errors[name]
    assert errors["good"] == "" and errors["linkfile"] == ""


def test_host_preflight_refuses_the_hostile_cards(hostile) -> None:
    root = str(hostile["root"])
    for model in hostile["models"]:
        problems = preflight(model.to_dict(), {}, root)
        if model.name in BAD:
            assert problems and "outside" in problems[0], (model.name, problems)
        else:
            assert problems == [], (model.name, problems)


# ------------------------------------------------------------------------------------------- data
def test_relative_data_paths_stay_in_the_package_absolute_ones_are_host_paths(hostile) -> None:
    root, outside = hostile["root"], hostile["outside"]
    write(root / "data" / "ds" / "a.txt", "x")
    os.symlink(outside, root / "data" / "out")
    config = {"up": {"local": "../outside"}, "link": {"local": "data/out"}, "ok": {"local": "data/ds"},
              "host": {"local": str(outside)}, "nas": {"nas": {"path": "../outside"}}}
    for name in ("up", "link", "nas"):
        with pytest.raises(DataError, match="outside the MAD package"):
            plan_data(name, config, str(root))
    assert plan_data("ok", config, str(root)).host_path == str(root / "data" / "ds")
    # An absolute local path names data on the host by design (never synced from the controller).
    assert plan_data("host", config, str(root)).host_path == str(outside)


# ------------------------------------------------------------------------------------ generate ansible
def test_generate_ansible_writes_nothing_outside_the_bundle_and_no_outside_file(hostile, capsys, monkeypatch) -> None:
    root, tmp = hostile["root"], hostile["tmp"]
    work = tmp / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("MAD_DIR", raising=False)
    monkeypatch.delenv("MODEL_DIR", raising=False)
    write_manifest(work / "build_manifest.json", manifest_of(hostile["models"], mad_dir=str(root)))
    config = exec_config(root, hostile["models"])
    (work / "execution_config.json").write_text(json.dumps(config.raw))
    before = sorted(p for p in tmp.rglob("*") if "work" not in p.parts)
    code = invoke(app, ["generate", "ansible", "--output", "bundle/site.yml", "--mad-dir", str(root)], "madengine-cli")
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert sorted(p for p in tmp.rglob("*") if "work" not in p.parts) == before  # nothing written beside
    bundle = work / "bundle"
    no_secret_in(bundle)
    mad = bundle / "mad"
    assert (mad / "scripts" / "good" / "run.sh").is_file()
    assert (mad / "scripts" / "linkfile" / "alias.sh").read_text() == OK  # an inside link: its content
    assert not (mad / "scripts" / "linkfile" / "key").exists()
    assert not (mad / "scripts" / "linkdir").exists() and not (bundle / "outside").exists()
    text = " ".join((out + err).split())
    for name in ("abs", "dotdot", "linkdir"):
        assert f"model {name}: scripts" in text, text


# ---------------------------------------------------------------------------------------- generate k8s
def test_generate_k8s_gives_hostile_cards_no_job_and_ships_no_outside_file(hostile) -> None:
    from madengine.k8s import render_k8s

    root = hostile["root"]
    manifest = manifest_of(hostile["models"])
    bundle = render_k8s(manifest, exec_config(root, hostile["models"]), mad_dir=root,
                        credentials=Credentials.load(root, env={}))
    assert {job.model for job in bundle.jobs} == {"good", "linkfile"}
    reasons = {s["model"]: s["reason"] for s in bundle.skipped}
    for name in BAD:
        assert "outside" in reasons[name], reasons
    for name, text in bundle.files.items():
        assert SECRET not in text, name
    files = {f for job in bundle.jobs for f in job.files}
    assert "scripts/linkfile/key" not in files and "scripts/linkfile/alias.sh" in files


# ---------------------------------------------------------------------------------------------- build
def test_build_refuses_a_dockerfile_or_context_outside_the_package(hostile) -> None:
    from madengine.build import BuildOptions, plan_builds

    root, outside = hostile["root"], hostile["outside"]
    write(outside / "evil.Dockerfile", "FROM madengine-base:bookworm\n")
    os.symlink(outside / "evil.Dockerfile", root / "docker" / "linked.Dockerfile")
    models = [
        Model(name="good", tags=["b"], dockerfile="docker/base", scripts="scripts/good/run.sh"),
        Model(name="abs", tags=["b"], dockerfile=str(outside / "evil"), scripts="scripts/good/run.sh"),
        Model(name="dotdot", tags=["b"], dockerfile="../outside/evil", scripts="scripts/good/run.sh"),
        Model(name="link", tags=["b"], dockerfile="docker/linked", scripts="scripts/good/run.sh"),
        Model(name="ctx", tags=["b"], dockerfile="docker/base", scripts="scripts/good/run.sh",
              dockercontext=str(outside)),
    ]
    options = BuildOptions(mad_dir=root, context=dict(CTX), manifest_output=str(hostile["tmp"] / "m.json"))
    plan = plan_builds(models, options, Credentials.load(root, env={}))
    assert [m.name for image in plan.images for m in image.models] == ["good"]
    failures = {f.model: f.error for f in plan.failures}
    assert set(failures) == {"abs", "dotdot", "link", "ctx"}
    assert all("outside the MAD package" in reason for reason in failures.values()), failures


# ------------------------------------------------------------------------------------- the real hub
def test_real_hub_cards_keep_to_the_rule() -> None:
    """The ROCm/MAD cards (``../../docker/x`` from scripts/<dir>/, ``run.sh``) are all inside the package."""
    from ansible_collections.mad.engine.plugins.module_utils._paths import card_problems

    from madengine.model import model_from_raw

    real = Path(__file__).resolve().parents[3] / "shared" / "realmad"
    if not (real / "models.json").is_file():
        real = Path("/work/shared/realmad")
    if not (real / "models.json").is_file():
        pytest.skip("the real hub's cards are not here")
    count = 0
    for path in [real / "models.json", *sorted(real.glob("scripts/*/models.json"))]:
        raw = json.loads(path.read_text())
        folder = None if path.parent == real else path.parent.name
        for index, card in enumerate(raw):
            model = model_from_raw(card, where=str(path), index=index, source="dir" if folder else "root", dir=folder,
                                   relocate=True)
            fields = ("scripts", "dockerfile", "dockercontext", "multiple_results")
            assert card_problems(model.to_dict(), str(real), fields) == [], (path, card["name"])
            count += 1
    assert count == 108
