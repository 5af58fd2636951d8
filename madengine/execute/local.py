"""Run stage on this host: manifest entries → containers → perf rows → perf.csv.

Input: a loaded :class:`~madengine.manifest.Manifest` and :class:`RunOptions`. Output: a
:class:`RunReport`. Each model is executed by the collection's `_execute.execute_model`, the same code
the `mad.engine.run_model` module runs on cluster hosts, so local and remote rows cannot drift. Rows
are appended to perf.csv as each model finishes; events go to an optional listener (the CLI renders).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._data import data_problems
from ansible_collections.mad.engine.plugins.module_utils._engine import EngineClient, EngineError
from ansible_collections.mad.engine.plugins.module_utils._execute import (
    _open_log,
    execute_model,
    log_path,
    preflight_context,
    preflight_model,
    prepare_context,
)
from ansible_collections.mad.engine.plugins.module_utils._facts import gpu_facts, run_facts
from ansible_collections.mad.engine.plugins.module_utils._image import ensure_image, pinned_reference
from ansible_collections.mad.engine.plugins.module_utils._perf import failure_row
from ansible_collections.mad.engine.plugins.module_utils._plan import model_request, plan_stems, run_context
from ansible_collections.mad.engine.plugins.module_utils._runspec import MASK

from madengine.context import resolve_run_context
from madengine.credentials import CredentialError, Credentials
from madengine.errors import InvalidInputError
from madengine.hostinfo import detect_host
from madengine.ledger import Ledger
from madengine.manifest import Manifest, ManifestEntry
from madengine.results import PerfCsv, ResultsSink, RunSummary, new_run_id, summarize
from madengine.tools_config import effective_tools_config, tools_config_name

logger = logging.getLogger(__name__)

#: Engine error reasons that a retry cannot fix.
PERMANENT_PULL_ERRORS = ("digest mismatch", "registry auth failed", "invalid reference")
#: Back-off before a retry: 1 s, then 2 s, 4 s, … up to 10 s, so a registry that blinked can come back.
RETRY_DELAY_S = 1.0
RETRY_DELAY_MAX_S = 10.0

#: Listener signature: (event, model name, data). Events: start, pull, running, line, done.
Listener = Callable[[str, str, Mapping[str, Any]], None]


@dataclass
class RunOptions:
    output: Path = Path("perf.csv")
    timeout: int = -1
    keep_alive: bool = False
    keep_model_dir: bool = False
    skip_model_run: bool = False
    disable_skip_gpu_arch: bool = False
    sys_env_details: bool = True
    force_mirror_local: str | None = None
    data_config: Path | None = None
    tools_config: Path | None = None
    registry: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    run_id: str = field(default_factory=new_run_id)
    #: Extra attempts for infrastructure failures only (pull, engine, container start).
    retries: int = 1
    runs_dir: Path = Path("runs")
    #: With --resume / --rerun-failed: the (manifest key, host) cells to run again (None: all).
    only: set[tuple[str, str]] | None = None
    #: What the ledger's run record holds, so the run can be resumed (set by the CLI).
    ledger_meta: dict[str, Any] = field(default_factory=dict)
    #: With --baseline: its rows, to fill each new row's relative_change before it is written.
    baseline_rows: list[dict[str, str]] | None = None

    @property
    def output_dir(self) -> Path:
        """Run logs, sysenv snapshots and run directories go beside perf.csv."""
        return self.output.resolve().parent


@dataclass
class ModelRun:
    name: str
    rows: list[dict[str, str]]
    log_path: str
    exec_line: str = ""


@dataclass
class RunReport:
    run_id: str
    runs: list[ModelRun]
    summary: RunSummary

    @property
    def rows(self) -> list[dict[str, str]]:
        return [row for run in self.runs for row in run.rows]


def _read_json(path: Path | None, what: str) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise InvalidInputError(f"{what} {path} is nested too deeply") from None
    except json.JSONDecodeError as e:
        option = "--" + what.replace(" ", "-")
        raise InvalidInputError(f"{what} {path} is malformed JSON at line {e.lineno}, column {e.colno}: "
                                f"{e.msg}", hint=f"fix the file, or point {option} elsewhere") from None
    except OSError as e:
        raise InvalidInputError(f"{what} {path} cannot be read: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{what} {path} must hold a JSON object")
    return data


def local_run_context(manifest: Manifest, given: Mapping[str, Any], detect: bool = True) -> dict[str, Any]:
    """The run context every executor uses (``_plan.run_context``: the manifest's, overridden by the
    run's own -c/-f context, without values the manifest masked), completed from this host unless
    `detect` is false (cluster hosts detect their own GPUs). A dropped masked value is warned about."""
    context = run_context(manifest.context, given)
    for key, value in (manifest.context.get("docker_env_vars") or {}).items():
        if value == MASK and key not in context["docker_env_vars"]:
            logger.warning("docker_env_vars.%s was masked in the manifest; pass it again with -c", key)
    return resolve_run_context(context) if detect else context


def this_host_facts(context: Mapping[str, Any]) -> dict[str, Any]:
    """The facts a run on this host uses: its detection completed by the context, exactly as a
    cluster host's (``_facts.run_facts``)."""
    return run_facts(context, gpu_facts(detect_host()))[1]


def check_context(context: dict[str, Any], tools_config: Path | None, mad_dir: Path) -> dict[str, Any]:
    """The context with its tools resolved against the tools config (read from `tools_config`; madengine's
    default tools config when that file does not exist).

    Raises InvalidInputError (exit 4) for an unknown tool, a malformed tools config, or a missing pre/post
    script path; the full workflow calls it before building, execution before any container.
    """
    if context.get("tools"):  # a MAD tree without tools.json (the hub's) uses madengine's default
        tools_config = effective_tools_config(tools_config)
    tools_name = tools_config_name(tools_config) if tools_config else "the tools config"
    tools = _read_json(tools_config, "tools config")
    try:
        context = prepare_context(context, tools, tools_name)
    except ValueError as e:
        hint = "fix the tool name in the context, or add it to the tools config"
        raise InvalidInputError(str(e), hint=hint) from None
    problems = preflight_context(context, str(mad_dir))
    if problems:
        raise InvalidInputError("Cannot run: " + "; ".join(problems),
                                hint="fix the pre/post script paths in the context or the tools config; "
                                     "nothing was run")
    return context


def plan_requests(manifest: Manifest, options: RunOptions, mad_dir: Path) -> list[tuple[ManifestEntry, dict]]:
    """One execute_model request per manifest entry. A bad context is exit 4 before anything runs; a bad
    card (its script missing, an unknown ``cred``) gets an ``error``: its FAILURE row, the others run.
    Data that will not be mounted is warned about once per data source."""
    context = check_context(local_run_context(manifest, options.context), options.tools_config, mad_dir)
    data_config = _read_json(options.data_config, "data config")
    credentials = Credentials.load(mad_dir)
    # The host's MAD_SECRETS* variables reach every container (as upstream), masked like credentials.
    secret_env = credentials.secret_env_build_args()
    facts = this_host_facts(context)
    entries = manifest.entries()
    manifest_data = manifest.to_dict()
    for problem in data_problems([manifest_data["built_models"][e.key] for e in entries], data_config, str(mad_dir),
                                 options.force_mirror_local).values():
        logger.warning("%s: the models using it run without it", problem)
    base = {"context": context, "data_config": data_config, "facts": facts,
            "options": {"timeout": options.timeout, "keep_alive": options.keep_alive,
                        "keep_model_dir": options.keep_model_dir, "skip_model_run": options.skip_model_run,
                        "disable_skip_gpu_arch": options.disable_skip_gpu_arch,
                        "sys_env_details": options.sys_env_details,
                        "force_mirror_local": options.force_mirror_local},
            "mad_dir": str(mad_dir), "output_dir": str(options.output_dir), "run_id": options.run_id,
            "host": "localhost", "machine_name": socket.gethostname()}
    stems = plan_stems(manifest_data)
    requests = []
    for entry in entries:
        request = model_request(manifest_data, entry.key, base, mad_dir=str(mad_dir), stems=stems)["request"]
        request.pop("key")
        # A bad card is that card's FAILURE row; the other cards run.
        problems = [request.pop("error")] if "error" in request else preflight_model(request["model"], str(mad_dir))
        cred_env: dict[str, str] = dict(secret_env)
        if entry.model.cred:
            try:
                cred_env.update(credentials.cred_build_args(entry.model.cred))
            except CredentialError as e:
                problems.append(str(e))
        request["cred_env"] = cred_env
        if problems:
            request["error"] = "; ".join(problems)
            request.setdefault("image", pinned_reference(entry.image.to_dict()))
        requests.append((entry, request))
    return requests


#: Intermediate perf files that ``--cleanup-perf`` removes from the output directory (those upstream
#: madengine leaves beside perf.csv); perf.csv and perf_super files stay.
PERF_INTERMEDIATES = ("perf_entry.csv", "perf_entry.json", "perf_entry_super.json", "perf_entry_super.csv")


def cleanup_perf_files(output_dir: Path, run_dir: Path | None = None) -> list[Path]:
    """``--cleanup-perf`` (upstream's flag): remove the intermediate perf files, keep perf.csv.

    Removes :data:`PERF_INTERMEDIATES` in ``output_dir`` and the per-model rows files (``*.rows.json``)
    of a cluster run under ``run_dir`` (``runs/<run_id>``); every row is in perf.csv already.
    Returns the removed paths.
    """
    candidates = [Path(output_dir) / name for name in PERF_INTERMEDIATES]
    if run_dir is not None and Path(run_dir).is_dir():
        candidates += sorted(Path(run_dir).rglob("*.rows.json"))
    removed = []
    for path in candidates:
        if path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def results_sink(options: RunOptions, ledger: Ledger) -> ResultsSink:
    """The run's one sink for rows and ledger records (see results.ResultsSink)."""
    return ResultsSink(options.output, ledger, options.run_id, options.baseline_rows)


def _attempt(engine: EngineClient, entry: ManifestEntry, request: dict[str, Any], auth: Any,
             emit: Listener) -> tuple[ModelRun, bool]:
    """One attempt at one model: `(run, infrastructure failed)`."""
    name = entry.model.name
    row_kw = {"host": "localhost", "run_id": request["run_id"], "image": request["image"],
              "docker_file": entry.image.dockerfile}
    if request.get("error"):  # the card cannot run (its script is missing): its row says why
        return ModelRun(name, [failure_row(request["model"], request["error"], **row_kw)], ""), False
    try:
        emit("pull", name, {"image": request["image"]})
        ensure_image(engine, request["image"], entry.image.image_digest or "", auth)
    except EngineError as e:
        reason = "pull failed" if e.reason not in ("engine unreachable",) else e.reason
        # The attempt's log holds why it failed, as a container's log would.
        log = ""
        with contextlib.suppress(OSError):
            Path(request["output_dir"]).mkdir(parents=True, exist_ok=True)
            log, handle = _open_log(log_path(request["output_dir"], name, entry.image.dockerfile,
                                             request.get("file_stem", "")), request["run_id"])
            with handle:
                handle.write(f"$ docker pull {request['image']}\n{reason}: {e}\n".encode())
        # A wrong digest or refused credentials will not fix themselves: not worth a retry.
        transient = e.reason not in PERMANENT_PULL_ERRORS
        return ModelRun(name, [failure_row(request["model"], f"{reason}: {e}", **row_kw)], log), transient
    emit("running", name, {})
    result = execute_model(engine, request, on_line=lambda line: emit("line", name, {"line": line}))
    return ModelRun(name, result["rows"], result["log_path"], result["exec_line"]), bool(result["infra_error"])


def _remove_leftovers(engine: EngineClient, run_id: str, name: str) -> None:
    """Remove the containers of model `name` that an earlier process of run `run_id` left behind.

    A run killed with SIGKILL leaves its running container; the resumed run needs its name.
    """
    try:
        for container in engine.container_list({"label": [f"madengine.run_id={run_id}", f"madengine.model={name}"]}):
            logger.warning("%s: removing container %s left by an earlier process of run %s", name,
                           container.get("Names", [container["Id"][:12]])[0].lstrip("/"), run_id)
            engine.container_remove(container["Id"], force=True)
    except EngineError as e:
        logger.warning("%s: cannot remove the containers left by run %s: %s", name, run_id, e)


def run_manifest(manifest: Manifest, options: RunOptions, mad_dir: Path,
                 listener: Listener | None = None) -> RunReport:
    """Run the models of `manifest` on this host, appending rows to perf.csv as each one ends.

    Every attempt is written to the ledger; only the last attempt's rows go to perf.csv. An attempt is
    repeated (up to `options.retries` times) only when the infrastructure failed, never when the
    model ran and failed or timed out.
    """
    emit = listener or (lambda *_: None)
    PerfCsv(options.output).check_writable()
    requests = [(e, r) for e, r in plan_requests(manifest, options, mad_dir)
                if options.only is None or (e.key, "localhost") in options.only]
    engine = EngineClient()
    registry = options.registry or manifest.registry
    credentials = Credentials.load(mad_dir)
    auth = credentials.registry_login(registry).auth_config() if registry else None
    ledger = Ledger(options.runs_dir, options.run_id)
    ledger.start({**options.ledger_meta, "cells": [[e.key, "localhost"] for e in manifest.entries()]})
    sink = results_sink(options, ledger)
    previous = ledger.load()
    started = time.monotonic()
    runs: list[ModelRun] = []
    for entry, request in requests:
        emit("start", entry.model.name, {"image": request["image"]})
        if options.only is not None:
            _remove_leftovers(engine, options.run_id, entry.model.name)
        first = previous.next_attempt(entry.key, "localhost")
        last = first + max(0, options.retries)
        for attempt in range(first, last + 1):
            if attempt > 1:  # each attempt keeps its own log
                request = {**request, "output_dir": str(options.output_dir / f"attempt-{attempt}")}
            run, infra = _attempt(engine, entry, request, auth, emit)
            sink.record(entry.key, "localhost", attempt, run.rows, log_path=run.log_path, infra_error=infra,
                        final=not infra or attempt == last)
            if not infra:
                break
            if attempt < last:
                reason = next((row.get("reason") for row in run.rows if row.get("reason")), "")
                delay = min(RETRY_DELAY_MAX_S, RETRY_DELAY_S * 2 ** (attempt - first))
                logger.warning("%s: attempt %d failed (%s); retrying in %.0f s", entry.model.name, attempt,
                               reason, delay)
                time.sleep(delay)
        runs.append(run)
        emit("done", entry.model.name, {"rows": run.rows, "log_path": run.log_path, "exec_line": run.exec_line})
    all_rows = [row for run in runs for row in run.rows]
    return RunReport(options.run_id, runs, summarize(all_rows, options.run_id, time.monotonic() - started))
