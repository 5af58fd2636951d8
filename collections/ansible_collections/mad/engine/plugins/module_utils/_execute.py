# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Run one model on this host and return its perf rows: the single executor behind both
`madengine-cli run` (local) and the `mad.engine.run_model` module (cluster hosts).

Input is a plain, JSON-serialisable request (see `execute_model`); output is a dict with the perf rows,
the log path and its tail. Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any, BinaryIO

from ansible_collections.mad.engine.plugins.module_utils._container import DISK_FULL_ERRNOS, run_container
from ansible_collections.mad.engine.plugins.module_utils._data import resolve_data
from ansible_collections.mad.engine.plugins.module_utils._engine import EngineClient, EngineError
from ansible_collections.mad.engine.plugins.module_utils._paths import (
    OutsideError,
    card_problems,
    copy_tree,
    inside,
    read_beneath,
)
from ansible_collections.mad.engine.plugins.module_utils._perf import (
    PerfScanner,
    failure_row,
    rows_for_run,
    skipped_row,
)
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
#: What is kept of a run log that filled the disk.
LOG_KEEP_ON_FULL = 64 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(name: str) -> str:
    """A model name usable in file and container names (`dummy2/dummy_2` → `dummy2_dummy_2`)."""
    return _UNSAFE.sub("_", name.replace("/", "_")).strip("_.-") or "model"


def file_stem(name: str, others: Iterable[str] = ()) -> str:
    """The part of a model's file names (log, run directory, snapshots, rows file).

    Upstream's ``<name, / -> _>`` (ROCm's madengine and the tests written for it read
    ``vllm_pyt_vllm_x_<dockerfile>.run.live.log`` for the card ``vllm/pyt_vllm_x``) whenever that is
    unique; a hash of the name is added when other characters had to be replaced (non-Latin names do
    not all become ``model``) or when a card of another folder has the same form among ``others``, the
    run's other model names (``a/b`` beside the root card ``a_b``: ``a_b-1b2c3d4e``, and ``a_b`` stays)."""
    upstream = name.replace("/", "_")
    safe = safe_name(name)
    clash = "/" in name and any(other != name and other.replace("/", "_") == upstream for other in others)
    if safe == upstream and not clash:
        return safe
    return f"{safe}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"


def file_stems(names: Iterable[str]) -> dict[str, str]:
    """:func:`file_stem` of each of a run's model names, each unique among them."""
    names = list(dict.fromkeys(names))
    return {name: file_stem(name, names) for name in names}


def dockerfile_stem(docker_file: str) -> str:
    """`docker/dummy.ubuntu.Dockerfile` → `dummy.ubuntu` (upstream's log-name part)."""
    base = os.path.basename(docker_file or "")
    return base[: -len(".Dockerfile")] if base.endswith(".Dockerfile") else (base or "image")


def log_path(output_dir: str, model_name: str, docker_file: str, stem: str = "") -> str:
    """A model's run log (``stem``: its :func:`file_stem` among the run's models, if the planner gave one)."""
    return os.path.join(output_dir, f"{stem or file_stem(model_name)}_{dockerfile_stem(docker_file)}.run.live.log")


def prepare_context(context: dict, tools_config: dict, tools_config_name: str) -> dict:
    """The context with its `tools` resolved against the tools config. Raises ValueError."""
    resolved = dict(context)
    resolved["tools"] = resolve_tools(list(context.get("tools") or []), tools_config, tools_config_name)
    return resolved


def preflight(model: dict, context: dict, mad_dir: str) -> list[str]:
    """Problems that make a model impossible to run here (a card path outside the MAD package, a missing
    script or pre/post script path)."""
    return preflight_model(model, mad_dir) + preflight_context(context, mad_dir)


def preflight_model(model: dict, mad_dir: str) -> list[str]:
    """Problems of the card itself (a path outside the MAD package, its script missing): that model's
    FAILURE row, not the run's end."""
    problems = card_problems(model, mad_dir)
    if problems:
        return problems
    try:
        folder, script = script_location(model)
    except ValueError as e:
        return [str(e)]
    if not os.path.isfile(os.path.join(mad_dir, folder, script)):
        return [f"model {model.get('name')}: script {os.path.join(folder, script)} not found under {mad_dir}"]
    return []


def timeout_line(timeout: int | None) -> str:
    """The run log's timeout line (upstream's wording, which its tests read)."""
    return f"Setting timeout to {int(timeout or 0)} seconds." + ("" if timeout else " (no limit)")


def run_notes(model: dict, timeout: int | None, data_plan: Any, data_problem: str) -> list[str]:
    """The lines the run log holds after the command line: the timeout, and what became of the data."""
    lines = [timeout_line(timeout)]
    if data_problem:
        lines.append(data_problem)
    elif data_plan is not None and not data_plan.provider:
        lines.append(f"data {data_plan.dataname} names no provider in the data config: nothing is mounted "
                     f"(MAD_DATANAME={data_plan.dataname}; the script fetches its data itself)")
    return lines


def with_reason(row: dict[str, str], note: str) -> dict[str, str]:
    """``row`` with ``note`` added to its reason (a SUCCESS row gets it as its only reason)."""
    reason = row.get("reason") or ""
    return dict(row, reason=f"{reason}; {note}" if reason else note)


_USERINFO = re.compile(r"(//)[^/@\s]+@")
#: Seconds a card's ``url`` clone may take.
CLONE_TIMEOUT = 600


def clone_url(url: str, run_dir: str, timeout: int = CLONE_TIMEOUT) -> str:
    """Clone a card's ``url`` (git) into ``<run_dir>/<repository name>`` before the run, as upstream
    does; the folder appears at ``run_directory/<name>`` in the container. Returns the folder.

    Raises OSError when git is missing or the clone fails (the message never shows URL credentials).
    """
    shown = _USERINFO.sub(r"\1******@", url)
    name = os.path.basename(url.rstrip("/")) or "repository"
    name = name[:-4] if name.endswith(".git") else name
    target = os.path.join(run_dir, safe_name(name))
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    try:
        done = subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--", url, target], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise OSError(f"cannot clone url {shown}: git is not installed on this host") from None
    except subprocess.TimeoutExpired:
        raise OSError(f"cannot clone url {shown}: no answer within {timeout} s") from None
    if done.returncode != 0:
        last = ((done.stderr or "").strip().splitlines() or [f"git exit {done.returncode}"])[-1]
        raise OSError(f"cannot clone url {shown}: " + _USERINFO.sub(r"\1******@", last))
    return target


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
    stem = str(request.get("file_stem") or file_stem(model["name"]))
    log = log_path(output_dir, model["name"], docker_file, stem)
    result: dict[str, Any] = {"rows": [], "log_path": log, "log_tail": [], "container": "", "kept": False,
                              "exec_line": "", "infra_error": False}
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        result["rows"] = [failure_row(model, os_reason(e, f"creating the output directory {output_dir}"),
                                      **row_kw)]
        return result

    skip = should_skip(model, facts, bool(options.get("disable_skip_gpu_arch")))
    if skip:
        result["rows"] = [skipped_row(model, skip, **row_kw)]
        return result
    problems = preflight_model(model, mad_dir)
    if problems:
        result["rows"] = [failure_row(model, "; ".join(problems), **row_kw)]
        return result
    data_plan, data_problem = None, ""
    try:
        if model.get("data"):
            # Data never stops a model: what cannot be mounted is said in the log and the row.
            data_plan, data_problem = resolve_data(str(model["data"]), request.get("data_config") or {}, mad_dir,
                                                   options.get("force_mirror_local") or None)
            row_kw["data"] = data_plan.row_data()
            for folder in data_plan.host_dirs:
                os.makedirs(folder, exist_ok=True)
    except OSError as e:
        result["rows"] = [failure_row(model, str(e), **row_kw)]
        return result

    timeout = run_timeout(model, context, options.get("timeout"))
    name = f"madengine-{stem}-{run_id or int(time.time())}".lower()[:120]
    run_dir = os.path.join(output_dir, f"{stem}.{run_id or 'run'}.run_directory")
    keep_alive = bool(options.get("keep_alive"))
    try:
        folder = script_location(model)[0]
        shutil.rmtree(run_dir, ignore_errors=True)
        copy_tree(mad_dir, folder, run_dir)  # links leaving the package are copied as links
        if model.get("url"):
            clone_url(str(model["url"]), run_dir)
        body = container_body(model, request["image"], context, facts, options, mad_dir, run_dir,
                              request.get("cred_env") or {}, data_plan, run_id=run_id)
    except (ValueError, OSError, subprocess.SubprocessError) as e:
        shutil.rmtree(run_dir, ignore_errors=True)
        reason = os_reason(e, f"copying the scripts to {run_dir}") if isinstance(e, OSError) else str(e)
        result["rows"] = [failure_row(model, reason, **row_kw)]
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
            notes = run_notes(model, timeout, data_plan, data_problem)
            for line in notes:
                handle.write(f"{line}\n".encode())
            handle.flush()
            if on_line is not None:  # --live-output shows them too
                for line in notes:
                    on_line(line)
            scanned = _ScannedLog(handle)
            outcome = run_container(engine, body, name, scanned, timeout, on_line, keep_alive,
                                    exit_probe=_probe_rc(run_dir) if keep_alive else None)
    except OSError as e:  # the log cannot be opened, written or closed: a full disk, most likely
        if not (keep_alive or options.get("keep_model_dir")):
            shutil.rmtree(run_dir, ignore_errors=True)
        _cut_log(log)
        result["rows"] = [failure_row(model, os_reason(e, f"writing the log {log}"), **row_kw)]
        return result
    except BaseException:
        # Ctrl-C (run_container has removed the container already) or the log cannot be opened.
        if not (keep_alive or options.get("keep_model_dir")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    result.update(container=name, kept=outcome.kept, log_path=log)
    row_kw["test_duration"] = round(outcome.duration, 3)
    if outcome.kept:
        result["exec_line"] = f"docker exec -it {name} bash"
    if outcome.error and outcome.error.startswith("disk full: "):
        _cut_log(log)
        result["rows"] = [failure_row(model, f"disk full: writing the log {log}: {os.strerror(errno.ENOSPC)}",
                                      **row_kw)]
    elif outcome.error:
        result["infra_error"] = outcome.exit_code is None
        result["rows"] = [failure_row(model, outcome.error, **row_kw)]
    else:
        if options.get("skip_model_run") and not outcome.timed_out:
            result["rows"] = [skipped_row(model, "--skip-model-run", **row_kw)]
        else:
            result["rows"] = rows_for_run(model, scanned.scanner, outcome.exit_code, outcome.timed_out, timeout,
                                          multiple_results_path(model, run_dir), results_root=run_dir, **row_kw)
    if data_problem:
        result["rows"] = [with_reason(row, data_problem) for row in result["rows"]]
    if options.get("sys_env_details", True):
        # A snapshot beside the log, not the result: a full disk shows in the row already.
        with contextlib.suppress(OSError):
            _write_sysenv(engine, os.path.join(output_dir, f"{stem}.sysenv.json"))
    if not (options.get("keep_model_dir") or outcome.kept):
        shutil.rmtree(run_dir, ignore_errors=True)
    result["log_tail"] = _tail(log)
    return result


def os_reason(exc: OSError, doing: str) -> str:
    """A row's reason for a failed file operation: `disk full: <doing>: <why>` when the disk (or the
    quota) is full, else the error as it is."""
    if exc.errno in DISK_FULL_ERRNOS:
        return f"disk full: {doing}: {os.strerror(exc.errno)}"
    if "[Errno 28]" in str(exc):  # shutil.Error collects the errors of a copy without an errno
        return f"disk full: {doing}: {os.strerror(errno.ENOSPC)}"
    return str(exc)


def _cut_log(path: str) -> None:
    """A log the disk had no room for: keep its first LOG_KEEP_ON_FULL bytes and say so, freeing the space
    the row and the next models need (the rest of the log was incomplete anyway)."""
    with contextlib.suppress(OSError):
        if os.path.getsize(path) > LOG_KEEP_ON_FULL:
            os.truncate(path, LOG_KEEP_ON_FULL)
        with open(path, "ab") as handle:
            handle.write(b"\n[madengine: the log was cut here: the disk is full]\n")


class _ScannedLog:
    """The run log as the log pump writes it, with its `performance:` lines parsed as they pass: the log
    is never read back whole (it may be gigabytes)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.scanner = PerfScanner()

    def write(self, data: bytes) -> int:
        written = self.handle.write(data)
        self.scanner.feed(data)
        return written

    def flush(self) -> None:
        self.handle.flush()


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
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644), "w",
                       encoding="utf-8") as handle:
            json.dump(snapshot(version), handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # a full disk must not leave half a snapshot behind
        raise
