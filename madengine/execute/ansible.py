"""Run stage across a cluster: manifest + inventory → ansible-runner → the mad.engine role → perf rows.

Input: a loaded :class:`~madengine.manifest.Manifest`, :class:`~madengine.execute.local.RunOptions` and
a :class:`ClusterOptions`. Output: a :class:`~madengine.execute.local.RunReport` whose rows carry each
inventory hostname. Rows come from the runner's events as each host finishes a model and are appended
to perf.csv at once; hosts that never answered, or died mid-run, get FAILURE rows for every model they
did not finish. The private data dir `runs/<run_id>/` is kept as evidence and holds no secret:
secrets travel in a 0600 vars file outside it that is deleted when the play ends.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._data import data_problems
from ansible_collections.mad.engine.plugins.module_utils._engine import ENGINE_DOWN_REASONS
from ansible_collections.mad.engine.plugins.module_utils._perf import failure_row
from ansible_collections.mad.engine.plugins.module_utils._secrets import MASK, is_secret_name, mask_secrets

from madengine.atomic import write_json_atomic
from madengine.credentials import ENV_PASSWORD, SECRETS_ENV_MARKER, CredentialError, Credentials
from madengine.errors import InvalidInputError
from madengine.execute import schedule
from madengine.execute.image_copy import cache_dir, images_for, save_images
from madengine.execute.local import (
    RETRY_DELAY_MAX_S,
    RETRY_DELAY_S,
    Listener,
    ModelRun,
    RunOptions,
    RunReport,
    _read_json,
    local_run_context,
    results_sink,
)
from madengine.execute.play_guard import (
    TOKEN_ENV,
    PlayGuard,
    RunInProgressError,
    make_secret_dir,
    new_token,
    stop_processes,
)
from madengine.ledger import Ledger
from madengine.manifest import Manifest
from madengine.results import ResultsSink, summarize
from madengine.tools_config import effective_tools_config

logger = logging.getLogger(__name__)

PLAYBOOK = "mad.engine.run_models"
RUN_MODEL_ACTIONS = ("mad.engine.run_model", "run_model")
FACTS_ACTIONS = ("mad.engine.host_facts", "host_facts")
DISTRIBUTIONS = ("replicate", "shard")
#: The default --forks is the number of target hosts, up to this many (each fork holds an ssh session
#: and a worker process on the controller).
MAX_FORKS = 64


@dataclass
class ClusterOptions:
    inventory: Path
    distribute: str = "replicate"
    limit: str | None = None
    #: None: one per target host, at most MAX_FORKS.
    forks: int | None = None
    insecure_skip_host_key_check: bool = False
    runs_dir: Path = Path("runs")
    image_transfer: str = "registry"


def inventory_hosts(inventory: Path, limit: str | None) -> list[str]:
    """The inventory's hosts (after --limit), in inventory order. Raises InvalidInputError."""
    if not inventory.is_file():
        raise InvalidInputError(f"Inventory not found: {inventory}",
                                hint="pass an Ansible inventory file, e.g. inventories/example-cluster.yml")
    stat_ = inventory.stat()
    # The CLI plans once for its panel and once more to run: parse the inventory once (about 0.2 s).
    return list(_inventory_hosts(str(inventory.absolute()), stat_.st_mtime_ns, stat_.st_size, limit))


@functools.lru_cache(maxsize=8)
def _inventory_hosts(inventory: str, _mtime_ns: int, _size: int, limit: str | None) -> tuple[str, ...]:
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    try:
        manager = InventoryManager(loader=DataLoader(), sources=[inventory])
        if limit:
            manager.subset(limit)
        hosts = [host.name for host in manager.get_hosts()]
    except AnsibleError as e:
        raise InvalidInputError(f"Inventory {inventory} cannot be read: {e.message}") from None
    if not hosts:
        raise InvalidInputError(f"Inventory {inventory} has no hosts" + (f" matching {limit!r}" if limit else ""),
                                hint="check the file and the --limit pattern")
    return tuple(hosts)


def _runner_env(control_dir: Path, cluster: ClusterOptions) -> dict[str, str]:
    """The environment ansible-runner records in its artifacts: no secrets here, ever."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "/usr/bin:/bin")]),
        "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_HOST_KEY_CHECKING": "False" if cluster.insecure_skip_host_key_check else "True",
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        "ANSIBLE_TIMEOUT": "15",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
    }
    if cluster.insecure_skip_host_key_check:
        # Lab mode neither checks nor saves host keys: a key saved now would be trusted by the next
        # strict run. ssh takes the first value of an option, and ssh_args come before the inventory's
        # ansible_ssh_common_args (Ansible's default ssh_args, plus the known_hosts files).
        env["ANSIBLE_SSH_ARGS"] = ("-C -o ControlMaster=auto -o ControlPersist=60s "
                                   "-o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null")
    return env


def _control_dir() -> Path:
    """A fresh, short dir for this run's ssh ControlPath sockets.

    Not under runs/<run_id>/: a unix socket path must stay under 108 bytes, and ssh adds a random
    suffix to `<dir>/<10-char hash>` while it binds, so a deep working directory would make every host
    "unreachable" (ControlPath too long).
    """
    base = "/tmp" if os.path.isdir("/tmp") else None
    return Path(tempfile.mkdtemp(prefix="mad-cp-", dir=base))


def _close_control_masters(control_dir: Path) -> None:
    """Stop the ssh masters this run started (ControlPersist would keep them 60 s), then drop the dir."""
    closing = []
    with contextlib.suppress(OSError):
        for sock in control_dir.iterdir():
            with contextlib.suppress(OSError):
                argv = ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "mad-control-master"]
                closing.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL))
    for proc in closing:  # all hosts at once: a run on 20 nodes should not wait for them one by one
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(control_dir, ignore_errors=True)


def _secret_vars(manifest: Manifest, options: RunOptions, mad_dir: Path) -> dict[str, Any]:
    credentials = Credentials.load(mad_dir)
    registry = options.registry or manifest.registry
    # The controller's MAD_SECRETS* variables reach every container (as in a local run).
    secrets: dict[str, Any] = {"run_models_cred_env": {}, "run_models_secret_env": credentials.secret_env_build_args()}
    if registry:
        login = credentials.registry_login(registry)
        if login.has_login:
            secrets["run_models_registry_username"] = login.username
            secrets["run_models_registry_password"] = login.password
    for entry in manifest.entries():
        cred = entry.model.cred
        if cred and cred not in secrets["run_models_cred_env"]:
            try:
                secrets["run_models_cred_env"][cred] = credentials.cred_build_args(cred)
            except CredentialError as e:
                raise InvalidInputError(str(e)) from None
    return secrets


class _Collector:
    """Turns runner events into rows as they arrive; thread-safe (runner callbacks)."""

    def __init__(self, plan: Mapping[str, list[str]], names: Mapping[str, str],
                 sink: ResultsSink, listener: Listener, run_id: str,
                 ledger: Ledger, final: bool) -> None:
        self.plan = plan
        self.names = names
        self.sink = sink
        self.emit = listener
        self.run_id = run_id
        self.ledger = ledger
        state = ledger.load()
        self.attempts = {(host, key): state.next_attempt(key, host) for host, keys in plan.items() for key in keys}
        #: The last attempt: infrastructure failures are final rows instead of retries.
        self.final = final
        self.done: dict[tuple[str, str], ModelRun] = {}
        self.retry: set[tuple[str, str]] = set()
        self.lock = threading.Lock()

    def _next(self, host: str) -> str | None:
        return next((k for k in self.plan.get(host, []) if (host, k) not in self.done), None)

    def on_event(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host") or ""
        action = data.get("task_action") or ""
        res = data.get("res") or {}
        with self.lock:
            if kind == "runner_on_ok" and action in FACTS_ACTIONS and _lacks_images(res):
                # The image step will pull (or load) for this host; a warm host skips it and shows no pull.
                for key in self.plan.get(host, []):
                    self.emit("pull", self._cell(host, key), {})
            elif kind == "runner_on_start" and action in RUN_MODEL_ACTIONS:
                key = self._next(host)
                if key:
                    self.emit("running", self._cell(host, key), {})
            elif kind in ("runner_item_on_ok", "runner_on_ok") and action in RUN_MODEL_ACTIONS and "rows" in res:
                self._record(host, res)
            elif kind == "runner_on_unreachable":
                refused = _host_key_refusal(str(res.get("msg") or ""))
                if refused:  # not the network's fault: a retry would be refused the same way
                    self._fail_rest(host, f"host key verification failed for {host}: {refused}", infra=False)
                else:
                    self._fail_rest(host, "host unreachable")
            elif kind == "runner_on_failed" and not data.get("ignore_errors"):
                self._fail_rest(host, "host failed: " + _short(_failure_message(res) or str(data.get("task") or "")))
        return True

    def _cell(self, host: str, key: str) -> str:
        return f"{host} · {self.names.get(key, key)}"

    def _record(self, host: str, res: Mapping[str, Any]) -> None:
        name = str(res.get("model") or "")
        key = next((k for k in self.plan.get(host, []) if self.names.get(k) == name
                    and (host, k) not in self.done), None) or self._next(host)
        if key is None or (host, key) in self.done:
            return
        rows = [_host_failure(dict(row)) if res.get("infra_error") else dict(row) for row in res.get("rows") or []]
        run = ModelRun(f"{host}:{self.names.get(key, key)}", rows, str(res.get("log_path") or ""),
                       str(res.get("exec_line") or ""))
        self._settle(host, key, run, bool(res.get("infra_error")))
        following = self._next(host)
        if following:
            self.emit("running", self._cell(host, following), {})

    def _fail_rest(self, host: str, reason: str, infra: bool = True) -> None:
        for key in self.plan.get(host, []):
            if (host, key) in self.done:
                continue
            model = {"name": self.names.get(key, key)}
            rows = [failure_row(model, reason, host=host, run_id=self.run_id)]
            self._settle(host, key, ModelRun(f"{host}:{model['name']}", rows, ""), infra)

    def _settle(self, host: str, key: str, run: ModelRun, infra: bool) -> None:
        """Ledger every attempt; write rows unless an infrastructure failure will be retried.

        The rows go to perf.csv before the ledger line: a row that could not be written is never
        ledgered as done, so `--resume` runs it again."""
        retried = infra and not self.final
        self.sink.record(key, host, self.attempts[(host, key)], run.rows, log_path=run.log_path,
                         infra_error=infra, final=not retried)
        self.done[(host, key)] = run
        if retried:
            self.retry.add((host, key))
            return
        self.emit("done", self._cell(host, key), {"rows": run.rows, "log_path": run.log_path})


def _failure_message(res: Mapping[str, Any]) -> str:
    """Why a task failed: for a loop, the first failed item's message (which names the path or model),
    not Ansible's `One or more items failed`."""
    for item in res.get("results") or ():
        if isinstance(item, Mapping) and item.get("failed") and item.get("msg"):
            return str(item["msg"])
    return str(res.get("msg") or "")


#: What ssh says when it refuses a host's key (changed, unknown with strict checking, revoked).
_HOST_KEY_REFUSED = ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED",
                     "No ED25519 host key is known", "host key is known for", "Host key for")


def _host_key_refusal(msg: str) -> str:
    """The line of an unreachable host's ssh message that says its host key was refused, or ''."""
    if not any(marker in msg for marker in _HOST_KEY_REFUSED):
        return ""
    lines = [line.strip(" @\r") for line in msg.splitlines()]
    specific = [line for line in lines if "host key" in line.lower() and "verification failed" not in line.lower()]
    return _short(specific[0] if specific else "Host key verification failed.")


def _lacks_images(facts_result: Mapping[str, Any]) -> bool:
    """Whether mad.engine.host_facts found fewer of the images it was asked about than it was given."""
    asked = ((facts_result.get("invocation") or {}).get("module_args") or {}).get("images") or []
    return len(facts_result.get("images_present") or []) < len(asked)


def _host_failure(row: dict[str, Any]) -> dict[str, Any]:
    """A FAILURE row whose engine died under the model (dockerd killed mid-run) is the host's failure."""
    reason = str(row.get("reason") or "")
    # The host's engine is gone or hung: the host failed, not the model. A pull that failed
    # ("pull failed: …") is the registry's, not the host's.
    if row.get("status") == "FAILURE" and reason.startswith(ENGINE_DOWN_REASONS):
        row["reason"] = f"host failed: {reason}"
    return row


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plan_cluster(manifest: Manifest, options: RunOptions, cluster: ClusterOptions) -> dict[str, list[str]]:
    if cluster.distribute not in DISTRIBUTIONS:
        raise InvalidInputError(f"--distribute {cluster.distribute!r} is not one of {', '.join(DISTRIBUTIONS)}")
    hosts = inventory_hosts(cluster.inventory, cluster.limit)
    keys = [entry.key for entry in manifest.entries()]
    if cluster.distribute == "replicate":
        return schedule.replicate(keys, hosts)
    models = {entry.key: (entry.model.name, entry.model.timeout) for entry in manifest.entries()}
    return schedule.shard(keys, hosts, schedule.estimates_for(str(options.output), models))


@contextlib.contextmanager
def _without_secret_env() -> Iterator[None]:
    """The process environment without MAD_SECRETS* and the registry password while ansible-runner runs:
    it records its whole environment in ``artifacts/<play>/command``. The values reach the play through
    the secrets file (``run_models_secret_env``, the registry login) instead."""
    saved = {k: v for k, v in os.environ.items() if SECRETS_ENV_MARKER in k or k == ENV_PASSWORD}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def _play(ansible_runner: Any, pdd: Path, guard: PlayGuard, cluster: ClusterOptions, extravars: dict[str, Any],
          secrets: dict[str, Any], collector: _Collector) -> None:
    """One ansible-runner play; afterwards every planned cell of the collector is settled.

    Nothing secret reaches the command line, the runner's artifacts or events: the extra vars go in a
    file under ``runs/<run_id>/vars/`` and the secrets in a 0600 file of a private dir (see play_guard)
    that is removed when the play ends, also when the CLI is killed. Ctrl-C (or SIGTERM, which the
    caller turns into KeyboardInterrupt) stops every process of the play before it propagates.
    """
    ident = _next_ident(pdd)
    token = new_token()
    secret_dir = make_secret_dir()
    control_dir = _control_dir()
    secret_file = secret_dir / "secrets.json"
    vars_file = pdd / "vars" / f"{ident}.json"
    vars_file.parent.mkdir(exist_ok=True)
    write_json_atomic(vars_file, extravars)
    guard.start_play(ident, token, secret_dir, control_dir)
    try:
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as handle:
            json.dump(secrets, handle)
        with _without_secret_env():
            runner = ansible_runner.run(
                private_data_dir=str(pdd), ident=ident, playbook=PLAYBOOK,
                inventory=str(cluster.inventory.absolute()), limit=cluster.limit,
                forks=_forks(cluster, collector.plan),
                envvars={**_runner_env(control_dir, cluster), TOKEN_ENV: token},
                cmdline=f"-e @{shlex.quote(str(vars_file))} -e @{shlex.quote(str(secret_file))}",
                quiet=True, event_handler=collector.on_event, suppress_env_files=True,
                # Without a callback ansible-runner installs SIGINT/SIGTERM handlers of its own (and keeps
                # them): Ctrl-C would end the play as "canceled", an infrastructure failure to retry.
                cancel_callback=lambda: False)
    except BaseException:
        stop_processes(token)  # Ctrl-C, SIGTERM: ansible-playbook runs in a session of its own
        raise
    finally:
        shutil.rmtree(secret_dir, ignore_errors=True)
        _close_control_masters(control_dir)
        guard.end_play()
    stats = runner.stats or {}
    for host in collector.plan:
        if host in (stats.get("dark") or {}):
            collector._fail_rest(host, "host unreachable")
        else:
            collector._fail_rest(host, f"host failed: play ended with status {runner.status}"
                                 if runner.status != "successful" else "host failed: no result returned")


def _next_ident(pdd: Path) -> str:
    """``play-N`` for the first N without artifacts: a resumed run keeps every earlier attempt's."""
    n = 1
    while (pdd / "artifacts" / f"play-{n}").exists():
        n += 1
    return f"play-{n}"


def _forks(cluster: ClusterOptions, plan: Mapping[str, list[str]]) -> int:
    """--forks, or one fork per target host (at most MAX_FORKS): no host waits for a free fork."""
    return cluster.forks if cluster.forks else max(1, min(MAX_FORKS, len(plan)))


@contextlib.contextmanager
def _interrupts() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop a cluster run as KeyboardInterrupt (the play stopped, exit 130, no retry)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _split_secrets(context: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The run context without secrets, and its secret-named ``docker_env_vars`` (for the secrets file).

    The hosts get the secret env vars through the role's ``run_models_secret_env`` (the module's no_log
    ``cred_env``), so they are in no extra var, event or artifact; any other secret-named context value
    is masked (a host has no use for it).
    """
    env = context.get("docker_env_vars") or {}
    secret_env = {str(k): str(v) for k, v in env.items() if is_secret_name(k) and v not in (None, "", MASK)}
    public = dict(context)
    if secret_env:
        public["docker_env_vars"] = {k: v for k, v in env.items() if k not in secret_env}
    return mask_secrets(public), secret_env


def _image_tarballs(manifest: Manifest, plan: Mapping[str, list[str]], names: Mapping[str, str],
                    emit: Listener) -> dict[str, dict[str, str]]:
    """The planned models' images as cached ``docker save`` tarballs (--image-transfer copy)."""
    image_of = {entry.key: entry.image.docker_image for entry in manifest.entries()}
    cells = [(host, key) for host, keys in plan.items() for key in keys]

    def saving(name: str) -> None:  # the cells waiting for this image show it
        for host, key in cells:
            if image_of[key] == name:
                emit("pull", f"{host} · {names[key]}", {"image": name})

    return save_images(images_for(manifest, {key for _, key in cells}), cache_dir(), on_image=saving)


def run_cluster(manifest: Manifest, options: RunOptions, cluster: ClusterOptions, mad_dir: Path,
                listener: Listener | None = None) -> tuple[RunReport, Path]:
    """Run the manifest on the inventory's hosts; returns the report and the kept private data dir."""
    import ansible_runner

    emit = listener or (lambda *_: None)
    plan = plan_cluster(manifest, options, cluster)
    if options.only is not None:  # --resume / --rerun-failed
        plan = {host: [key for key in keys if (key, host) in options.only] for host, keys in plan.items()}
    names = {entry.key: entry.model.name for entry in manifest.entries()}
    if cluster.image_transfer == "registry" and not (options.registry or manifest.registry):
        unpushed = [e.model.name for e in manifest.entries() if not e.image.registry_image]
        if unpushed:
            raise InvalidInputError(
                "Cluster hosts cannot get the images: the manifest has no registry",
                hint="build with --registry HOST:PORT so every node can pull by digest",
                example="madengine-cli run --inventory cluster.yml --tags dummy --registry 127.0.0.1:5000")
    context, secret_env = _split_secrets(local_run_context(manifest, options.context, detect=False))
    pdd = (cluster.runs_dir / options.run_id).absolute()
    (pdd / "env").mkdir(parents=True, exist_ok=True)
    (pdd / "project").mkdir(exist_ok=True)
    results_dir = pdd / "results"
    # A file, not an extra var: ansible-core templates extra vars, and model args may hold `{{`.
    manifest_file = pdd / "build_manifest.json"
    write_json_atomic(manifest_file, manifest.to_dict())
    extravars = {
        "run_models_manifest_file": str(manifest_file),
        "run_models_assignments": plan,
        "run_models_context": context,
        "run_models_options": {
            "timeout": options.timeout, "keep_alive": options.keep_alive,
            "keep_model_dir": options.keep_model_dir, "skip_model_run": options.skip_model_run,
            "disable_skip_gpu_arch": options.disable_skip_gpu_arch,
            "sys_env_details": options.sys_env_details, "force_mirror_local": options.force_mirror_local,
        },
        "run_models_mad_dir": str(mad_dir),
        "run_models_run_id": options.run_id,
        "run_models_results_dir": str(results_dir),
        "run_models_image_transfer": cluster.image_transfer,
        "run_models_hosts": ",".join(plan),
    }
    if options.tools_config or context.get("tools"):
        # A MAD tree without tools.json (the hub's) uses madengine's default, as a local run does.
        extravars["run_models_tools_config"] = str(effective_tools_config(options.tools_config))
    if options.data_config:
        extravars["run_models_data_config"] = str(options.data_config)
    # Warned once here; each host says it again in its log and rows (host paths are checked there).
    for problem in data_problems([e.model.to_dict() for e in manifest.entries()],
                                 _read_json(options.data_config, "data config"), str(mad_dir),
                                 exists=lambda _path: True).values():
        logger.warning("%s: the models using it run without it", problem)
    for host, keys in plan.items():
        for key in keys:
            emit("start", f"{host} · {names[key]}", {"image": ""})
    if cluster.image_transfer == "copy":
        extravars["run_models_image_tarballs"] = _image_tarballs(manifest, plan, names, emit)
    guard = PlayGuard(pdd)
    try:
        guard.acquire()
    except RunInProgressError as e:
        raise InvalidInputError(f"Run {options.run_id} is still in progress (madengine-cli process {e})",
                                hint="wait for it to end, or stop it (Ctrl-C) before --resume") from None
    try:
        with _interrupts():
            return _run_plays(ansible_runner, manifest, options, cluster, mad_dir, plan, names, pdd, guard,
                              extravars, secret_env, emit)
    finally:
        guard.release()


def _run_plays(ansible_runner: Any, manifest: Manifest, options: RunOptions, cluster: ClusterOptions,
               mad_dir: Path, plan: dict[str, list[str]], names: Mapping[str, str], pdd: Path, guard: PlayGuard,
               extravars: dict[str, Any], secret_env: Mapping[str, str], emit: Listener) -> tuple[RunReport, Path]:
    """The plays of one run: the first, then one per retry of infrastructure failures (never of Ctrl-C)."""
    ledger = Ledger(options.runs_dir, options.run_id)
    ledger.start({**options.ledger_meta, "cells": [[key, host] for host, keys in plan.items() for key in keys]})
    sink = results_sink(options, ledger)
    started = time.monotonic()
    settled: dict[tuple[str, str], ModelRun] = {}
    pending = {host: keys for host, keys in plan.items() if keys}
    for attempt in range(max(0, options.retries) + 1):
        if attempt:
            delay = min(RETRY_DELAY_MAX_S, RETRY_DELAY_S * 2 ** (attempt - 1))
            logger.warning("retrying %d model run(s) after infrastructure failures in %.0f s",
                           sum(map(len, pending.values())), delay)
            time.sleep(delay)
        collector = _Collector(pending, names, sink, emit, options.run_id, ledger,
                               final=attempt == max(0, options.retries))
        extravars.update(run_models_assignments=pending, run_models_hosts=",".join(pending))
        secrets = _secret_vars(manifest, options, mad_dir)
        secrets["run_models_secret_env"] = {**secrets["run_models_secret_env"], **secret_env}
        _play(ansible_runner, pdd, guard, cluster, extravars, secrets, collector)
        settled.update(collector.done)
        pending = {host: [key for key in keys if (host, key) in collector.retry] for host, keys in pending.items()}
        pending = {host: keys for host, keys in pending.items() if keys}
        if not pending:
            break
    runs = [settled[(host, key)] for host, keys in plan.items() for key in keys if (host, key) in settled]
    rows = [row for run in runs for row in run.rows]
    report = RunReport(options.run_id, runs, summarize(rows, options.run_id, time.monotonic() - started))
    return report, pdd
