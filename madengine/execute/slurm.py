"""Run stage on a SLURM cluster: one ``sbatch`` job per model, driven with the standard client commands.

Each job runs the collection's stdlib executor, shipped as a zipapp in the run's shared directory
(``python3 -S executor.pyz REQUEST.json``), so a node needs Python 3 and a Docker engine only. The shared
directory (beside perf.csv, on a file system every node sees) holds the executor, one request and one
batch script per model, and ``results/`` where each job writes its log and rows JSON. The controller
polls ``squeue`` (``scontrol`` for a finished job's record), appends each model's rows to perf.csv when
its job ends, and cancels every job of the run on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import marshal
import math
import os
import re
import shlex
import shutil
import subprocess
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils import _plan, _request
from ansible_collections.mad.engine.plugins.module_utils._execute import safe_name
from ansible_collections.mad.engine.plugins.module_utils._perf import failure_row
from ansible_collections.mad.engine.plugins.module_utils._runspec import run_timeout
from ansible_collections.mad.engine.plugins.module_utils._secrets import is_secret_name

from madengine.cachedir import cache_home
from madengine.credentials import CredentialError, Credentials
from madengine.errors import InvalidInputError
from madengine.execute.local import (
    Listener,
    ModelRun,
    RunOptions,
    RunReport,
    _read_json,
    local_run_context,
    results_sink,
)
from madengine.ledger import Ledger
from madengine.manifest import Manifest
from madengine.results import summarize

#: How a job starts the executor: it is stdlib only, so without ``site`` (-S): a node's site-packages
#: and their .pth hooks are not needed and only cost start-up.
EXECUTOR_PYTHON = "python3 -S"
#: Seconds added to a card's timeout for the job's --time (pull, container start, clean-up).
TIME_MARGIN_S = 120
POLL_S = 0.2
SLURM_FIELDS = ("partition", "nodes", "gpus_per_node", "time", "exclusive", "nodelist", "reservation", "account")
TERMINAL = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
            "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT"}
_TIME = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$|^\d+$")


def _module_utils_dir() -> Path:
    from ansible_collections.mad.engine.plugins import module_utils

    return Path(next(iter(module_utils.__path__)))


_PACKAGE = "ansible_collections/mad/engine/plugins/module_utils"


def _executor_files() -> list[tuple[str, bytes]]:
    """(path in the zipapp, source) of the executor: ``__main__``, module_utils and its packages."""
    files = [("__main__.py", Path(__file__).with_name("slurm_executor_main.py").read_bytes())]
    parts = _PACKAGE.split("/")
    files += [("/".join(parts[:i]) + "/__init__.py", b"") for i in range(1, len(parts) + 1)]
    return files + [(f"{_PACKAGE}/{source.name}", source.read_bytes())
                    for source in sorted(_module_utils_dir().glob("*.py"))]


#: Days a cached executor of other sources (an older madengine) is kept after its last use.
EXECUTOR_CACHE_DAYS = 7


def executor_cache_dir() -> Path:
    """Built executors, one per source and Python version: ``$XDG_CACHE_HOME/madengine/executor``."""
    return cache_home() / "executor"


def _write_executor(target: Path, files: list[tuple[str, bytes]]) -> None:
    """The zipapp: each source and, beside it, its bytecode (zipimport's legacy layout, an unchecked
    hash-based .pyc of PEP 552). Compiling ~25 modules from a zip at every job start costs ~0.13 CPU-s;
    a node whose Python has another magic number skips the .pyc and compiles the source."""
    with open(target, "wb") as handle:
        handle.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(handle, "w") as archive:  # stored, as zipapp does: nothing to inflate at start
            for rel, source in files:
                archive.writestr(rel, source)
                code = compile(source, f"executor.pyz/{rel}", "exec", dont_inherit=True)
                header = importlib.util.MAGIC_NUMBER + (0b01).to_bytes(4, "little")
                archive.writestr(rel[:-3] + ".pyc", header + importlib.util.source_hash(source) + marshal.dumps(code))
    target.chmod(0o755)


def _prune_executors(keep: Path) -> None:
    stale = time.time() - EXECUTOR_CACHE_DAYS * 86400
    for old in keep.parent.glob("executor-*.pyz"):
        with contextlib.suppress(OSError):  # another run may be pruning too
            if old != keep and old.stat().st_mtime < stale:
                old.unlink()


def build_executor(target: Path) -> Path:
    """Write the executor zipapp (stdlib only) at ``target``: a copy of the one built for these
    sources and this Python, which is built once into :func:`executor_cache_dir`."""
    files = _executor_files()
    digest = hashlib.sha256(importlib.util.MAGIC_NUMBER)
    for rel, source in files:
        digest.update(f"{rel}\0{len(source)}\0".encode() + source)
    target.parent.mkdir(parents=True, exist_ok=True)
    cached = executor_cache_dir() / f"executor-{digest.hexdigest()[:24]}.pyz"
    try:
        if cached.is_file():
            os.utime(cached)  # used: kept by the pruning below
        else:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(f".{cached.name}.{os.getpid()}")
            _write_executor(partial, files)
            os.replace(partial, cached)
            _prune_executors(cached)
        shutil.copy2(cached, target)
    except OSError:  # no writable cache: build for this run only
        _write_executor(target, files)
    return target


@dataclass
class SlurmOptions:
    """Flags of ``run --slurm`` (None: not given); the context's ``slurm`` object fills the rest."""

    partition: str | None = None
    time: str | None = None
    image_transfer: str = "registry"


@dataclass
class Job:
    key: str
    name: str
    script: Path
    rows_path: str
    nnodes: int
    gpus_per_node: str
    #: One container per node (templated launcher): rows in results/rank<N>/.
    per_rank: bool = False
    #: Seconds the model may take (its timeout): longest first is the submission order.
    estimate: int = 0
    job_id: str = ""
    state: str = ""
    done: bool = False
    started: float = field(default_factory=time.monotonic)
    #: Secret-named context env values: they reach the job through sbatch's environment (never a file).
    secret_env: dict[str, str] = field(default_factory=dict)


def settings_for(model: Mapping[str, Any], context: Mapping[str, Any], flags: SlurmOptions) -> dict[str, Any]:
    """The job's SLURM settings: context ``slurm`` < flags < the card's own ``slurm`` object."""
    out = {k: v for k, v in dict(context.get("slurm") or {}).items() if k in SLURM_FIELDS}
    if flags.partition:
        out["partition"] = flags.partition
    if flags.time:
        out["time"] = flags.time
    card = model.get("slurm") if isinstance(model.get("slurm"), Mapping) else {}
    out.update({k: v for k, v in card.items() if k in SLURM_FIELDS})
    if not out.get("nodes"):
        dist = model.get("distributed") if isinstance(model.get("distributed"), Mapping) else {}
        out["nodes"] = int(dist.get("nnodes") or 1)
    return out


def launcher(model: Mapping[str, Any]) -> str:
    dist = model.get("distributed")
    return str(dist.get("launcher") or "") if isinstance(dist, Mapping) else ""


def check_time(value: str, where: str) -> str:
    if not _TIME.match(str(value)):
        raise InvalidInputError(f"{where} {value!r} is not a SLURM time", hint="use HH:MM:SS, e.g. 00:10:00")
    return str(value)


def _run(argv: list[str], timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def preflight(partitions: set[str]) -> None:
    """Exit 4 before anything is submitted: no sbatch, a controller that does not answer, a bad partition."""
    missing = [c for c in ("sbatch", "squeue", "scontrol", "scancel") if shutil.which(c) is None]
    if missing:
        raise InvalidInputError(f"SLURM client command(s) not found on PATH: {', '.join(missing)}",
                                hint="install slurm-client (Debian) or load your site's slurm module; "
                                     "nothing was submitted")
    conf = os.environ.get("SLURM_CONF", "the default slurm.conf")
    try:
        ping = _run(["scontrol", "ping"], timeout=20)
    except subprocess.TimeoutExpired:
        ping = None
    if ping is None or ping.returncode != 0 or "UP" not in ping.stdout:
        detail = (ping.stdout + ping.stderr).strip().splitlines()[:1] if ping else ["no answer in 20 s"]
        raise InvalidInputError(f"the SLURM controller does not answer ({conf}): {' '.join(detail)}",
                                hint="start slurmctld or point SLURM_CONF at your cluster's slurm.conf; "
                                     "nothing was submitted")
    for partition in sorted(p for p in partitions if p):
        check = _run(["scontrol", "show", "partition", partition])
        if check.returncode != 0:
            known = _run(["sinfo", "-h", "-o", "%R"]).stdout.split()
            raise InvalidInputError(f"SLURM partition {partition!r} does not exist",
                                    hint=f"use --partition with one of: {', '.join(sorted(set(known))) or '?'}; "
                                         "nothing was submitted")


def job_name(run_id: str, model: str) -> str:
    """``mad-<run id>-<model>``: what ``squeue`` shows; the comment holds ``madengine:<run id>:<key>``."""
    return f"mad-{run_id}-{safe_name(model)}"[:120]


def batch_script(*, name: str, run_id: str, key: str, settings: Mapping[str, Any], time_limit: str,
                 out_path: str, executor: str, request: str, self_managed: bool = False) -> str:
    """The sbatch script of one model (every directive quoted; --no-requeue always)."""
    q = shlex.quote
    lines = ["#!/bin/bash", f"#SBATCH --job-name={q(name)}", f"#SBATCH --comment={q(f'madengine:{run_id}:{key}')}",
             "#SBATCH --no-requeue", f"#SBATCH --nodes={int(settings.get('nodes') or 1)}",
             "#SBATCH --ntasks-per-node=1", f"#SBATCH --output={q(out_path)}"]
    if time_limit:
        lines.append(f"#SBATCH --time={q(time_limit)}")
    for field_name in ("partition", "nodelist", "reservation", "account"):
        if settings.get(field_name):
            lines.append(f"#SBATCH --{field_name}={q(str(settings[field_name]))}")
    if settings.get("gpus_per_node"):
        lines.append(f"#SBATCH --gpus-per-node={int(settings['gpus_per_node'])}")
    if settings.get("exclusive"):
        lines.append("#SBATCH --exclusive")
    if int(settings.get("nodes") or 1) > 1 and not self_managed:
        # One container per node; MASTER_ADDR is the first node's address (NodeAddr), as every rank sees it.
        lines += ['first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
                  'MASTER_ADDR=$(scontrol show node "$first" -o | tr " " "\\n" | sed -n "s/^NodeAddr=//p")',
                  'export MASTER_ADDR=${MASTER_ADDR:-$first}',
                  'export MASTER_PORT=${MASTER_PORT:-$((29500 + SLURM_JOB_ID % 1000))}',
                  f"exec srun --ntasks-per-node=1 --kill-on-bad-exit=0 {EXECUTOR_PYTHON} {q(executor)} {q(request)}"]
    else:
        lines.append(f"exec {EXECUTOR_PYTHON} {q(executor)} {q(request)}")
    return "\n".join(lines) + "\n"


def time_limit_for(model: Mapping[str, Any], context: Mapping[str, Any], settings: Mapping[str, Any],
                   override: int) -> str:
    """``--time``: the settings' time, else the card's timeout + TIME_MARGIN_S (in minutes), or none."""
    if settings.get("time"):
        return check_time(str(settings["time"]), "slurm time")
    seconds = run_timeout(dict(model), dict(context), None if override in (None, -1) else int(override))
    if not seconds:
        return ""
    return str(math.ceil((int(seconds) + TIME_MARGIN_S) / 60))


def prepare_jobs(manifest: Manifest, options: RunOptions, flags: SlurmOptions, mad_dir: Path,
                 shared: Path, keys: list[str] | None = None) -> list[Job]:
    """Write the executor, requests and batch scripts of ``keys`` (all models: None) into ``shared``."""
    context = local_run_context(manifest, options.context, detect=False)
    tools = _read_json(options.tools_config, "tools config")
    data = _read_json(options.data_config, "data config")
    keys = keys if keys is not None else [e.key for e in manifest.entries()]
    tarballs: dict[str, Any] = {}
    if flags.image_transfer == "copy":
        from madengine.execute.image_copy import cache_dir, images_for, save_images

        tarballs = save_images(images_for(manifest, keys), cache_dir())
    plan = _plan.host_plan(
        manifest.to_dict(), keys, host="", run_id=options.run_id, workdir=str(shared), mad_dir=str(mad_dir),
        context=options.context, tools_config=tools, tools_config_name=str(options.tools_config or ""),
        data_config=data, image_transfer=flags.image_transfer, image_tarballs=tarballs,
        options={"timeout": options.timeout, "keep_alive": False, "keep_model_dir": options.keep_model_dir,
                 "skip_model_run": options.skip_model_run, "disable_skip_gpu_arch": options.disable_skip_gpu_arch,
                 "sys_env_details": options.sys_env_details, "force_mirror_local": options.force_mirror_local})
    images = {image["name"]: image for image in plan["images"]}
    credentials = Credentials.load(mad_dir)
    executor = build_executor(shared / "executor.pyz")
    results = shared / "results"
    (shared / "requests").mkdir(parents=True, exist_ok=True)
    (shared / "jobs").mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    jobs = []
    models = {e.key: e.model.to_dict() for e in manifest.entries()}
    for item in plan["models"]:
        key, request = item["key"], dict(item["request"])
        model = models.get(key, request.get("model") or {})
        settings = settings_for(model, context, flags)
        request.update(mad_dir=str(mad_dir), output_dir=str(results))
        image = dict(images.get(item["image"]) or {})
        if image.get("tarball"):
            image["load_from"] = image["tarball"]  # the shared file system: no copy needed
        request["slurm_image"] = image
        request, secret_env = _without_secret_values(request)
        if model.get("cred") and not request.get("error"):
            # The card's credential.json entry: like the context's secrets, by the job's environment only.
            try:
                cred_env = credentials.cred_build_args(str(model["cred"]))
            except CredentialError as e:
                request.update(error=str(e), infra_error=False)
            else:
                secret_env.update(cred_env)
                request["secret_env_names"] = sorted({*request["secret_env_names"], *cred_env})
        req_path = shared / "requests" / f"{safe_name(key)}.json"
        fd = os.open(req_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(request, handle, indent=1)
        script = shared / "jobs" / f"{safe_name(key)}.sbatch"
        script.write_text(batch_script(
            name=job_name(options.run_id, item["name"]), run_id=options.run_id, key=key, settings=settings,
            time_limit=time_limit_for(model, context, settings, options.timeout),
            out_path=str(results / f"{safe_name(key)}.slurm-%j.out"), executor=str(executor),
            request=str(req_path), self_managed=launcher(model) == "slurm_multi"), encoding="utf-8")
        jobs.append(Job(key=key, name=item["name"], script=script, secret_env=secret_env,
                        rows_path=_request.rows_path(str(results), item["name"], str(request.get("file_stem") or "")),
                        nnodes=int(settings.get("nodes") or 1), gpus_per_node=str(settings.get("gpus_per_node") or ""),
                        per_rank=int(settings.get("nodes") or 1) > 1 and launcher(model) != "slurm_multi",
                        estimate=int(run_timeout(dict(model), dict(context), None if options.timeout in (None, -1)
                                                 else int(options.timeout)) or 0)))
    return jobs


def _without_secret_values(request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The request as written to the shared directory, with the context's secret-named env values taken
    out (``secret_env_names`` lists them; the executor reads them from the job's environment), and those
    values."""
    context = dict(request.get("context") or {})
    env = dict(context.get("docker_env_vars") or {})
    secrets = {str(k): str(v) for k, v in env.items() if is_secret_name(str(k))}
    context["docker_env_vars"] = {k: v for k, v in env.items() if k not in secrets}
    return dict(request, context=context, secret_env_names=sorted(secrets)), secrets


def _submit(job: Job) -> str:
    # sbatch exports the submitter's environment to the job (--export=ALL): the secrets go that way.
    out = subprocess.run(["sbatch", "--parsable", str(job.script)], capture_output=True, text=True, timeout=60,
                         check=False, env={**os.environ, **job.secret_env})
    if out.returncode != 0:
        raise InvalidInputError(f"sbatch {job.script} failed: {(out.stderr or out.stdout).strip()}",
                                hint="check the partition/account/time settings")
    return out.stdout.strip().split(";")[0]


def _queue(ids: list[str]) -> dict[str, tuple[str, str, str, str]]:
    """{job id: (state, reason, elapsed, nodes)} of the jobs squeue still knows."""
    if not ids:
        return {}
    out = _run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r|%M|%N"])
    table = {}
    for line in out.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 5:
            table[parts[0]] = (parts[1], parts[2], parts[3], parts[4])
    return table


def _job_record(job_id: str) -> dict[str, str]:
    out = _run(["scontrol", "show", "job", "-o", job_id])
    record = {}
    for token in out.stdout.split():
        if "=" in token:
            k, v = token.split("=", 1)
            record.setdefault(k, v)
    return record


def own_jobs(run_id: str) -> dict[str, tuple[str, str]]:
    """{manifest key: (job id, state)} of the run's jobs that squeue still knows (queued, running, or
    ended within MinJobAge), found by their comment; the last job of a key wins."""
    out = _run(["squeue", "-h", "-t", "all", "-o", "%i|%T|%k"])
    found: dict[str, tuple[str, str]] = {}
    prefix = f"madengine:{run_id}:"
    for line in out.stdout.splitlines():
        job_id, _, rest = line.partition("|")
        state, _, comment = rest.partition("|")
        if comment.startswith(prefix) and job_id.isdigit():
            key = comment[len(prefix):]
            if key not in found or int(job_id) > int(found[key][0]):
                found[key] = (job_id, state)
    return found


def adoptable(run_id: str, recorded: Callable[[str], bool]) -> dict[str, str]:
    """{key: job id} a resumed run takes over instead of submitting: the run's jobs still queued or
    running, and ended ones whose result the ledger does not hold yet (the CLI died before it)."""
    return {key: job_id for key, (job_id, state) in own_jobs(run_id).items()
            if state not in TERMINAL or not recorded(key)}


def _read_rows(path: str) -> list[dict[str, str]]:
    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return rows if isinstance(rows, list) else []


def rank_rows(job: Job) -> list[dict[str, str]]:
    """A multi-node job's rows: those of the rank that printed the performance line, else rank 0's."""
    ranks = [_read_rows(str(Path(job.rows_path).parent / f"rank{r}" / Path(job.rows_path).name))
             for r in range(job.nnodes)]
    with_perf = [rows for rows in ranks if any(row.get("status") == "SUCCESS" for row in rows)]
    return with_perf[0] if with_perf else ranks[0]


def _finish(job: Job, state: str, nodes: str, run_id: str) -> list[dict[str, str]]:
    """The job's rows: the executor's, else one FAILURE row saying what SLURM did to the job."""
    rows = rank_rows(job) if job.per_rank else _read_rows(job.rows_path)
    if not rows:
        record = _job_record(job.job_id)
        state = record.get("JobState", state) or state
        if state == "TIMEOUT":
            reason = f"SLURM time limit exceeded (--time {record.get('TimeLimit', '?')})"
        elif state == "NODE_FAIL":
            reason = f"node failed: {record.get('NodeList', nodes) or nodes} (job {job.job_id}, not requeued)"
        elif state == "CANCELLED":
            reason = f"SLURM job {job.job_id} cancelled"
        else:
            reason = f"SLURM job {job.job_id} {state.lower() or 'ended'} (exit {record.get('ExitCode', '?')}) " \
                     "without results"
        rows = [failure_row({"name": job.name}, reason, host=nodes.split(",")[0] if nodes else "", run_id=run_id)]
    for row in rows:
        row.update(deployment_type="slurm", slurm_job_id=job.job_id, nnodes=str(job.nnodes))
        if job.gpus_per_node:
            row["gpus_per_node"] = job.gpus_per_node
    return rows


def cancel(jobs: list[Job], wait_s: float = 30) -> None:
    """scancel every unfinished job and wait until squeue shows none of them running."""
    ids = [j.job_id for j in jobs if j.job_id and not j.done]
    if not ids:
        return
    _run(["scancel", *ids])
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        live = [i for i, (state, *_) in _queue(ids).items() if state not in TERMINAL]
        if not live:
            return
        time.sleep(POLL_S)


def run_slurm(manifest: Manifest, options: RunOptions, flags: SlurmOptions, mad_dir: Path,
              listener: Listener | None = None) -> RunReport:
    """Submit one job per model, poll until every job ended, append rows as each ends."""
    emit = listener or (lambda *_: None)
    context = local_run_context(manifest, options.context, detect=False)
    entries = [e for e in manifest.entries() if options.only is None or (e.key, "slurm") in options.only]
    partitions = {str(settings_for(e.model.to_dict(), context, flags).get("partition") or "") for e in entries}
    preflight(partitions)
    shared = (options.runs_dir / options.run_id / "slurm").absolute()  # every node sees it (shared fs)
    jobs = prepare_jobs(manifest, options, flags, mad_dir, shared, [e.key for e in entries])
    ledger = Ledger(options.runs_dir, options.run_id)
    sink = results_sink(options, ledger)
    ledger.start({**options.ledger_meta, "cells": [[e.key, "slurm"] for e in manifest.entries()]})
    previous = ledger.load()
    adopted = (adoptable(options.run_id, lambda key: previous.next_attempt(key, "slurm") > 1)
               if options.only is not None else {})
    started = time.monotonic()
    runs: list[ModelRun] = []
    # Longest expected first (a stable sort: equal estimates keep the manifest order), so the scheduler's
    # first-come order on free nodes is the LPT schedule.
    jobs.sort(key=lambda j: -j.estimate)
    try:
        for job in jobs:
            emit("start", job.name, {"image": ""})
            if job.key not in adopted:  # a rows file of an earlier attempt must not pass for this one's
                for old in [Path(job.rows_path), *Path(job.rows_path).parent.glob(f"rank*/{Path(job.rows_path).name}")]:
                    old.unlink(missing_ok=True)
            job.job_id = adopted.get(job.key) or _submit(job)
            job.started = time.monotonic()
            emit("slurm", job.name, {"job_id": job.job_id, "state": "PENDING", "reason": "submitted"})
        while not all(j.done for j in jobs):
            table = _queue([j.job_id for j in jobs if not j.done])
            for job in jobs:
                if job.done:
                    continue
                state, reason, elapsed, nodes = table.get(job.job_id, ("", "", "", ""))
                if state != job.state and state:
                    if state == "RUNNING":
                        emit("running", job.name, {})
                    job.state = state
                if state:
                    emit("slurm", job.name, {"job_id": job.job_id, "state": state, "reason": reason,
                                             "elapsed": elapsed, "nodes": nodes})
                early = not job.per_rank and os.path.isfile(job.rows_path) and state != "PENDING"
                if state in TERMINAL or not state or early:
                    rows = _finish(job, state, nodes, options.run_id)
                    job.done = True
                    log = str(Path(job.rows_path).parent)
                    sink.record(job.key, "slurm", previous.next_attempt(job.key, "slurm"), rows, log_path=log)
                    runs.append(ModelRun(job.name, rows, log))
                    emit("done", job.name, {"rows": rows, "log_path": log, "exec_line": ""})
            if not all(j.done for j in jobs):
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        cancel(jobs)
        raise
    all_rows = [row for run in runs for row in run.rows]
    return RunReport(options.run_id, runs, summarize(all_rows, options.run_id, time.monotonic() - started))


def write_bundle(manifest: Manifest, mad_dir: Path, directory: Path, options: RunOptions | None = None,
                 flags: SlurmOptions | None = None) -> list[Job]:
    """``generate slurm``: a bundle that plain ``sbatch`` runs (``bash DIR/submit.sh``).

    DIR gets the executor zipapp, ``requests/`` and ``jobs/`` (one sbatch script per model), the
    manifest, ``submit.sh`` and a README; the jobs write logs and rows JSON to ``DIR/results/``. Paths
    inside are absolute (the MAD tree and DIR must be on the nodes' shared file system).
    """
    directory = directory.resolve()
    options = options or RunOptions(output=directory / "perf.csv")
    jobs = prepare_jobs(manifest, options, flags or SlurmOptions(), mad_dir, directory)
    from madengine.atomic import write_json_atomic

    write_json_atomic(directory / "build_manifest.json", manifest.to_dict())
    q = shlex.quote
    lines = ["#!/bin/bash", "# Submit every model of this bundle with plain sbatch (generated by madengine-cli).",
             "set -euo pipefail", 'cd "$(dirname "$0")"']
    for job in jobs:
        rel = job.script.relative_to(directory)
        lines.append(f'echo "{job.name}: job $(sbatch --parsable {q(str(rel))})"')
    (directory / "submit.sh").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (directory / "submit.sh").chmod(0o755)
    (directory / "README.md").write_text(
        f"# madengine SLURM bundle (run {options.run_id})\n\n"
        f"{len(jobs)} model(s), one batch job each (`jobs/*.sbatch`, `--no-requeue`).\n\n"
        "- Submit: `bash submit.sh` (plain `sbatch`; honours `SLURM_CONF`).\n"
        "- Each job runs `python3 -S executor.pyz requests/<model>.json` on its node: the node needs Python 3\n"
        "  and a Docker engine (`DOCKER_HOST`, else the default socket); it pulls the image by digest.\n"
        "- Results: `results/<model>.rows.json` (perf rows), `results/*.run.live.log`, `results/*.slurm-<id>.out`.\n"
        f"- The MAD tree ({mad_dir}) and this directory must be visible at the same paths on every node.\n"
        + _secrets_note(jobs), encoding="utf-8")
    return jobs


def _secrets_note(jobs: list[Job]) -> str:
    names = sorted({name for job in jobs for name in job.secret_env} | {"MAD_SECRETS*"})
    return ("- Secrets are not in this bundle: export " + ", ".join(f"`{n}`" for n in names)
            + " in the shell that runs `submit.sh` (sbatch passes its environment to the jobs).\n")
