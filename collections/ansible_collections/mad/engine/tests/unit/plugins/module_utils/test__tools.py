# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

import copy

import pytest
from ansible_collections.mad.engine.plugins.module_utils._tools import TOOL_KEYS, resolve_tools, tools_table

CONFIG = {
    "tools": {
        "rocprof": {
            "cmd": "rocprof --stats",
            "env_vars": {"ROCPROF_A": "1", "ROCPROF_B": "2"},
            "pre_scripts": [{"path": "scripts/common/pre_scripts/prof_pre.sh", "args": "-v"}],
            "post_scripts": [{"path": "scripts/common/post_scripts/prof_post.sh"}],
        },
        "trace": {"cmd": "python3 ../scripts/common/tools/trace.py"},
    }
}


def test_resolves_in_requested_order_with_every_key():
    tools = resolve_tools([{"name": "trace"}, {"name": "rocprof"}], CONFIG, "tools.json")
    assert [t["name"] for t in tools] == ["trace", "rocprof"]
    assert all(tuple(t) == TOOL_KEYS for t in tools)
    assert tools[0] == {
        "name": "trace",
        "cmd": "python3 ../scripts/common/tools/trace.py",
        "env_vars": {},
        "pre_scripts": [],
        "post_scripts": [],
    }
    assert tools[1]["pre_scripts"] == [{"path": "scripts/common/pre_scripts/prof_pre.sh", "args": "-v"}]
    assert tools[1]["post_scripts"] == [{"path": "scripts/common/post_scripts/prof_post.sh", "args": ""}]


def test_context_entry_wins_over_config():
    before = copy.deepcopy(CONFIG)
    [tool] = resolve_tools(
        [{"name": "rocprof", "cmd": "rocprof --hip-trace", "env_vars": {"ROCPROF_B": "9", "NEW": True}}],
        CONFIG,
        "tools.json",
    )
    assert tool["cmd"] == "rocprof --hip-trace"
    assert tool["env_vars"] == {"ROCPROF_A": "1", "ROCPROF_B": "9", "NEW": "true"}
    assert before == CONFIG  # the config is not modified


def test_top_level_mapping_without_tools_key():
    [tool] = resolve_tools([{"name": "x"}], {"x": {"cmd": "strace -f"}}, "my-tools.json")
    assert tool["cmd"] == "strace -f"
    assert tools_table({"x": {}}) == {"x": {}}


def test_unknown_tool_names_tool_file_and_known_tools():
    with pytest.raises(ValueError) as info:
        resolve_tools([{"name": "rocprof"}, {"name": "nsys"}], CONFIG, "scripts/common/tools.json")
    message = str(info.value)
    assert "'nsys'" in message
    assert "scripts/common/tools.json" in message
    assert "known tools: rocprof, trace" in message


def test_nothing_requested_needs_no_config():
    assert resolve_tools([], None, "tools.json") == []


@pytest.mark.parametrize(
    "requested, config, match",
    [
        ([{"cmd": "x"}], CONFIG, 'needs a non-empty string "name"'),
        ([{"name": "t"}], {"tools": {"t": {"pre_scripts": "oops"}}}, "pre_scripts must be a list"),
        ([{"name": "t"}], {"tools": {"t": {"env_vars": ["A"]}}}, "env_vars must be an object"),
        ([{"name": "t"}], {"tools": {"t": "cmd"}}, "tool 't' must be an object"),
        ([{"name": "t"}], ["t"], "must be a JSON object"),
    ],
)
def test_bad_input_is_a_clear_error(requested, config, match):
    with pytest.raises(ValueError, match=match):
        resolve_tools(requested, config, "tools.json")
