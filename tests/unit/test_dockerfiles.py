"""Dockerfile selection and build planning: CONTEXT headers, filtering, naming, dedupe (no docker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible_collections.mad.engine.plugins.module_utils._secrets import MASK

from madengine.build import BuildOptions, build_command, image_name, log_file_name, plan_builds, run_options
from madengine.credentials import Credentials
from madengine.dockerfiles import (
    base_image,
    dockerfile_stem,
    find_candidates,
    header_matches,
    parse_header,
    select_dockerfiles,
)
from madengine.errors import InvalidInputError
from madengine.model import Model

CTX = {"gpu_vendor": "AMD", "guest_os": "UBUNTU"}
BODY = "ARG BASE_DOCKER=madengine-base:bookworm\nFROM $BASE_DOCKER\nRUN true\n"


def dockerfile(root: Path, rel: str, header: str | None = None, body: str = BODY) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((f"# CONTEXT {header}\n" if header is not None else "") + body)
    return path


# ------------------------------------------------------------------------------------ header parsing
def test_header_json_and_python_literal() -> None:
    assert parse_header('# CONTEXT {"gpu_vendor": "AMD"}\nFROM x\n')[0] == {"gpu_vendor": "AMD"}
    assert parse_header("# CONTEXT {'gpu_vendor': 'NVIDIA', 'guest_os': 'UBUNTU'}\n")[0] == {
        "gpu_vendor": "NVIDIA", "guest_os": "UBUNTU"}
    assert parse_header("#CONTEXT {'a': True}")[0] == {"a": True}


def test_header_only_in_first_five_lines() -> None:
    text = "\n".join(["# a", "# b", "# c", "# d", "# e", "# CONTEXT {'gpu_vendor': 'AMD'}"])
    assert parse_header(text) == (None, "", None)
    text = "\n".join(["# a", "# b", "# c", "# d", "# CONTEXT {'gpu_vendor': 'AMD'}"])
    assert parse_header(text)[0] == {"gpu_vendor": "AMD"}


@pytest.mark.parametrize("raw", ["{gpu_vendor: AMD", "['AMD']", "42", "{'a': foo()}"])
def test_unreadable_header_matches_anything(raw: str) -> None:
    header, text, error = parse_header(f"# CONTEXT {raw}\nFROM x\n")
    assert header is None and text == raw and error
    assert header_matches(header, CTX)


def test_matching_rules() -> None:
    assert header_matches(None, CTX)
    assert header_matches({}, CTX)
    assert header_matches({"gpu_vendor": "amd"}, CTX)  # case-insensitive for gpu_vendor
    assert header_matches({"guest_os": "Ubuntu"}, CTX)
    assert not header_matches({"gpu_vendor": "NVIDIA"}, CTX)
    assert header_matches({"unknown_key": "x"}, CTX)  # not in the context: no constraint
    assert not header_matches({"flavour": "Big"}, {"flavour": "big"})  # other keys are case-sensitive
    assert header_matches({"n": 8}, {"n": "8"})


def test_candidates_and_filtering(tmp_path: Path) -> None:
    dockerfile(tmp_path, "docker/m.amd.Dockerfile", "{'gpu_vendor': 'AMD'}")
    dockerfile(tmp_path, "docker/m.nvidia.Dockerfile", '{"gpu_vendor": "NVIDIA"}')
    dockerfile(tmp_path, "docker/m.any.Dockerfile")
    dockerfile(tmp_path, "docker/m.ubuntu.amd.Dockerfile", "{'gpu_vendor': 'amd', 'guest_os': 'ubuntu'}")
    dockerfile(tmp_path, "docker/mx.Dockerfile")  # another prefix
    dockerfile(tmp_path, "docker/m.notes.txt")
    sel = select_dockerfiles(tmp_path, "docker/m", CTX)
    assert [c.path.name for c in sel.candidates] == [
        "m.amd.Dockerfile", "m.any.Dockerfile", "m.nvidia.Dockerfile", "m.ubuntu.amd.Dockerfile"]
    assert [c.stem for c in sel.selected] == ["m.amd", "m.any", "m.ubuntu.amd"]
    sel = select_dockerfiles(tmp_path, "docker/m", {"gpu_vendor": "NVIDIA", "guest_os": "UBUNTU"})
    assert [c.stem for c in sel.selected] == ["m.any", "m.nvidia"]


def test_prefix_naming_a_file_is_that_file(tmp_path: Path) -> None:
    dockerfile(tmp_path, "docker/solo.Dockerfile")
    pattern, cands = find_candidates(tmp_path, "docker/solo.Dockerfile")
    assert [c.path.name for c in cands] == ["solo.Dockerfile"]
    assert find_candidates(tmp_path, "docker/none")[1] == []


def test_describe_lists_candidates_and_headers(tmp_path: Path) -> None:
    dockerfile(tmp_path, "docker/m.nvidia.Dockerfile", '{"gpu_vendor": "NVIDIA"}')
    sel = select_dockerfiles(tmp_path, "docker/m", CTX)
    assert sel.selected == []
    assert 'm.nvidia.Dockerfile: # CONTEXT {"gpu_vendor": "NVIDIA"}' in sel.describe()


def test_base_image_resolution() -> None:
    assert base_image(BODY, {}) == "madengine-base:bookworm"
    assert base_image(BODY, {"BASE_DOCKER": "127.0.0.1:5000/b:1"}) == "127.0.0.1:5000/b:1"
    assert base_image("ARG IMG\nARG TAG=1\nFROM ${IMG}:${TAG} AS x\n", {"IMG": "a", "TAG": "2"}) == "a:2"
    # Like Docker: a build arg only counts where an ARG declares it.
    assert base_image("FROM ${IMG}:latest\n", {"IMG": "a"}) == ":latest"
    assert base_image("# c\nARG X='q/r'\nFROM --platform=linux/amd64 $X\n", {}) == "q/r"
    assert base_image("RUN true\n", {}) == ""


# ------------------------------------------------------------------------------------ naming
def test_upstream_image_and_log_names() -> None:
    assert image_name("dummy2/dummy_2", "docker/dummy.Dockerfile") == "ci-dummy2_dummy_2_dummy"
    assert image_name("Dummy", "docker/dummy.ubuntu.amd.Dockerfile") == "ci-dummy_dummy.ubuntu.amd"
    assert log_file_name("dummy2/dummy_2", "docker/dummy.Dockerfile") == "dummy2_dummy_2_dummy.build.live.log"
    assert dockerfile_stem("x/pyt.rocm.Dockerfile") == "pyt.rocm"


# ------------------------------------------------------------------------------------ planning
def mad(tmp_path: Path) -> Path:
    dockerfile(tmp_path, "docker/a.Dockerfile")
    dockerfile(tmp_path, "docker/b.amd.Dockerfile", "{'gpu_vendor': 'AMD'}")
    dockerfile(tmp_path, "docker/b.nvidia.Dockerfile", "{'gpu_vendor': 'NVIDIA'}")
    dockerfile(tmp_path, "docker/c.nvidia.Dockerfile", "{'gpu_vendor': 'NVIDIA'}")
    (tmp_path / "credential.json").write_text(json.dumps({"hf": {"username": "u", "token": "tok-secret-1"}}))
    return tmp_path


def options(root: Path, **kw) -> BuildOptions:
    return BuildOptions(mad_dir=root, context=dict(CTX, **kw.pop("ctx", {})),
                        manifest_output=root / "out" / "build_manifest.json", **kw)


def test_plan_dedupes_shared_dockerfile_and_build_args(tmp_path: Path) -> None:
    root = mad(tmp_path)
    models = [Model(name="m1", dockerfile="docker/a"), Model(name="d/m2", dockerfile="docker/a"),
              Model(name="m3", dockerfile="docker/a", cred="hf")]
    plan = plan_builds(models, options(root), Credentials.load(root, env={}))
    assert [p.docker_image for p in plan.images] == ["ci-m1_a", "ci-m3_a"]
    shared = plan.images[0]
    assert shared.model_names == ["m1", "d/m2"]
    assert shared.model_keys == ["ci-m1_a", "ci-d_m2_a"]
    assert shared.log_file == root / "out" / "m1_a.build.live.log"
    assert plan.images[1].build_args == {"hf_USERNAME": "u", "hf_TOKEN": "tok-secret-1"}


def test_plan_multiple_matches_and_no_match(tmp_path: Path) -> None:
    root = mad(tmp_path)
    models = [Model(name="mb", dockerfile="docker/b"), Model(name="mc", dockerfile="docker/c"),
              Model(name="md", dockerfile="docker/missing"), Model(name="me")]
    plan = plan_builds(models, options(root, ctx={"gpu_vendor": "amd"}), Credentials({}, env={}))
    assert [p.docker_image for p in plan.images] == ["ci-mb_b.amd"]
    errors = {f.model: f.error for f in plan.failures}
    assert "c.nvidia.Dockerfile" in errors["mc"] and "NVIDIA" in errors["mc"]
    assert "docker/missing.*Dockerfile" in errors["md"]
    assert "no \"dockerfile\"" in errors["me"]
    plan = plan_builds([Model(name="mb", dockerfile="docker/b")],
                       options(root, ctx={"gpu_vendor": "NVIDIA"}), Credentials({}, env={}))
    assert [p.docker_image for p in plan.images] == ["ci-mb_b.nvidia"]


def test_plan_skips_deprecated_unless_asked(tmp_path: Path) -> None:
    root = mad(tmp_path)
    models = [Model(name="old", dockerfile="docker/a", deprecated=True)]
    plan = plan_builds(models, options(root), Credentials({}, env={}))
    assert plan.images == [] and plan.skipped[0].model == "old"
    plan = plan_builds(models, options(root, ignore_deprecated=True), Credentials({}, env={}))
    assert [p.docker_image for p in plan.images] == ["ci-old_a"]


def test_plan_missing_cred_is_a_model_failure(tmp_path: Path) -> None:
    root = mad(tmp_path)
    plan = plan_builds([Model(name="x", dockerfile="docker/a", cred="nope")], options(root),
                       Credentials.load(root, env={}))
    assert plan.images == [] and "'nope' not found" in plan.failures[0].error


def test_plan_same_name_twice_gets_distinct_model_keys(tmp_path: Path) -> None:
    root = mad(tmp_path)
    models = [Model(name="dyn", dockerfile="docker/a", args="--bs 1"),
              Model(name="dyn", dockerfile="docker/a", args="--bs 2")]
    plan = plan_builds(models, options(root), Credentials({}, env={}))
    assert len(plan.images) == 1
    assert plan.images[0].model_keys == ["ci-dyn_a", "ci-dyn_a_2"]


def test_build_args_sources_and_masked_command(tmp_path: Path) -> None:
    root = mad(tmp_path)
    env = {"MAD_SECRETS_HF": "env-secret-value", "OTHER": "x"}
    opts = options(root, ctx={"docker_build_arg": {"BASE_DOCKER": "madengine-base:bookworm", "X": "1"}})
    plan = plan_builds([Model(name="m", dockerfile="docker/a", cred="hf")], opts,
                       Credentials.load(root, env=env))
    img = plan.images[0]
    assert img.build_args == {"BASE_DOCKER": "madengine-base:bookworm", "X": "1",
                              "MAD_SECRETS_HF": "env-secret-value", "hf_USERNAME": "u",
                              "hf_TOKEN": "tok-secret-1"}
    cmd = build_command(img, root, nocache=True, pull=False)
    assert cmd.startswith("docker build --network host --no-cache -t ci-m_a -f docker/a.Dockerfile")
    assert "--build-arg BASE_DOCKER=madengine-base:bookworm" in cmd
    assert f"--build-arg 'MAD_SECRETS_HF={MASK}'" in cmd and f"'hf_TOKEN={MASK}'" in cmd
    assert "env-secret-value" not in cmd and "tok-secret-1" not in cmd
    assert cmd.endswith(" docker")


def test_dockercontext_is_the_build_context(tmp_path: Path) -> None:
    root = mad(tmp_path)
    (root / "ctx").mkdir()
    plan = plan_builds([Model(name="m", dockerfile="docker/a", dockercontext="ctx")], options(root),
                       Credentials({}, env={}))
    assert plan.images[0].context_dir == (root / "ctx").resolve()


def test_run_options_checks_given_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = mad(tmp_path / "mad")
    (root / "data.json").write_text("{}")
    opts = run_options(root, data_config="data.json", tools_config="scripts/common/tools.json",
                       force_mirror_local="mirror", disable_skip_gpu_arch=True, sys_env_details=False,
                       output="perf.csv", tools_config_given=False)
    assert opts["data_config"] == str((root / "data.json").resolve())
    assert opts["tools_config"] is None  # default file absent: fine
    assert opts["force_mirror_local"] == str(tmp_path / "mirror")
    assert opts["disable_skip_gpu_arch"] is True and opts["sys_env_details"] is False
    with pytest.raises(InvalidInputError, match="--tools-config file not found"):
        run_options(root, data_config=None, tools_config="nope.json", force_mirror_local=None,
                    disable_skip_gpu_arch=False, sys_env_details=True, output="perf.csv")
    (root / "bad.json").write_text("{")
    with pytest.raises(InvalidInputError, match="malformed JSON"):
        run_options(root, data_config="bad.json", tools_config=None, force_mirror_local=None,
                    disable_skip_gpu_arch=False, sys_env_details=True, output="perf.csv")
