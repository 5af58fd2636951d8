# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

import copy
import json
import shlex

import pytest
from ansible_collections.mad.engine.plugins.module_utils._data import plan_data
from ansible_collections.mad.engine.plugins.module_utils._runspec import (
    DEFAULT_SHM_SIZE,
    container_body,
    display_command,
    effective_args,
    multiple_results_path,
    parse_gpu_ranges,
    parse_size,
    run_timeout,
    script_command,
    script_location,
    select_gpus,
    should_skip,
)
from ansible_collections.mad.engine.plugins.module_utils._tools import resolve_tools

MODEL = {
    "name": "dummy",
    "args": "--bs 8",
    "n_gpus": 1,
    "timeout": None,
    "multiple_results": None,
    "data": None,
    "cred": None,
    "skip_gpu_arch": [],
    "scripts": "scripts/dummy/run.sh",
    "dockerfile": "docker/dummy",
    "tags": ["dummies"],
    "additional_docker_run_options": "",
}
AMD_FACTS = {
    "gpu_vendor": "AMD",
    "gpu_count": 4,
    "gpu_architecture": "gfx942",
    "render_devices": [f"/dev/dri/renderD{128 + i}" for i in range(4)],
}
NVIDIA_FACTS = {"gpu_vendor": "NVIDIA", "gpu_count": 8, "gpu_architecture": "sm_90", "render_devices": []}
INTEL_FACTS = {
    "gpu_vendor": "INTEL",
    "gpu_count": 2,
    "gpu_architecture": "pvc",
    "render_devices": ["/dev/dri/renderD128", "/dev/dri/renderD129"],
}
CPU_FACTS = {"gpu_vendor": "CPU", "gpu_count": 0, "gpu_architecture": "", "render_devices": []}
TOOLS_JSON = {
    "tools": {
        "a": {
            "cmd": "tool-a --wrap",
            "env_vars": {"A_ENV": "1"},
            "pre_scripts": [{"path": "scripts/common/pre_a.sh"}],
            "post_scripts": [{"path": "scripts/common/post_a.sh"}],
        },
        "b": {
            "cmd": "tool-b",
            "env_vars": {"B_ENV": "2"},
            "pre_scripts": [{"path": "scripts/common/pre_b.sh"}],
            "post_scripts": [{"path": "scripts/common/post_b.sh"}],
        },
    }
}


def model(**kw):
    return dict(copy.deepcopy(MODEL), **kw)


def body(m=None, ctx=None, facts=None, options=None, cred=None, plan=None, **kw):
    return container_body(
        m or model(),
        "ci-dummy:latest",
        ctx or {},
        AMD_FACTS if facts is None else facts,
        options or {},
        "/srv/MAD",
        "/srv/runs/r1/dummy",
        cred,
        plan,
        **kw,
    )


def env_of(b):
    return dict(item.split("=", 1) for item in b["Env"])


# ---------------------------------------------------------------- GPUs


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("0,2-4", [0, 2, 3, 4]),
        ("3", [3]),
        (5, [5]),
        (" 1 - 2 , 0", [0, 1, 2]),
        ("2,2,1-2", [1, 2]),
    ],
)
def test_parse_gpu_ranges(spec, expected):
    assert parse_gpu_ranges(spec) == expected


@pytest.mark.parametrize("spec", ["", "a", "3-1", "1,,2", "all", "-1", None])
def test_parse_gpu_ranges_rejects(spec):
    with pytest.raises(ValueError):
        parse_gpu_ranges(spec)


@pytest.mark.parametrize(
    "n, spec, count, expected",
    [
        (1, None, 4, [0]),
        (2, "all", 4, [0, 1]),
        (-1, None, 4, [0, 1, 2, 3]),
        (-1, "1,3", 4, [1, 3]),
        (2, "2-3", 4, [2, 3]),
        ("2", "0,2-3", 4, [0, 2]),
        (0, None, 4, []),
        (1, None, 0, []),
        (-1, None, 0, []),
    ],
)
def test_select_gpus(n, spec, count, expected):
    assert select_gpus(n, spec, count) == expected


@pytest.mark.parametrize(
    "n, spec, count, match",
    [
        (4, None, 2, "model big needs 4 GPUs but this host has 2"),
        (2, None, 0, "model big needs 2 GPUs but this host has 0"),
        (3, "0-1", 4, r"model big needs 3 GPUs but docker_gpus '0-1' allows only 2"),
        (1, "5", 4, "docker_gpus '5' names GPU 5 but this host has 4"),
        (-2, None, 4, "n_gpus must be -1"),
        ("x", None, 4, "n_gpus must be an integer"),
    ],
)
def test_select_gpus_errors(n, spec, count, match):
    with pytest.raises(ValueError, match=match):
        select_gpus(n, spec, count, model_name="big")


# ---------------------------------------------------------------- command line


def test_plain_command_line():
    assert (
        script_command(model(), {}) == "cd /myworkspace/run_directory && bash run.sh --bs 8; rc=$?; exit $rc"
    )


def test_py_script_uses_python3_and_dir_uses_run_sh():
    assert "&& python3 train.py --bs 8;" in script_command(model(scripts="scripts/x/train.py"), {})
    assert "&& bash run.sh --bs 8;" in script_command(model(scripts="scripts/x/"), {})
    assert script_location(model(scripts="scripts/x")) == ("scripts/x", "run.sh")
    assert script_location(model(scripts="./scripts/x/train.py")) == ("scripts/x", "train.py")
    assert script_location(model(scripts="run.sh")) == (".", "run.sh")
    with pytest.raises(ValueError, match="has no scripts"):
        script_location(model(scripts=""))


def test_hostile_args_stay_one_quoted_word():
    line = script_command(model(args='--name "; rm -rf /" --x $(id) `id`'), {})
    assert "bash run.sh --name '; rm -rf /' --x '$(id)' '`id`'; rc=$?" in line
    words = shlex.split(line)
    assert words[words.index("--name") + 1] == "; rm -rf /"


def test_unbalanced_quotes_are_a_clear_error():
    with pytest.raises(ValueError, match="model dummy args"):
        script_command(model(args='--x "open'), {})


def test_model_args_override():
    assert "bash run.sh --bs 64 --tag 'a b';" in script_command(
        model(), {"model_args": "--bs 64 --tag 'a b'"}
    )
    assert "bash run.sh; rc=$?" in script_command(model(), {"model_args": ""})
    assert effective_args(model(), {}) == "--bs 8"
    assert effective_args(model(), {"model_args": None}) == "--bs 8"


def test_tools_stack_and_pre_post_order():
    tools = resolve_tools([{"name": "a"}, {"name": "b"}], TOOLS_JSON, "tools.json")
    ctx = {
        "tools": tools,
        "pre_scripts": [{"path": "scripts/common/pre.sh", "args": "--v 'x y'"}],
        "post_scripts": [{"path": "scripts/common/post.sh"}],
    }
    line = script_command(model(), ctx)
    assert line == (
        "cd /myworkspace/run_directory"
        " && bash /myworkspace/scripts/common/pre_a.sh"
        " && bash /myworkspace/scripts/common/pre_b.sh"
        " && bash /myworkspace/scripts/common/pre.sh --v 'x y'"
        " && tool-a --wrap tool-b bash run.sh --bs 8"
        "; rc=$?"
        "; bash /myworkspace/scripts/common/post.sh"
        "; bash /myworkspace/scripts/common/post_b.sh"
        "; bash /myworkspace/scripts/common/post_a.sh"
        "; exit $rc"
    )


def test_data_commands_run_first(tmp_path):
    plan = plan_data("d", {"d": {"aws": "s3://b/d"}}, "/mad", None)
    line = script_command(model(), {"pre_scripts": [{"path": "p.sh"}]}, {}, plan)
    assert line.startswith(
        "cd /myworkspace/run_directory && mkdir -p /data/d && aws s3 sync s3://b/d /data/d"
        " && bash /myworkspace/p.sh && bash run.sh"
    )


def test_skip_model_run_runs_pre_and_post_only():
    line = script_command(
        model(),
        {"pre_scripts": [{"path": "p.sh"}], "post_scripts": [{"path": "q.sh"}]},
        {"skip_model_run": True},
    )
    assert line == (
        "cd /myworkspace/run_directory && bash /myworkspace/p.sh; rc=$?; bash /myworkspace/q.sh; exit $rc"
    )
    assert "run.sh" not in line


def test_keep_alive_records_rc_and_sleeps():
    line = script_command(model(), {}, {"keep_alive": True})
    assert line.endswith("; rc=$?; echo $rc > /myworkspace/run_directory/.madengine_rc; sleep infinity")
    assert "exit $rc" not in line


def test_hostile_script_paths_are_quoted():
    line = script_command(
        model(scripts="scripts/x/run me.sh"), {"pre_scripts": [{"path": "a;b.sh", "args": "$(x)"}]}
    )
    assert "bash '/myworkspace/a;b.sh' '$(x)'" in line
    assert "bash 'run me.sh' --bs 8" in line


# ---------------------------------------------------------------- container body


def test_body_basics_amd():
    b = body(run_id="r1")
    assert b["Image"] == "ci-dummy:latest"
    assert b["Cmd"] == ["bash", "-c", script_command(model(), {})]
    assert b["WorkingDir"] == "/myworkspace"
    assert b["Labels"] == {"madengine.model": "dummy", "madengine.run_id": "r1"}
    host = b["HostConfig"]
    assert host["NetworkMode"] == "host"
    assert host["Binds"] == ["/srv/MAD:/myworkspace:rw", "/srv/runs/r1/dummy:/myworkspace/run_directory:rw"]
    assert [d["PathOnHost"] for d in host["Devices"]] == ["/dev/kfd", "/dev/dri/renderD128"]
    assert host["GroupAdd"] == ["video"]
    assert host["IpcMode"] == "host"
    assert host["ShmSize"] == DEFAULT_SHM_SIZE == 16 * 1024**3
    assert host["CapAdd"] == ["SYS_PTRACE"]
    assert host["SecurityOpt"] == ["seccomp=unconfined"]
    assert "DeviceRequests" not in host
    json.dumps(b)


def test_amd_render_devices_follow_selected_gpus():
    b = body(model(n_gpus=2), {"docker_gpus": "1,3"})
    assert [d["PathOnHost"] for d in b["HostConfig"]["Devices"]] == [
        "/dev/kfd",
        "/dev/dri/renderD129",
        "/dev/dri/renderD131",
    ]
    assert env_of(b)["MAD_RUNTIME_NGPUS"] == "2"


def test_amd_without_render_device_facts_exposes_dev_dri():
    b = body(facts=dict(AMD_FACTS, render_devices=[]))
    assert [d["PathOnHost"] for d in b["HostConfig"]["Devices"]] == ["/dev/kfd", "/dev/dri"]


def test_nvidia_device_request():
    b = body(model(n_gpus=2), {"docker_gpus": "4-7"}, facts=NVIDIA_FACTS)
    host = b["HostConfig"]
    assert host["DeviceRequests"] == [
        {"Driver": "nvidia", "DeviceIDs": ["4", "5"], "Capabilities": [["gpu"]]}
    ]
    assert "Devices" not in host and "GroupAdd" not in host
    assert env_of(b)["MAD_GPU_VENDOR"] == "NVIDIA"


def test_intel_gets_dev_dri():
    host = body(facts=INTEL_FACTS)["HostConfig"]
    assert host["Devices"] == [
        {"PathOnHost": "/dev/dri", "PathInContainer": "/dev/dri", "CgroupPermissions": "rwm"}
    ]
    assert "IpcMode" not in host and "DeviceRequests" not in host


def test_cpu_gets_nothing_extra():
    b = body(model(n_gpus=1), facts=CPU_FACTS)
    assert set(b["HostConfig"]) == {"NetworkMode", "Binds"}
    assert env_of(b)["MAD_RUNTIME_NGPUS"] == "0"


def test_context_vendor_overrides_facts():
    b = body(ctx={"gpu_vendor": "CPU"}, facts=AMD_FACTS)
    assert env_of(b)["MAD_GPU_VENDOR"] == "CPU"
    assert "Devices" not in b["HostConfig"]


def test_too_many_gpus_is_an_error():
    with pytest.raises(ValueError, match="model dummy needs 8 GPUs but this host has 4"):
        body(model(n_gpus=8))


def test_env_vars_present_and_ordered():
    tools = resolve_tools(
        [{"name": "a"}, {"name": "b", "env_vars": {"B_ENV": "ctx"}}], TOOLS_JSON, "tools.json"
    )
    plan = plan_data("d", {"d": {"aws": "s3://b/d"}}, "/mad", None)
    b = body(
        model(multiple_results="perf_dummy.csv", additional_docker_run_options="-e OPT=1 --env=A_ENV=opt"),
        {"tools": tools, "docker_env_vars": {"Z": "z", "OPT": "ctx"}},
        cred={"HUB_PASSWORD": "s3cr3t"},
        plan=plan,
    )
    assert b["Env"] == [
        "MAD_MODEL_NAME=dummy",
        "MAD_RUNTIME_NGPUS=1",
        "MAD_SYSTEM_NGPUS=4",
        "MAD_SYSTEM_GPU_ARCHITECTURE=gfx942",
        "MAD_GPU_VENDOR=AMD",
        "MAD_OUTPUT_CSV=perf_dummy.csv",
        "MAD_DATANAME=d",
        "MAD_DATAHOME=/data/d",
        "HUB_PASSWORD=s3cr3t",
        "A_ENV=opt",
        "B_ENV=ctx",
        "OPT=ctx",
        "Z=z",
    ]


def test_mounts_cpus_and_data_binds(tmp_path):
    plan = plan_data("d", {"d": {"local": str(tmp_path)}}, "/mad", None)
    b = body(ctx={"docker_mounts": {"/z": "/host/z", "/a": "/host/a"}, "docker_cpus": "0-7"}, plan=plan)
    assert b["HostConfig"]["Binds"][2:] == ["/host/a:/a", "/host/z:/z", f"{tmp_path}:/data/d:ro"]
    assert b["HostConfig"]["CpusetCpus"] == "0-7"


def test_shm_size_override_drops_host_ipc():
    host = body(ctx={"docker_shm_size": "8g"})["HostConfig"]
    assert host["ShmSize"] == 8 * 1024**3 and "IpcMode" not in host
    host = body(model(additional_docker_run_options="--shm-size=2g --ipc host"))["HostConfig"]
    assert host["ShmSize"] == 2 * 1024**3 and host["IpcMode"] == "host"
    assert parse_size(1024) == 1024 and parse_size("512m") == 512 * 1024**2
    with pytest.raises(ValueError):
        parse_size("lots")


def test_additional_docker_run_options():
    b = body(
        model(
            additional_docker_run_options="--cap-add SYS_ADMIN --device /dev/fuse --security-opt "
            "apparmor=unconfined -v /a:/b:ro --ulimit memlock=-1 --rm -u root "
            "--group-add render --privileged"
        )
    )
    host = b["HostConfig"]
    assert host["CapAdd"] == ["SYS_PTRACE", "SYS_ADMIN"]
    assert host["Devices"][-1]["PathOnHost"] == "/dev/fuse"
    assert host["SecurityOpt"] == ["seccomp=unconfined", "apparmor=unconfined"]
    assert host["Binds"][-1] == "/a:/b:ro"
    assert host["Ulimits"] == [{"Name": "memlock", "Soft": -1, "Hard": -1}]
    assert host["GroupAdd"] == ["video", "render"]
    assert host["Privileged"] is True
    assert b["User"] == "root"


def test_unsupported_run_option_is_an_error():
    with pytest.raises(ValueError, match="unsupported option '--gpus'"):
        body(model(additional_docker_run_options="--gpus all"))


def test_body_is_deterministic():
    tools = resolve_tools([{"name": "a"}, {"name": "b"}], TOOLS_JSON, "tools.json")
    ctx = {"tools": tools, "docker_env_vars": {"B": "2", "A": "1"}, "docker_mounts": {"/y": "/y", "/x": "/x"}}
    reordered = dict(ctx, docker_env_vars={"A": "1", "B": "2"}, docker_mounts={"/x": "/x", "/y": "/y"})
    first = body(model(n_gpus=2), ctx, cred={"K_PASSWORD": "p", "K_USER": "u"}, run_id="r")
    again = body(
        model(n_gpus=2), copy.deepcopy(reordered), cred={"K_USER": "u", "K_PASSWORD": "p"}, run_id="r"
    )
    assert json.dumps(first, sort_keys=False) == json.dumps(again, sort_keys=False)


def test_inputs_are_not_modified():
    tools = resolve_tools([{"name": "a"}], TOOLS_JSON, "tools.json")
    m, ctx = model(), {"tools": tools, "docker_env_vars": {"A": "1"}}
    before = copy.deepcopy((m, ctx, AMD_FACTS))
    body(m, ctx)
    assert (m, ctx, AMD_FACTS) == before


# ---------------------------------------------------------------- display


def test_display_masks_secrets_but_env_keeps_them():
    b = body(
        ctx={"docker_env_vars": {"HF_TOKEN": "hf_abc", "PLAIN": "ok"}},
        cred={"REPO_PASSWORD": "pw1", "REPO_USERNAME": "bob"},
    )
    assert {"HF_TOKEN=hf_abc", "REPO_PASSWORD=pw1", "REPO_USERNAME=bob"} <= set(b["Env"])
    line = display_command(b)
    for secret in ("hf_abc", "pw1", "bob"):
        assert secret not in line
    words = shlex.split(line)
    assert "HF_TOKEN=******" in words and "REPO_USERNAME=******" in words and "PLAIN=ok" in words
    assert display_command(dict(b, Labels={}), secret_keys=["REPO_USERNAME"]).count("******") == 3


def test_display_is_an_equivalent_docker_run():
    b = body(model(n_gpus=2), {"docker_gpus": "0-1"}, facts=NVIDIA_FACTS)
    words = shlex.split(display_command(b))
    assert words[:2] == ["docker", "run"]
    assert words[words.index("--gpus") + 1] == '"device=0,1"'
    assert words[words.index("--shm-size") + 1] == "16g"
    assert words[-4:] == ["ci-dummy:latest", "bash", "-c", b["Cmd"][2]]
    assert "-v" in words and "/srv/MAD:/myworkspace:rw" in words


# ---------------------------------------------------------------- small helpers


def test_should_skip():
    m = model(skip_gpu_arch=["gfx90a", "gfx908"])
    assert should_skip(m, {"gpu_architecture": "gfx90a"}, False) == "skip_gpu_arch lists gfx90a"
    assert (
        should_skip(m, {"gpu_architecture": "gfx90a:sramecc+:xnack-"}, False) == "skip_gpu_arch lists gfx90a"
    )
    assert should_skip(m, {"gpu_architecture": "gfx90a"}, True) is None
    assert should_skip(m, {"gpu_architecture": "gfx942"}, False) is None
    assert (
        should_skip(model(skip_gpu_arch="sm_80, sm_90"), {"gpu_architecture": "sm_90"})
        == "skip_gpu_arch lists sm_90"
    )
    assert should_skip(m, {"gpu_architecture": ""}) is None


def test_run_timeout_and_multiple_results_path():
    assert run_timeout(model()) == 7200
    assert run_timeout(model(timeout=60)) == 60
    assert run_timeout(model(timeout=60), {"timeout": 30}) == 30
    assert run_timeout(model(timeout=60), {"timeout": 30}, override=10) == 10
    assert run_timeout(model(timeout=-1)) is None
    assert multiple_results_path(model(multiple_results="p.csv"), "/runs/x") == "/runs/x/p.csv"
    assert multiple_results_path(model(), "/runs/x") is None
