# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Run one model on this host and return its perf rows: the single executor behind both
`madengine-cli run` (local) and the `mad.engine.run_model` module (cluster hosts).

Input is a plain, JSON-serialisable request (see `execute_model`); output is a dict with the perf rows,
the log path and its tail. Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, BinaryIO

from ansible_collections.mad.engine.plugins.module_utils._container import run_container
from ansible_collections.mad.engine.plugins.module_utils._data import DataError, plan_data
from ansible_collections.mad.engine.plugins.module_utils._engine import EngineClient, EngineError
from ansible_collections.mad.engine.plugins.module_utils._paths import (
    OutsideError,
    card_problems,
    copy_tree,
    inside,
    read_beneath,
)
from ansible_collections.mad.engine.plugins.module_utils._perf import failure_row, rows_for_run, skipped_row
from ansible_collections.mad.engine.plugins.module_utils._runspec import (
    RC_FILE,
    container_body,
    display_command,
    effective_args,
    multiple_results_path,
    run_timeout,
    script_location,
    should_skip,
)
from ansible_collections.mad.engine.plugins.module_utils._sysenv import snapshot
from ansible_collections.mad.engine.plugins.module_utils._tools import resolve_tools

LOG_TAIL_LINES = 20
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(name: str) -> str:
    """A model name usable in file and container names (`dummy2/dummy_2` → `dummy2_dummy_2`)."""
    return _UNSAFE.sub("_", name.replace("/", "_")).strip("_.-") or "model"


def dockerfile_stem(docker_file: str) -> str:
    """`docker/dummy.ubuntu.Dockerfile` → `dummy.ubuntu` (upstream's log-name part)."""
    base = os.path.basename(docker_file or "")
    return base[: -len(".Dockerfile")] if base.endswith(".Dockerfile") else (base or "image")


def log_path(output_dir: str, model_name: str, docker_file: str) -> str:
    return os.path.join(output_dir, f"{safe_name(model_name)}_{dockerfile_stem(docker_file)}.run.live.log")


def prepare_context(context: dict, tools_config: dict, tools_config_name: str) -> dict:
    """The context with its `tools` resolved against the tools config. Raises ValueError."""
    resolved = dict(context)
    resolved["tools"] = resolve_tools(list(context.get("tools") or []), tools_config, tools_config_name)
    return resolved


def preflight(model: dict, context: dict, mad_dir: str) -> list[str]:
    """Problems that make a model impossible to run here (a card path outside the MAD package, a missing
    script or pre/post script path)."""
    problems = card_problems(model, mad_dir)
    if problems:
        return problems + preflight_context(context, mad_dir)
    try:
        folder, script = script_location(model)
        if not os.path.isfile(os.path.join(mad_dir, folder, script)):
            problems.append(f"model {model.get('name')}: script {os.path.join(folder, script)} not found "
                            f"under {mad_dir}")
    except ValueError as e:
        problems.append(str(e))
    return problems + preflight_context(context, mad_dir)


def preflight_context(context: dict, mad_dir: str) -> list[str]:
    """Missing pre/post script paths of the context and its (resolved) tools; no model needed, so a
    full workflow can check them before it builds anything."""
    problems = []
    entries = list(context.get("pre_scripts") or []) + list(context.get("post_scripts") or [])
    for tool in context.get("tools") or []:
        entries += list(tool.get("pre_scripts") or []) + list(tool.get("post_scripts") or [])
    for entry in entries:
        path = str(entry.get("path") or "")
        if path and not path.startswith("/"):  # relative: a file of the package (absolute: the image's)
            try:
                inside(mad_dir, path, "script")
            except OutsideError as exc:
                problems.append(f"{exc} (pre/post scripts)")
                continue
        if path and not os.path.isfile(path if path.startswith("/") else os.path.join(mad_dir, path)):
            problems.append(f"script {path} (pre/post scripts) not found under {mad_dir}")
    return problems


def _read_log(path: str) -> BinaryIO:
    """The run log for reading. It lies beside perf.csv, often in the MAD root the container can write:
    a symlink a model put in its place is not followed (OSError)."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb")


def _append_log(path: str) -> BinaryIO:
    """The run log opened for appending (created if needed); a symlink a model put in its place is
    removed first, never followed (the next run would truncate the file it points to)."""
    if os.path.islink(path):
        os.unlink(path)
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644), "ab")


def _tail(path: str, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with _read_log(path) as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            return handle.read().decode("utf-8", "replace").splitlines()[-lines:]
    except OSError:
        return []


def _probe_rc(run_dir: str) -> Callable[[], int | None]:
    def probe() -> int | None:
        # The container writes this file: read it without following a link it may have planted.
        try:
            text = read_beneath(run_dir, RC_FILE, 64).decode("ascii", "replace").strip()
            return int(text) if text else None
        except (OSError, ValueError):
            return None

    return probe


def execute_model(engine: EngineClient, request: dict[str, Any],
                  on_line: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run `request["model"]` once; never raises for model or engine failures (they become rows).

    Request keys: model (Model.to_dict()), image (reference to run), image_info (docker_file,
    base_docker, docker_sha, image_digest, build_duration), context (tools already resolved),
    data_config, facts, options (timeout: -1 not given / 0 none / N, keep_alive, keep_model_dir,
    skip_model_run, disable_skip_gpu_arch, sys_env_details, force_mirror_local), mad_dir, output_dir,
    cred_env (secret), run_id, host.
    Returns {rows, log_path, log_tail, container, kept, exec_line, infra_error}; `infra_error` marks
    failures of the infrastructure (engine, image) rather than of the model, for retries.
    """
    model = request["model"]
    context = request.get("context") or {}
    options = request.get("options") or {}
    facts = request.get("facts") or {}
    info = request.get("image_info") or {}
    mad_dir = request["mad_dir"]
    output_dir = request["output_dir"]
    run_id = request.get("run_id", "")
    os.makedirs(output_dir, exist_ok=True)
    docker_file = str(info.get("docker_file") or model.get("dockerfile") or "")
    started = datetime.now(timezone.utc)
    row_kw: dict[str, Any] = {
        "host": request.get("host", ""), "run_id": run_id, "image": request.get("image", ""),
        "image_digest": info.get("image_digest", ""), "base_docker": info.get("base_docker", ""),
        "docker_sha": info.get("docker_sha", ""), "build_duration": info.get("build_duration", ""),
        "docker_file": docker_file, "gpu_architecture": facts.get("gpu_architecture", ""),
        "machine_name": request.get("machine_name") or socket.gethostname(),
        "started_at": started.isoformat(timespec="seconds"), "args": effective_args(model, context),
    }
    log = log_path(output_dir, model["name"], docker_file)
    result: dict[str, Any] = {"rows": [], "log_path": log, "log_tail": [], "container": "", "kept": False,
                              "exec_line": "", "infra_error": False}

    skip = should_skip(model, facts, bool(options.get("disable_skip_gpu_arch")))
    if skip:
        result["rows"] = [skipped_row(model, skip, **row_kw)]
        return result
    data_plan = None
    try:
        if model.get("data"):
            data_plan = plan_data(str(model["data"]), request.get("data_config") or {}, mad_dir,
                                  options.get("force_mirror_local") or None)
            row_kw["data"] = data_plan.row_data()
            for folder in data_plan.host_dirs:
                os.makedirs(folder, exist_ok=True)
    except (DataError, OSError) as e:
        result["rows"] = [failure_row(model, str(e), **row_kw)]
        return result

    override = options.get("timeout", -1)
    timeout = run_timeout(model, context, None if override in (None, -1) else int(override))
    name = f"madengine-{safe_name(model['name'])}-{run_id or int(time.time())}".lower()[:120]
    run_dir = os.path.join(output_dir, f"{safe_name(model['name'])}.{run_id or 'run'}.run_directory")
    keep_alive = bool(options.get("keep_alive"))
    try:
        folder = script_location(model)[0]
        shutil.rmtree(run_dir, ignore_errors=True)
        copy_tree(mad_dir, folder, run_dir)  # links leaving the package are copied as links
        body = container_body(model, request["image"], context, facts, options, mad_dir, run_dir,
                              request.get("cred_env") or {}, data_plan, run_id=run_id)
    except (ValueError, OSError) as e:
        shutil.rmtree(run_dir, ignore_errors=True)
        result["rows"] = [failure_row(model, str(e), **row_kw)]
        return result

    # Docker creates the bind mountpoint `run_directory` inside the MAD root and it is left there:
    # removing it would detach the run directory of a concurrent run's container using the same root.
    # A container of this name can only be an earlier attempt of this very run (the name holds the run
    # ID) that its host or process did not live to remove: it must not block the retry.
    with contextlib.suppress(EngineError):
        engine.container_remove(name, force=True)
    try:
        log, handle = _open_log(log, run_id)
        with handle:
            handle.write(f"$ {display_command(body)}\n".encode())
            handle.flush()
            header_end = handle.tell()
            outcome = run_container(engine, body, name, handle, timeout, on_line, keep_alive,
                                    exit_probe=_probe_rc(run_dir) if keep_alive else None)
    except BaseException:
        # Ctrl-C (run_container has removed the container already) or the log cannot be opened.
        if not (keep_alive or options.get("keep_model_dir")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    result.update(container=name, kept=outcome.kept, log_path=log)
    row_kw["test_duration"] = round(outcome.duration, 3)
    if outcome.kept:
        result["exec_line"] = f"docker exec -it {name} bash"
    if outcome.error:
        result["infra_error"] = outcome.exit_code is None
        result["rows"] = [failure_row(model, outcome.error, **row_kw)]
    else:
        try:
            with _read_log(log) as handle:
                handle.seek(header_end)
                text = handle.read().decode("utf-8", "replace")
        except OSError:  # the model replaced its log: nothing of it is the model's output
            text = ""
        if options.get("skip_model_run") and not outcome.timed_out:
            result["rows"] = [skipped_row(model, "--skip-model-run", **row_kw)]
        else:
            result["rows"] = rows_for_run(model, text, outcome.exit_code, outcome.timed_out, timeout,
                                          multiple_results_path(model, run_dir), results_root=run_dir,
                                          **row_kw)
    if options.get("sys_env_details", True):
        _write_sysenv(engine, os.path.join(output_dir, f"{safe_name(model['name'])}.sysenv.json"))
    if not (options.get("keep_model_dir") or outcome.kept):
        shutil.rmtree(run_dir, ignore_errors=True)
    result["log_tail"] = _tail(log)
    return result


def _open_log(path: str, run_id: str) -> tuple[str, BinaryIO]:
    """The run log, opened empty for writing and locked: `(path, handle)`.

    When another run is writing the same log at this moment (the same model into the same output
    directory), that log is left alone and this run writes `<name>.<run_id>.run.live.log` instead.
    """
    handle = _append_log(path)  # returned; appending truncates nothing before the lock is ours
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        stem = path[: -len(".run.live.log")] if path.endswith(".run.live.log") else path
        path = f"{stem}.{safe_name(run_id) if run_id else os.getpid()}.run.live.log"
        handle = _append_log(path)
    except OSError:
        pass  # a file system without locks: write the log as before
    handle.truncate(0)
    return path, handle


def _write_sysenv(engine: EngineClient, path: str) -> None:
    try:
        version = engine.version()
    except EngineError:
        version = {}
    # Write and rename: a concurrent run of the same model never leaves half a file.
    tmp = f"{path}.tmp{os.getpid()}"
    if os.path.islink(tmp):  # the output dir may be the writable MAD root: never write through a link
        os.unlink(tmp)
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644), "w",
                   encoding="utf-8") as handle:
        json.dump(snapshot(version), handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)
