# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Resolve the context's ``tools`` against a tools.json (ROCm madengine's format).

tools.json: ``{"tools": {"<name>": {"cmd": "<shell prefix>", "env_vars": {...},
"pre_scripts": [{"path": "...", "args": "..."}], "post_scripts": [...]}}}``; the name mapping may
also sit at the top level without ``"tools"``. Used on target hosts (stdlib only) and locally.
"""

from __future__ import annotations

import copy
from typing import Any

TOOL_KEYS = ("name", "cmd", "env_vars", "pre_scripts", "post_scripts")


def tools_table(tools_config: dict, config_name: str = "tools config") -> dict[str, dict]:
    """The ``name -> entry`` mapping of a tools.json document (with or without the ``"tools"`` key).

    Raises ValueError if it is not a mapping of objects.
    """
    if not isinstance(tools_config, dict):
        raise ValueError(f"{config_name} must be a JSON object, not {type(tools_config).__name__}")
    table = tools_config.get("tools", tools_config)
    if not isinstance(table, dict):
        raise ValueError(f"{config_name}: \"tools\" must be an object mapping tool names to settings")
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{config_name}: tool {name!r} must be an object, not {type(entry).__name__}")
    return table


def _scripts(value: Any, where: str) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list of {{\"path\": ..., \"args\": ...}} objects")
    result = []
    for index, item in enumerate(value):
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not item["path"].strip():
            raise ValueError(f"{where}[{index}] needs a non-empty string \"path\"")
        args = item.get("args", "")
        result.append({"path": item["path"].strip(), "args": "" if args is None else str(args)})
    return result


def _env(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object of environment variables")
    return {str(k): ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in value.items()}


def resolve_tools(requested: list[dict], tools_config: dict, config_name: str) -> list[dict]:
    """The context's ``tools`` entries, each merged over its tools.json entry (the context wins).

    Returns, in the requested order, dicts with exactly :data:`TOOL_KEYS`: ``cmd`` (``""`` if none),
    ``env_vars`` (tools.json's, updated key by key with the context's), ``pre_scripts`` and
    ``post_scripts`` (lists of ``{"path", "args"}``; a context entry may replace them).
    Raises ValueError naming the tool, ``config_name`` and the known tools for an unknown tool.
    """
    if not requested:
        return []
    table = tools_table(tools_config, config_name)
    resolved = []
    for index, want in enumerate(requested):
        if not isinstance(want, dict) or not isinstance(want.get("name"), str) or not want["name"].strip():
            raise ValueError(f"tools[{index}] needs a non-empty string \"name\"")
        name = want["name"].strip()
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise ValueError(f"unknown tool {name!r}: it is not defined in {config_name} "
                             f"(known tools: {known})")
        base = copy.deepcopy(table[name])
        where = f"{config_name}: tool {name!r}"
        cmd = want.get("cmd", base.get("cmd"))
        env = _env(base.get("env_vars"), f"{where} env_vars")
        env.update(_env(want.get("env_vars"), f"tools[{index}].env_vars"))
        resolved.append({
            "name": name,
            "cmd": "" if cmd is None else str(cmd).strip(),
            "env_vars": env,
            "pre_scripts": _scripts(want.get("pre_scripts", base.get("pre_scripts")), f"{where} pre_scripts"),
            "post_scripts": _scripts(want.get("post_scripts", base.get("post_scripts")),
                                     f"{where} post_scripts"),
        })
    return resolved
