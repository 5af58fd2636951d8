"""madengine/execute/local.py: the local run's plan (one request per manifest entry, through the shared
planner ``_plan.model_request``) and its context. The real runs are in tests/integration/test_run.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible_collections.mad.engine.plugins.module_utils._plan import model_request, plan_stems

from madengine.errors import InvalidInputError
from madengine.execute.local import RunOptions, local_run_context, plan_requests
from madengine.manifest import manifest_from_dict

DIGEST = "sha256:" + "cd" * 32


def _card(name: str, scripts: str, **kw) -> dict:
    return dict({"name": name, "tags": ["t"], "dockerfile": "docker/base", "scripts": scripts, "n_gpus": 1,
                 "timeout": 60}, **kw)


@pytest.fixture
def mad(tmp_path: Path) -> Path:
    root = tmp_path / "MAD"
    (root / "scripts" / "ok").mkdir(parents=True)
    (root / "scripts" / "ok" / "run.sh").write_text("echo 'performance: 1 x'\n")
    (root / "credential.json").write_text(json.dumps({"GH": {"username": "u", "password": "p"}}))
    return root


def _manifest(cards: dict[str, dict]) -> dict:
    images = {"ci-base": {"docker_image": "ci-base", "dockerfile": "docker/base.Dockerfile", "base_docker": "b:1",
                          "docker_sha": "sha256:1", "build_duration": 2.0, "image_digest": DIGEST,
                          "registry_image": f"127.0.0.1:5000/ci-base@{DIGEST}"}}
    models = {key: dict(card, docker_image="ci-base") for key, card in cards.items()}
    return {"built_images": images, "built_models": models, "context": {"gpu_vendor": "CPU", "guest_os": "UBUNTU",
                                                                        "docker_env_vars": {"KEEP": "1"}}}


def _options(tmp_path: Path) -> RunOptions:
    return RunOptions(output=tmp_path / "out" / "perf.csv", context={"gpu_vendor": "CPU"}, run_id="r1")


def test_each_request_is_the_shared_planners_plus_what_this_host_adds(mad: Path, tmp_path: Path) -> None:
    data = _manifest({"ci-ok": _card("ok", "scripts/ok/run.sh")})
    [(entry, request)] = plan_requests(manifest_from_dict(data), _options(tmp_path), mad)
    manifest_data = manifest_from_dict(data).to_dict()
    planned = model_request(manifest_data, "ci-ok", {}, mad_dir=str(mad), stems=plan_stems(manifest_data))["request"]
    for key in ("model", "image", "image_info", "file_stem"):
        assert request[key] == planned[key], key
    assert entry.key == "ci-ok" and request["image"] == f"127.0.0.1:5000/ci-base@{DIGEST}"
    assert (request["host"], request["run_id"], request["mad_dir"]) == ("localhost", "r1", str(mad))
    assert request["output_dir"] == str(tmp_path / "out")
    assert request["context"]["docker_env_vars"] == {"KEEP": "1"} and request["facts"]["gpu_vendor"] == "CPU"
    assert "error" not in request and "key" not in request


def test_a_bad_card_is_its_own_error_and_the_others_plan(mad: Path, tmp_path: Path) -> None:
    data = _manifest({"ci-ok": _card("ok", "scripts/ok/run.sh"),
                      "ci-gone": _card("gone", "scripts/gone/run.sh"),
                      "ci-evil": _card("evil", "../outside/run.sh"),
                      "ci-cred": _card("cred", "scripts/ok/run.sh", cred="NOPE")})
    requests = {entry.key: request for entry, request in plan_requests(manifest_from_dict(data), _options(tmp_path),
                                                                       mad)}
    assert "error" not in requests["ci-ok"]
    assert "script scripts/gone/run.sh not found" in requests["ci-gone"]["error"]
    assert "model evil: scripts" in requests["ci-evil"]["error"]
    assert "NOPE" in requests["ci-cred"]["error"]
    for request in requests.values():  # a FAILURE row needs these, error or not
        assert request["image"] and request["run_id"] == "r1"


def test_a_cards_credential_reaches_its_request_only(mad: Path, tmp_path: Path) -> None:
    data = _manifest({"ci-ok": _card("ok", "scripts/ok/run.sh"),
                      "ci-gh": _card("gh", "scripts/ok/run.sh", cred="GH")})
    requests = {entry.key: request for entry, request in plan_requests(manifest_from_dict(data), _options(tmp_path),
                                                                       mad)}
    assert "p" in requests["ci-gh"]["cred_env"].values()
    assert "p" not in requests["ci-ok"]["cred_env"].values()


def test_a_bad_context_stops_the_plan_before_anything_runs(mad: Path, tmp_path: Path) -> None:
    data = _manifest({"ci-ok": _card("ok", "scripts/ok/run.sh")})
    options = RunOptions(output=tmp_path / "perf.csv", context={"gpu_vendor": "CPU",
                                                                "pre_scripts": [{"path": "scripts/nope.sh"}]})
    with pytest.raises(InvalidInputError, match="scripts/nope.sh"):
        plan_requests(manifest_from_dict(data), options, mad)


def test_run_context_is_the_manifests_overridden_and_masked_values_dropped() -> None:
    data = _manifest({})
    data["context"]["docker_env_vars"]["HF_TOKEN"] = "******"
    context = local_run_context(manifest_from_dict(data), {"guest_os": "CENTOS"}, detect=False)
    assert context["guest_os"] == "CENTOS" and context["gpu_vendor"] == "CPU"
    assert context["docker_env_vars"] == {"KEEP": "1"}  # the mask nobody supplied again is not passed on
