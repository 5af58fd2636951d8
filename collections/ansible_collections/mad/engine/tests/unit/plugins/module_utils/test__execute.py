# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""_execute: names and paths of a run, preflight checks, the log tail and the exit-code probe.

execute_model itself runs real containers in tests/integration/test_run.py and test_collection.py.
"""

from __future__ import annotations

import pytest
from ansible_collections.mad.engine.plugins.module_utils._execute import (
    _probe_rc,
    _tail,
    dockerfile_stem,
    log_path,
    preflight,
    preflight_context,
    prepare_context,
    safe_name,
)
from ansible_collections.mad.engine.plugins.module_utils._runspec import RC_FILE


@pytest.mark.parametrize("name, expected", [
    ("dummy", "dummy"),
    ("dummy2/dummy_2", "dummy2_dummy_2"),
    ("dummy3:dummy_3:batch_size=512", "dummy3_dummy_3_batch_size_512"),
    ("../x y", "x_y"),
    ("///", "model"),
])
def test_safe_name(name, expected):
    assert safe_name(name) == expected


def test_dockerfile_stem_and_log_path():
    assert dockerfile_stem("docker/dummy.ubuntu.Dockerfile") == "dummy.ubuntu"
    assert dockerfile_stem("docker/Dockerfile") == "Dockerfile"
    assert dockerfile_stem("") == "image"
    assert log_path("/r", "dummy2_dummy_2", "docker/dummy.Dockerfile") == "/r/dummy2_dummy_2_dummy.run.live.log"
    # Upstream's name for a dir-scoped card; beside a root card `dummy2_dummy_2` it gets a hash of itself.
    assert log_path("/r", "dummy2/dummy_2", "docker/dummy.Dockerfile") == "/r/dummy2_dummy_2_dummy.run.live.log"
    assert log_path("/r", "dummy2/dummy_2", "docker/dummy.Dockerfile", "dummy2_dummy_2-fc95d483") == (
        "/r/dummy2_dummy_2-fc95d483_dummy.run.live.log")


def test_preflight(tmp_path):
    (tmp_path / "scripts" / "dummy").mkdir(parents=True)
    (tmp_path / "scripts" / "dummy" / "run.sh").write_text("#!/bin/bash\n")
    (tmp_path / "scripts" / "common").mkdir()
    (tmp_path / "scripts" / "common" / "pre.sh").write_text("#!/bin/bash\n")
    mad = str(tmp_path)
    assert preflight({"name": "dummy", "scripts": "scripts/dummy/run.sh"}, {}, mad) == []
    assert preflight({"name": "dummy", "scripts": "scripts/dummy"}, {}, mad) == []
    [problem] = preflight({"name": "gone", "scripts": "scripts/gone/run.sh"}, {}, mad)
    assert "model gone: script scripts/gone/run.sh not found" in problem
    [problem] = preflight({"name": "none"}, {}, mad)
    assert "no scripts" in problem


def test_preflight_context_checks_context_and_tool_scripts(tmp_path):
    (tmp_path / "pre.sh").write_text("")
    context = {
        "pre_scripts": [{"path": "pre.sh"}, {"path": str(tmp_path / "pre.sh")}, {"path": ""}],
        "post_scripts": [{"path": "missing_post.sh"}],
        "tools": [{"name": "t", "pre_scripts": [{"path": "/nonexistent/tool_pre.sh"}], "post_scripts": []}],
    }
    problems = preflight_context(context, str(tmp_path))
    assert len(problems) == 2
    assert any("missing_post.sh" in p for p in problems) and any("tool_pre.sh" in p for p in problems)


def test_prepare_context_resolves_tools_and_keeps_the_rest():
    tools_config = {"tools": {"rocprof": {"cmd": "rocprof --stats", "env_vars": {"A": "1"}}}}
    context = {"gpu_vendor": "AMD", "tools": [{"name": "rocprof", "env_vars": {"B": "2"}}]}
    resolved = prepare_context(context, tools_config, "tools.json")
    assert resolved["gpu_vendor"] == "AMD" and context["tools"] == [{"name": "rocprof", "env_vars": {"B": "2"}}]
    [tool] = resolved["tools"]
    assert tool["cmd"] == "rocprof --stats" and tool["env_vars"] == {"A": "1", "B": "2"}
    with pytest.raises(ValueError, match="unknown tool"):
        prepare_context({"tools": [{"name": "nope"}]}, tools_config, "tools.json")


def test_tail(tmp_path):
    log = tmp_path / "x.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(100)) + b"\xff\n")
    assert _tail(str(log), 3) == ["line 98", "line 99", "\ufffd"]
    assert _tail(str(tmp_path / "missing.log")) == []


def test_probe_rc(tmp_path):
    probe = _probe_rc(str(tmp_path))
    assert probe() is None
    (tmp_path / RC_FILE).write_text("")
    assert probe() is None
    (tmp_path / RC_FILE).write_text("137\n")
    assert probe() == 137
    (tmp_path / RC_FILE).write_text("not a number")
    assert probe() is None
