# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""_plan: a manifest's plan for one host, and one model's request (what every executor plans with)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible_collections.mad.engine.plugins.module_utils._plan import (
    host_plan,
    model_request,
    plan_stems,
    run_context,
    select_keys,
)
from ansible_collections.mad.engine.plugins.module_utils._request import run_request
from ansible_collections.mad.engine.plugins.module_utils._runspec import MASK

DIGEST = "sha256:" + "ab" * 32


def _model(name: str, scripts: str, **kw) -> dict:
    return dict({"name": name, "tags": ["t"], "dockerfile": "docker/dummy", "scripts": scripts, "args": "",
                 "n_gpus": 1, "timeout": 300, "cred": None, "data": None, "docker_image": "ci-a"}, **kw)


MANIFEST = {
    "built_images": {
        "ci-a": {"docker_image": "ci-a", "dockerfile": "docker/dummy.Dockerfile", "base_docker": "base:1",
                 "docker_sha": "sha256:1", "build_duration": 1.5, "registry_image": f"127.0.0.1:5000/ci-a@{DIGEST}",
                 "image_digest": DIGEST},
        "ci-b": {"docker_image": "ci-b", "dockerfile": "docker/b.Dockerfile", "registry_image": None},
    },
    "built_models": {
        "ci-a": _model("a", "scripts/a/run.sh"),
        "ci-a2": _model("a2", "scripts/a2", timeout=None),
        "ci-b": _model("b", "scripts/b/run.sh", docker_image="ci-b", data="tiny", cred="X"),
    },
    "context": {"gpu_vendor": "CPU", "docker_env_vars": {"HF_TOKEN": MASK, "KEEP": "1"}},
    "mad_dir": "/controller/MAD",
}


def test_run_context_overrides_and_drops_masked_env() -> None:
    ctx = run_context(MANIFEST["context"], {"guest_os": "UBUNTU", "gpu_vendor": "AMD"})
    assert ctx == {"gpu_vendor": "AMD", "guest_os": "UBUNTU", "docker_env_vars": {"KEEP": "1"}}
    ctx = run_context(MANIFEST["context"], {"docker_env_vars": {"HF_TOKEN": "real"}})
    assert ctx["docker_env_vars"] == {"HF_TOKEN": "real"}


@pytest.mark.parametrize(("models", "assignments", "host", "keys"), [
    ([], {}, "h1", ["ci-a", "ci-a2", "ci-b"]),
    (["ci-b"], {}, "h1", ["ci-b"]),
    (["ci-b"], {"h1": ["ci-a"], "h2": ["ci-b"]}, "h1", ["ci-a"]),
    ([], {"h2": ["ci-b"]}, "h1", []),
])
def test_select_keys(models, assignments, host, keys) -> None:
    assert select_keys(MANIFEST, models, assignments, host) == keys


def _mad(tmp_path: Path) -> Path:
    mad = tmp_path / "MAD"
    for folder in ("scripts/a", "scripts/a2", "scripts/b", "scripts/common/pre_scripts", "data/tiny", "scripts/x"):
        (mad / folder).mkdir(parents=True, exist_ok=True)
    (mad / "data.json").write_text("{}")
    (mad / "scripts/common/tools.json").write_text("{}")
    return mad


def test_host_plan_registry(tmp_path: Path) -> None:
    mad = _mad(tmp_path)
    plan = host_plan(MANIFEST, ["ci-a", "ci-a2", "ci-b"], host="h1", run_id="r1", workdir="/w", mad_dir=str(mad),
                     context={"pre_scripts": [{"path": "scripts/x/pre.sh"}]}, options={"keep_alive": True, "bogus": 1},
                     tools_config={"tools": {}}, tools_config_name="tools.json",
                     tools_config_path=str(mad / "scripts/common/tools.json"),
                     data_config={"tiny": {"local": "data/tiny"}}, data_config_path=str(mad / "data.json"),
                     step_timeout=100)
    assert plan["mad_dir"] == "/w/mad" and plan["output_dir"] == "/w/results/r1"
    assert plan["images"] == [
        {"key": "ci-a", "name": f"127.0.0.1:5000/ci-a@{DIGEST}", "digest": DIGEST, "id": "", "tarball": "",
         "load_from": ""},
        {"key": "ci-b", "name": "ci-b", "digest": "", "id": "", "tarball": "", "load_from": ""},
    ]
    assert plan["image_checks"] == [{"name": f"127.0.0.1:5000/ci-a@{DIGEST}", "digest": DIGEST, "id": ""},
                                    {"name": "ci-b", "digest": "", "id": ""}]
    # The tools config lies in scripts/common: one entry covers both.
    assert sorted(plan["sync"]) == ["data.json", "data/tiny", "scripts/a", "scripts/a2", "scripts/b", "scripts/common"]
    assert plan["missing"] == ["scripts/x/pre.sh"]
    a, a2, b = plan["models"]
    assert (a["key"], a["name"], a["image"], a["cred"], a["task_timeout"]) == (
        "ci-a", "a", f"127.0.0.1:5000/ci-a@{DIGEST}", "", 400)
    assert a2["task_timeout"] == 7200 + 100  # the default run timeout
    assert b["cred"] == "X" and b["image"] == "ci-b"
    req = a["request"]
    assert "docker_image" not in req["model"] and req["model"]["name"] == "a"
    assert req["image_info"] == {"docker_file": "docker/dummy.Dockerfile", "base_docker": "base:1",
                                 "docker_sha": "sha256:1", "image_digest": DIGEST, "build_duration": 1.5}
    assert req["options"] == {"keep_alive": True, "timeout": -1}
    assert req["context"]["docker_env_vars"] == {"KEEP": "1"}
    assert (req["mad_dir"], req["output_dir"], req["run_id"], req["host"], req["key"]) == (
        "/w/mad", "/w/results/r1", "r1", "h1", "ci-a")
    assert req["tools_config"] == {"tools": {}} and req["tools_config_name"] == "tools.json"
    assert req["data_config"] == {"tiny": {"local": "data/tiny"}}
    json.dumps(plan)  # plain data: it travels as module arguments


def test_host_plan_timeout_option_and_none(tmp_path: Path) -> None:
    plan = host_plan(MANIFEST, ["ci-a"], host="h", run_id="r", workdir="/w", mad_dir=str(tmp_path),
                     options={"timeout": 0})
    assert plan["models"][0]["task_timeout"] == 0  # no run limit, no task limit
    plan = host_plan(MANIFEST, ["ci-a"], host="h", run_id="r", workdir="/w", mad_dir=str(tmp_path),
                     options={"timeout": 5}, step_timeout=10)
    assert plan["models"][0]["task_timeout"] == 15


def test_host_plan_copy_transfer(tmp_path: Path) -> None:
    plan = host_plan(MANIFEST, ["ci-a", "ci-b"], host="h", run_id="r", workdir="/w", mad_dir=str(tmp_path),
                     image_transfer="copy", image_tarballs={"ci-a": "/ctl/ci-a.tar"})
    assert plan["images"][0] == {"key": "ci-a", "name": "ci-a", "digest": "", "id": "", "tarball": "/ctl/ci-a.tar",
                                 "load_from": "/w/images/r/ci-a.tar"}  # a dir per run: removed after it
    assert plan["images"][1]["name"] == "ci-b" and plan["images"][1]["tarball"] == ""  # pulled
    # With the image ID the tarball holds: a host whose ci-a tag is an older build loads it again.
    plan = host_plan(MANIFEST, ["ci-a"], host="h", run_id="r", workdir="/w", mad_dir=str(tmp_path),
                     image_transfer="copy", image_tarballs={"ci-a": {"path": "/ctl/x.tar", "id": "sha256:77"}})
    assert plan["image_checks"] == [{"name": "ci-a", "digest": "", "id": "sha256:77"}]
    assert plan["images"][0]["load_from"] == "/w/images/r/x.tar"
    assert plan["models"][0]["request"]["image"] == "ci-a"
    with pytest.raises(ValueError, match="image_transfer"):
        host_plan(MANIFEST, [], host="h", run_id="r", workdir="/w", mad_dir="/", image_transfer="ftp")


def test_host_plan_unknown_key_becomes_a_failure_request(tmp_path: Path) -> None:
    plan = host_plan(MANIFEST, ["nope"], host="h", run_id="r", workdir=str(tmp_path), mad_dir=str(tmp_path))
    [entry] = plan["models"]
    result = run_request(entry["request"])
    [row] = result["rows"]
    assert row["status"] == "FAILURE" and "not in the manifest" in row["reason"] and not result["infra_error"]


def test_model_request_is_the_base_plus_the_card_its_image_and_stem(tmp_path: Path) -> None:
    mad = _mad(tmp_path)
    base = {"run_id": "r", "host": "h", "context": {"gpu_vendor": "CPU"}}
    planned = model_request(MANIFEST, "ci-a", base, mad_dir=str(mad), stems=plan_stems(MANIFEST))
    assert (planned["key"], planned["name"], planned["image_key"]) == ("ci-a", "a", "ci-a")
    req = planned["request"]
    assert {k: req[k] for k in base} == base and req["key"] == "ci-a"
    assert req["image"] == f"127.0.0.1:5000/ci-a@{DIGEST}"  # pinned by digest
    assert req["model"] == {k: v for k, v in MANIFEST["built_models"]["ci-a"].items() if k != "docker_image"}
    assert req["file_stem"] == "a" and "error" not in req
    assert base == {"run_id": "r", "host": "h", "context": {"gpu_vendor": "CPU"}}  # not changed


def test_model_request_errors_for_unknown_keys_missing_images_and_outside_paths(tmp_path: Path) -> None:
    mad = _mad(tmp_path)
    manifest = dict(MANIFEST, built_models=dict(
        MANIFEST["built_models"], lost=_model("lost", "scripts/a/run.sh", docker_image="gone"),
        evil=_model("evil", "../../etc/run.sh")))
    stems = plan_stems(manifest)
    errors = {key: model_request(manifest, key, {}, mad_dir=str(mad), stems=stems)["request"].get("error", "")
              for key in ("nope", "lost", "evil", "ci-a")}
    assert "not in the manifest's built_models" in errors["nope"]
    assert "its image is not in the manifest's built_images" in errors["lost"]
    assert "model evil: scripts" in errors["evil"] and "outside" in errors["evil"]
    assert errors["ci-a"] == ""
