# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Host side: from a planned request (:mod:`._plan`) to a result on this host.

The ``mad.engine.run_model`` module (and the SLURM job's executor): :func:`run_request` completes a
request with the host's facts and resolved tools, runs it with `execute_model` and writes its rows beside
the logs. Standard library only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._engine import EngineClient, EngineError
from ansible_collections.mad.engine.plugins.module_utils._execute import (
    execute_model,
    file_stem,
    preflight,
    prepare_context,
)
from ansible_collections.mad.engine.plugins.module_utils._facts import HostInfo, detect_host, gpu_facts, run_facts
from ansible_collections.mad.engine.plugins.module_utils._perf import failure_row


def pull_failure_reason(reason: str, message: str) -> str:
    """The row reason of an image that could not be made present (as the local run words it)."""
    return f"{reason if reason == 'engine unreachable' else 'pull failed'}: {message}"


def failure_result(request: Mapping[str, Any], reason: str, infra_error: bool = True) -> dict[str, Any]:
    """An execute_model-shaped result holding one FAILURE row, for a model that could not start."""
    model = dict(request.get("model") or {"name": request.get("key") or "model"})
    info = request.get("image_info") or {}
    row = failure_row(model, reason, host=request.get("host", ""), run_id=request.get("run_id", ""),
                      image=request.get("image", ""),
                      docker_file=str(info.get("docker_file") or model.get("dockerfile") or ""))
    return {"rows": [row], "log_path": "", "log_tail": [], "container": "", "kept": False, "exec_line": "",
            "infra_error": infra_error}


def complete_request(request: Mapping[str, Any], cred_env: Mapping[str, str] | None = None,
                     detect: Callable[[], HostInfo] = detect_host) -> dict[str, Any]:
    """The execute_model request: context completed from the host's facts, tools resolved, secrets in.

    ``request["facts"]`` are the host's facts (``mad.engine.host_facts``); without them the host is
    detected here. ``request["tools_config"]`` (the tools.json content; none: {}) resolves the context's
    tools, as the local run does.
    Raises ValueError for an unknown tool, a bad tools config or a bad gpu_vendor.
    """
    done = dict(request)
    host = dict(done.get("facts") or gpu_facts(detect()))
    context, facts = run_facts(dict(done.get("context") or {}), host)
    tools_config = done.pop("tools_config", None)
    tools_name = str(done.pop("tools_config_name", "") or "tools config")
    context = prepare_context(context, dict(tools_config or {}), tools_name)
    done.update(context=context, facts=facts, cred_env=dict(cred_env or {}))
    for key in ("error", "infra_error", "key"):
        done.pop(key, None)
    return done


def write_rows(path: str, rows: list[dict[str, str]]) -> None:
    """Write the rows as a JSON list, atomically (a reader never sees half a file)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(rows, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def rows_path(output_dir: str, model_name: str, stem: str = "") -> str:
    return os.path.join(output_dir, f"{stem or file_stem(model_name)}.rows.json")


def run_request(request: Mapping[str, Any], cred_env: Mapping[str, str] | None = None,
                engine: Any = None, detect: Callable[[], HostInfo] = detect_host) -> dict[str, Any]:
    """Run one planned model here; every outcome is a result with rows (nothing raises for a model).

    ``engine`` is an EngineClient or what builds one (a docker_host URL, module params). A request with
    an ``error`` (e.g. its image could not be pulled) runs nothing and gives a FAILURE row with that
    reason. Returns execute_model's keys plus ``model`` (the name), ``key``, ``rows_path`` (the rows as
    JSON beside the logs, when the request has an output_dir), ``changed`` (a container ran, and the engine
    did not fail) and ``msg``.
    """
    name = str((request.get("model") or {}).get("name") or request.get("key") or "model")
    if request.get("error"):
        result = failure_result(request, str(request["error"]), bool(request.get("infra_error", True)))
    else:
        try:
            full = complete_request(request, cred_env, detect)
            problems = preflight(full["model"], full["context"], full["mad_dir"])
        except (ValueError, KeyError, TypeError) as e:
            full, problems = None, [str(e) if not isinstance(e, KeyError) else f"request lacks {e}"]
        if problems or full is None:
            result = failure_result(request, "; ".join(problems), infra_error=False)
        else:
            try:
                client = engine if isinstance(engine, EngineClient) else EngineClient(engine)
            except EngineError as e:
                result = failure_result(request, f"{e.reason}: {e}")
            else:
                try:
                    result = execute_model(client, full)
                except OSError as e:  # the output dir on this host: not the model's fault
                    result = failure_result(request, f"cannot write results on this host: {e}")
    # changed: a container ran; an engine failure (infra_error) means nothing (or nothing whole) ran.
    result = dict(result, model=name, key=str(request.get("key") or ""), rows_path="",
                  changed=bool(result.get("container")) and not result.get("infra_error"))
    if request.get("output_dir"):
        result["rows_path"] = rows_path(str(request["output_dir"]), name, str(request.get("file_stem") or ""))
        write_rows(result["rows_path"], result["rows"])
    statuses = sorted({row.get("status", "") for row in result["rows"]})
    reasons = sorted({row.get("reason", "") for row in result["rows"] if row.get("reason")})
    result["msg"] = f"{name}: {'/'.join(statuses) or 'no rows'}" + (f" ({'; '.join(reasons)})" if reasons else "")
    return result
