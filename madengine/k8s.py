"""Kubernetes manifests for a build: build manifest + execution config → plain YAML files.

Input: a loaded :class:`~madengine.manifest.Manifest`, an
:class:`~madengine.execution_config.ExecutionConfig`, a namespace and the MAD package root (the model scripts
come from there). Output: a :class:`K8sBundle` (file name → text, plus what each Job does);
:func:`write_bundle` writes it. Prints nothing; never contains a credential value.

What the files hold (one object per file, all ``app.kubernetes.io/name: madengine``):

* ``namespace.yaml``: the Namespace.
* ``configmap-config.yaml`` (``madengine-config``; one ``configmap-config-<job>.yaml`` per Job when that
  would pass 1 MiB): the Jobs' result step, one
  ``<job>.json`` per Job (the model and the fixed perf-row fields), ``_perf.py`` (the collection's
  perf parser, the same file local runs use) and ``madengine_result.py`` (the Job's result step).
* ``configmap-scripts.yaml`` (``madengine-scripts``): every MAD file a Job needs (the model's scripts
  folder, the pre/post scripts of the context and its tools, custom data scripts), flattened: a
  ConfigMap cannot hold folders. Each Job's initContainer (the model's own image, ``sh``) copies its
  files back to their original relative paths in an emptyDir at ``/myworkspace`` and the scripts
  folder to ``/myworkspace/run_directory``: the layout ``madengine-cli run`` gives the container.
* ``job-<name>.yaml``: one Job per model. The container runs the exact line the local executor runs
  (``_runspec.script_command``) under ``timeout``, tees its output to ``/madengine/results``, then
  prints its perf rows between ``MADENGINE-RESULT-BEGIN`` and ``MADENGINE-RESULT-END``, one JSON row
  a line, computed by ``_perf.rows_for_run`` (images without python3 print a raw row instead).
* ``kustomization.yaml`` and ``README.md`` (apply, secrets to create, result collection).

Names are DNS-1123 labels made from model names by :func:`dns1123_label`: lossless names stay as they
are; any other gets a hash of the original appended, so distinct models never share a name.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._data import DataError, data_problems, resolve_data
from ansible_collections.mad.engine.plugins.module_utils._execute import prepare_context
from ansible_collections.mad.engine.plugins.module_utils._paths import OutsideError, inside
from ansible_collections.mad.engine.plugins.module_utils._plan import model_request, plan_stems, run_context
from ansible_collections.mad.engine.plugins.module_utils._runspec import (
    MASK,
    RUN_DIRECTORY,
    WORKSPACE,
    container_body,
    effective_args,
    run_timeout,
    script_location,
    should_skip,
)
from ansible_collections.mad.engine.plugins.module_utils._tree import package_files

from madengine import __version__
from madengine.atomic import write_text_atomic
from madengine.credentials import Credentials, mask_deep, mask_text, registry_key, secret_context_values
from madengine.errors import InvalidInputError
from madengine.execution_config import GPU_RESOURCES, ExecutionConfig, execution_config_from_dict, select_entries
from madengine.manifest import Manifest, ManifestEntry, manifest_from_dict

#: The Kubernetes version the generated objects are written for (and validated against in the tests).
KUBERNETES_VERSION = "1.30"
DEFAULT_NAMESPACE = "madengine"
APP = "madengine"
CONFIG_MAP = "madengine-config"
SCRIPTS_MAP = "madengine-scripts"
#: Secret names the Jobs refer to (created by the user, see the README); never generated here.
PULL_SECRET = "madengine-registry"
ENV_SECRET = "madengine-env"
CRED_SECRET_PREFIX = "madengine-cred-"
FILES_MOUNT = "/madengine/files"
CONFIG_MOUNT = "/madengine/config"
RESULTS_MOUNT = "/madengine/results"
RESULT_BEGIN = "MADENGINE-RESULT-BEGIN"
RESULT_END = "MADENGINE-RESULT-END"
#: Added to a model's timeout for activeDeadlineSeconds: image pull, workspace set-up and result step.
#: The model itself is stopped at its timeout by ``timeout`` in the container (a "timeout after N s" row).
DEADLINE_GRACE = 600
#: etcd stores an object in at most 1 MiB; keep each ConfigMap below that with room for metadata.
CONFIGMAP_LIMIT = 1_000_000
PERF_MODULE = "_perf.py"
RESULT_SCRIPT = "madengine_result.py"
RESULT_TEMPLATE = "k8s/madengine_result.py"

_LABEL_MAX = 63
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_CM_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_HASH_LEN = 8


# ------------------------------------------------------------------------------------------- names
def _digest(text: str, length: int = _HASH_LEN) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def is_dns1123_label(name: str) -> bool:
    return len(name) <= _LABEL_MAX and bool(_DNS_LABEL.fullmatch(name))


def dns1123_label(name: str, max_len: int = _LABEL_MAX, prefix: str = "") -> str:
    """``prefix + name`` as a DNS-1123 label (lower-case alphanumerics and '-', at most ``max_len``).

    Deterministic. A name that is already valid (and fits) is kept as it is; any other is lower-cased,
    runs of other characters become '-', and ``-<8 hex of sha256(name)>`` is appended (truncating the
    readable part to fit), so two different names never end up equal: ``dummy2/dummy_2`` →
    ``dummy2-dummy-2-<hash>``.
    """
    whole = prefix + name
    if is_dns1123_label(whole) and len(whole) <= max_len:
        return whole
    readable = re.sub(r"[^a-z0-9]+", "-", whole.lower()).strip("-")
    suffix = _digest(name)
    room = max_len - len(suffix) - 1
    readable = readable[:room].rstrip("-")
    return f"{readable}-{suffix}" if readable else suffix


def unique_labels(names: Iterable[str], prefix: str = "", max_len: int = _LABEL_MAX) -> dict[str, str]:
    """``{name: label}`` for distinct ``names``; raises ValueError if two names get one label."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in names:
        if name in out:
            continue
        label = dns1123_label(name, max_len, prefix)
        if label in seen:  # only if a valid name equals another's hashed form: never silently merge
            raise ValueError(f"names {seen[label]!r} and {name!r} both map to {label!r}")
        seen[label] = name
        out[name] = label
    return out


def _check_namespace(namespace: str) -> str:
    if not is_dns1123_label(namespace):
        raise InvalidInputError(
            f"--namespace {namespace!r} is not a valid Kubernetes namespace name",
            hint="use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
            example="madengine-cli generate k8s --namespace madengine-prod")
    return namespace


def _quantity(size: int) -> str:
    for unit, factor in (("Gi", 1024 ** 3), ("Mi", 1024 ** 2), ("Ki", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


# ------------------------------------------------------------------------------------------- data
@dataclass
class MadFile:
    """One file of the MAD package a Job needs, under its ConfigMap key."""

    path: str
    key: str
    executable: bool
    text: str | None = None
    binary: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.binary) if self.binary is not None else len((self.text or "").encode("utf-8"))


@dataclass
class JobPlan:
    """One model's Job: what the CLI shows and the template renders."""

    name: str
    model: str
    key: str
    image: str
    pinned: bool
    gpu_vendor: str
    gpu_resource: str | None
    gpus: int
    timeout: int | None
    deadline: int | None
    file_name: str
    cred_secret: str | None = None
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class K8sBundle:
    namespace: str
    instance: str
    files: dict[str, str]
    jobs: list[JobPlan]
    pull_secret: str | None = None
    #: Secrets the Jobs refer to, which the user creates (see the README): name → {type, keys, purpose}.
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Models that got no Job, with the reason.
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ files
def _walk(root: Path, rel: str) -> list[str]:
    """The package files of ``rel`` a Job gets (the sync's file set), less symlinks leaving the package."""
    return [path for path in package_files(str(root), rel) if not _leaves(root, root / path)]


def _leaves(root: Path, full: Path) -> bool:
    try:
        inside(str(root), str(full), "file")
    except OutsideError:
        return True
    return False


def _safe_rel(path: str, what: str) -> str:
    norm = os.path.normpath(path).replace(os.sep, "/")
    if norm.startswith("/") or norm == ".." or norm.startswith("../"):
        raise ValueError(f"{what} {path!r} is outside the MAD package: a Kubernetes Job only gets files "
                         "from inside it")
    return norm


def _needed_files(model: Mapping[str, Any], context: Mapping[str, Any], data_plan: Any,
                  root: Path) -> tuple[str, list[str]]:
    """``(scripts folder, [relative file paths])`` a model's run reads from the MAD tree; a symlink
    leaving the package is left out (never followed). The card's own paths were checked by the planner
    (``_plan.model_request``). Raises ValueError for a missing scripts folder or script."""
    folder, script = script_location(dict(model))
    folder = _safe_rel(folder, "scripts folder")
    if folder == ".":
        # Local runs copy the whole MAD root here; a ConfigMap gets only the script itself.
        paths = [_safe_rel(script, "script")]
    else:
        if not (root / folder).is_dir():
            raise ValueError(f"scripts folder {folder} not found under {root}")
        paths = _walk(root, folder)
    script_path = script if folder == "." else f"{folder}/{script}"
    if script_path not in paths:
        raise ValueError(f"script {script_path} not found under {root}")
    entries = list(context.get("pre_scripts") or []) + list(context.get("post_scripts") or [])
    for tool in context.get("tools") or []:
        entries += list(tool.get("pre_scripts") or []) + list(tool.get("post_scripts") or [])
    for entry in entries:
        path = str(entry.get("path") or "").strip()
        if path.startswith(WORKSPACE + "/"):
            path = path[len(WORKSPACE) + 1:]
        elif path.startswith("/"):
            continue  # an absolute path in the image: nothing to ship
        path = _safe_rel(path, "pre/post script")
        if not (root / path).is_file():
            raise ValueError(f"script {path} (pre/post scripts) not found under {root}")
        paths.append(path)
    for command in (data_plan.commands if data_plan is not None else []):
        # A custom data provider runs `bash /myworkspace/<script>`: ship that script too.
        for word in shlex.split(command):
            if word.startswith(WORKSPACE + "/"):
                rel = _safe_rel(word[len(WORKSPACE) + 1:], "data script")
                if (root / rel).is_file():
                    paths.append(rel)
    return folder, list(dict.fromkeys(paths))


def _file_keys(paths: Iterable[str]) -> dict[str, str]:
    """ConfigMap key of each path: ``scripts/dummy/run.sh`` → ``scripts.dummy.run.sh`` when that is a
    valid key no other path also maps to; else ``<8 hex of the path>-<file name>``."""
    paths = sorted(set(paths))
    readable = {p: p.replace("/", ".") for p in paths}
    counts: dict[str, int] = {}
    for key in readable.values():
        counts[key] = counts.get(key, 0) + 1
    out = {}
    for path, key in readable.items():
        if counts[key] > 1 or not _CM_KEY.fullmatch(key) or len(key) > 253 or key.startswith("."):
            base = re.sub(r"[^-._a-zA-Z0-9]+", "-", path.rsplit("/", 1)[-1]).strip(".")[:200] or "file"
            key = f"{_digest(path)}-{base}"
        out[path] = key
    return out


def _load_file(root: Path, path: str, key: str) -> MadFile:
    full = root / path
    data = full.read_bytes()
    executable = os.access(full, os.X_OK)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return MadFile(path, key, executable, binary=data)
    if "\x00" in text:
        return MadFile(path, key, executable, binary=data)
    return MadFile(path, key, executable, text=text)


# ------------------------------------------------------------------------------- container settings
@dataclass
class _PodParts:
    env: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    security: dict[str, Any] = field(default_factory=dict)
    working_dir: str = WORKSPACE
    notes: list[str] = field(default_factory=list)


_PLUGIN_DEVICES = ("/dev/kfd", "/dev/dri")


def _translate(body: Mapping[str, Any], secret_env: list[str]) -> _PodParts:
    """The engine create body of the local run, as pod settings (what Kubernetes can express)."""
    parts = _PodParts()
    for item in body.get("Env") or []:
        key, _, value = str(item).partition("=")
        parts.env.append({"name": key, "value": value})
    for key in secret_env:
        parts.env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": ENV_SECRET, "key": key}}})
    parts.env.append({"name": "MADENGINE_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}})
    parts.env.append({"name": "MADENGINE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    host = body.get("HostConfig") or {}
    own = {f"{WORKSPACE}:{WORKSPACE}:rw", f"{RUN_DIRECTORY}:{RUN_DIRECTORY}:rw"}
    index = 0
    for bind in host.get("Binds") or []:
        if bind in own:
            continue
        pieces = str(bind).split(":")
        source, target = pieces[0], pieces[1] if len(pieces) > 1 else pieces[0]
        mode = pieces[2] if len(pieces) > 2 else "rw"
        name = f"host-{index}"
        index += 1
        parts.volumes.append({"name": name, "hostPath": {"path": source, "type": ""}})
        parts.notes.append(f"hostPath volume {source} (at {target}): the node must have it, or patch the volume")
        mount = {"name": name, "mountPath": target}
        if "ro" in mode.split(","):
            mount["readOnly"] = True
        parts.mounts.append(mount)
    if host.get("ShmSize"):
        parts.volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory",
                                                           "sizeLimit": _quantity(int(host["ShmSize"]))}})
        parts.mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    for number, (path, opts) in enumerate(sorted((host.get("Tmpfs") or {}).items())):
        name = f"tmpfs-{number}"
        parts.volumes.append({"name": name, "emptyDir": {"medium": "Memory"}})
        parts.mounts.append({"name": name, "mountPath": path})
        if opts:
            parts.notes.append(f"tmpfs {path}: options {opts!r} are not applied (an in-memory emptyDir is used)")
    capabilities: dict[str, list[str]] = {}
    if host.get("CapAdd"):
        capabilities["add"] = list(host["CapAdd"])
    if host.get("CapDrop"):
        capabilities["drop"] = list(host["CapDrop"])
    if capabilities:
        parts.security["capabilities"] = capabilities
    if host.get("Privileged"):
        parts.security["privileged"] = True
    for opt in host.get("SecurityOpt") or []:
        if opt == "seccomp=unconfined":
            parts.security["seccompProfile"] = {"type": "Unconfined"}
        else:
            parts.notes.append(f"security option {opt!r} has no Kubernetes equivalent here: not applied")
    user = str(body.get("User") or "")
    if user:
        uid, _, gid = user.partition(":")
        if uid.isdigit():
            parts.security["runAsUser"] = int(uid)
            if gid.isdigit():
                parts.security["runAsGroup"] = int(gid)
        else:
            parts.notes.append(f"user {user!r} is not numeric: runAsUser not set")
    if body.get("WorkingDir"):
        parts.working_dir = str(body["WorkingDir"])
    for device in host.get("Devices") or []:
        if device.get("PathOnHost") not in _PLUGIN_DEVICES:
            parts.notes.append(f"device {device.get('PathOnHost')} is not exposed: Kubernetes gives GPUs through "
                               "the vendor's device plugin only")
    if host.get("CpusetCpus"):
        parts.notes.append(f"docker_cpus {host['CpusetCpus']!r} (cpuset) is not applied: use CPU requests")
    for limit in host.get("Ulimits") or []:
        parts.notes.append(f"ulimit {limit.get('Name')} is not applied (set it in the node's container runtime)")
    return parts


# ---------------------------------------------------------------------------------------- rendering
def _labels(instance: str, component: str, model_label: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "madengine-cli",
    }
    if model_label:
        labels["madengine/model"] = model_label
    return labels


def _instance(manifest: Manifest, config: ExecutionConfig, namespace: str) -> str:
    """A stable id of this bundle (same inputs → same id): the instance label and the rows' run_id."""
    payload = json.dumps([namespace, manifest.to_dict(), config.raw], sort_keys=True, default=str)
    return f"madengine-{_digest(payload)}"


def _run_context(manifest: Manifest, config: ExecutionConfig) -> tuple[dict[str, Any], list[str]]:
    """The run's context (manifest's, then the execution config's) and the env keys given as secrets.

    Values masked in the files (``******``) are not passed on: their env keys are read from the
    ``madengine-env`` Secret at run time instead.
    """
    env = {**(manifest.context.get("docker_env_vars") or {}), **(config.context.get("docker_env_vars") or {})}
    secret_env = sorted(key for key, value in env.items() if value == MASK)
    return run_context(manifest.context, config.context), secret_env


def _job_names(entries: list[ManifestEntry]) -> dict[str, str]:
    """Job name of each entry (by manifest key): ``madengine-<model>``; a model name selected twice (with
    different args) adds its manifest key, so every Job has its own name."""
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.model.name] = counts.get(entry.model.name, 0) + 1
    ids = {e.key: e.model.name if counts[e.model.name] == 1 else f"{e.model.name}@{e.key}" for e in entries}
    labels = unique_labels(ids.values(), prefix=f"{APP}-")
    return {key: labels[ident] for key, ident in ids.items()}


def _gpus(model_n_gpus: int, vendor: str, context: Mapping[str, Any], name: str, notes: list[str]) -> int:
    if vendor == "CPU" or GPU_RESOURCES.get(vendor) is None:
        return 0
    if model_n_gpus == -1:
        count = int(context.get("gpu_count") or 1)
        notes.append(f"model {name}: n_gpus -1 (all GPUs) requests {count} GPU(s) (the context's gpu_count, "
                     "else 1): Kubernetes needs a number")
        return count
    return max(int(model_n_gpus), 0)


@dataclass
class _RunSettings:
    """What every Job of a bundle shares: the run context and options from the execution config."""

    root: Path
    instance: str
    context: dict[str, Any]
    secret_env: list[str]
    data_config: dict[str, Any]
    mirror: str | None
    timeout_override: int | None
    disable_skip_gpu_arch: bool


@dataclass
class _PlannedJob:
    job: JobPlan
    spec: dict[str, Any]
    parts: _PodParts
    command: str
    folder: str


def _plan_job(entry: ManifestEntry, request: Mapping[str, Any], job_name: str, run: _RunSettings) -> _PlannedJob:
    """One model's Job, from its planned request (``_plan.model_request``: the card and its pinned image).
    Raises ValueError/DataError/OSError when the model cannot run as a Job."""
    if request.get("error"):
        raise ValueError(str(request["error"]))
    model = dict(request["model"])
    name = entry.model.name
    image = str(request["image"])
    context = run.context
    vendor = str(context.get("gpu_vendor") or entry.image.gpu_vendor or "CPU").upper()
    if vendor not in GPU_RESOURCES:
        raise ValueError(f"gpu_vendor {vendor!r} is not one of {', '.join(GPU_RESOURCES)}")
    architecture = str(context.get("gpu_architecture") or "")
    skip = should_skip(model, {"gpu_architecture": architecture}, run.disable_skip_gpu_arch)
    if skip:
        raise ValueError(f"skipped: {skip} (the context's gpu_architecture)")
    notes: list[str] = []
    gpus = _gpus(entry.model.n_gpus, vendor, context, name, notes)
    data_plan, data_problem = None, ""
    if entry.model.data:
        # Host paths are the node's: they cannot be checked from here. Data that cannot be mounted does
        # not drop the Job (the run-context rule): the Job runs without it, and its row says so.
        data_plan, data_problem = resolve_data(entry.model.data, run.data_config, str(run.root), run.mirror,
                                               exists=lambda _p: True)
    if model.get("url"):
        notes.append("its card url is not cloned in a Job (local and cluster runs clone it into the run "
                     "directory): bake the repository into the image")
    facts = {"gpu_vendor": vendor, "gpu_count": gpus, "gpu_architecture": architecture, "render_devices": []}
    # The device plugin picks the GPUs: docker_gpus (host indices) has no meaning in a pod.
    body_ctx = {k: v for k, v in context.items() if k != "docker_gpus"}
    body = container_body(model, image, body_ctx, facts, {"keep_alive": False}, WORKSPACE, RUN_DIRECTORY, {},
                          data_plan, run_id=run.instance)
    folder, paths = _needed_files(model, context, data_plan, run.root)
    timeout = run_timeout(model, context, run.timeout_override)
    parts = _translate(body, run.secret_env)
    notes += parts.notes
    job = JobPlan(name=job_name, model=name, key=entry.key, image=image, pinned="@sha256:" in image,
                  gpu_vendor=vendor, gpu_resource=GPU_RESOURCES.get(vendor) if gpus else None, gpus=gpus,
                  timeout=timeout, deadline=None if timeout is None else timeout + DEADLINE_GRACE,
                  file_name=f"job-{job_name}.yaml",
                  cred_secret=dns1123_label(entry.model.cred, 253, CRED_SECRET_PREFIX) if entry.model.cred else None,
                  files=paths, notes=notes)
    spec = {
        "job": job_name, "model": model, "timeout": timeout, "run_directory": RUN_DIRECTORY,
        "results_dir": RESULTS_MOUNT, "begin": RESULT_BEGIN, "end": RESULT_END, "data_problem": data_problem,
        # The perf-row fields known before the run (madengine_result.py adds host, duration, start).
        "row": {
            "run_id": run.instance, "image": image, "image_digest": entry.image.image_digest or "",
            "base_docker": entry.image.base_docker, "docker_sha": entry.image.docker_sha,
            "build_duration": entry.image.build_duration, "docker_file": entry.image.dockerfile,
            "gpu_architecture": architecture, "args": effective_args(model, context),
            "deployment_type": "kubernetes", "data": data_plan.row_data() if data_plan is not None else {},
        },
    }
    return _PlannedJob(job, spec, parts, body["Cmd"][2], folder)


def _config_maps(shared: dict[str, str], specs: dict[str, dict[str, str]],
                 render_map: Callable[[str, dict[str, str]], str]) -> list[tuple[str, str, str, list[str]]]:
    """The config ConfigMaps: ``[(file name, ConfigMap name, YAML, the Jobs that mount it)]``. One
    ``madengine-config`` with the shared result step and every Job's spec while it fits
    :data:`CONFIGMAP_LIMIT`; else one ``madengine-config-<job>`` per Job (the shared files and its spec)."""
    whole = render_map(CONFIG_MAP, {**shared, **{k: v for spec in specs.values() for k, v in spec.items()}})
    if len(whole.encode("utf-8")) <= CONFIGMAP_LIMIT:
        return [("configmap-config.yaml", CONFIG_MAP, whole, list(specs))]
    maps = []
    for job, spec in specs.items():
        name = f"{CONFIG_MAP}-{job}"
        maps.append((f"configmap-config-{job}.yaml", name, render_map(name, {**shared, **spec}), [job]))
    return maps


def _secrets(jobs: list[JobPlan], entries: list[ManifestEntry], manifest: Manifest, config: ExecutionConfig,
             credentials: Credentials, secret_env: list[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The registries that need a login, and the Secrets the Jobs refer to: name → {type, keys, purpose}."""
    registries = sorted({r for r in (e.image.registry or manifest.registry for e in entries) if r})
    required = set(manifest.credentials_required) | set(config.credentials_required)
    needs_login = [r for r in registries if credentials.registry_login(r).has_login or registry_key(r) in required]
    secrets: dict[str, dict[str, Any]] = {}
    if needs_login:
        secrets[PULL_SECRET] = {"type": "docker-registry", "keys": [],
                                "purpose": "image pull secret for " + ", ".join(needs_login)}
    creds = {e.key: e.model.cred for e in entries}
    for job in jobs:
        if job.cred_secret and job.cred_secret not in secrets:
            cred = str(creds[job.key])
            fields = _cred_fields(credentials, cred) or [f"{cred}_USERNAME", f"{cred}_PASSWORD"]
            secrets[job.cred_secret] = {"type": "generic", "keys": fields,
                                        "purpose": f"credential {cred!r} of the models' `cred`, as env vars"}
    if secret_env:
        secrets[ENV_SECRET] = {"type": "generic", "keys": secret_env,
                               "purpose": "the context's docker_env_vars masked in the files, and MAD_SECRETS* "
                                          "variables"}
    return needs_login, secrets


def _mad_files(planned: list[_PlannedJob], root: Path, secret_values: frozenset[str]) -> dict[str, MadFile]:
    paths = dict.fromkeys(path for p in planned for path in p.job.files)
    keys = _file_keys(paths)
    files = {path: _load_file(root, path, keys[path]) for path in sorted(paths)}
    for mad_file in files.values():  # a script may hold a credential value: mask it as data
        if mad_file.text is not None:
            mad_file.text = mask_text(mad_file.text, secret_values)
        elif mad_file.binary is not None:
            for secret in sorted(secret_values, key=len, reverse=True):
                mad_file.binary = mad_file.binary.replace(secret.encode("utf-8"), MASK.encode("ascii"))
    return files


def render_k8s(manifest: Manifest, config: ExecutionConfig, *, namespace: str = DEFAULT_NAMESPACE,
               mad_dir: Path, credentials: Credentials | None = None) -> K8sBundle:
    """Render the manifests for every model of ``manifest`` that ``config`` selects.

    ``credentials`` (default: the MAD package's credential.json and this environment) only tell which
    Secrets the Jobs need and which values to mask; no value is ever written.
    Raises InvalidInputError (exit 4) for a bad namespace, no model to run, an unknown tool, or a
    ConfigMap over the size limit. A model that cannot be run this way (missing script, data source
    not defined, skipped GPU architecture) gets no Job: it is listed in ``skipped``.
    """
    import yaml

    from madengine.templating import render, template_text

    _check_namespace(namespace)
    root = Path(mad_dir)
    credentials = credentials if credentials is not None else Credentials.load(root)
    skipped: list[dict[str, str]] = []
    notes: list[str] = []
    # Mask secret values in the inputs themselves (not only in the text), so that a masked value stays
    # well-formed data: an env value equal to a password becomes a Secret reference, not broken YAML.
    secret_values = credentials.secret_values(secret_context_values({**manifest.context, **config.context}))
    if secret_values:
        path = manifest.path
        manifest = manifest_from_dict(mask_deep(manifest.to_dict(), secret_values), where=str(path or "manifest"))
        manifest.path = path
        config = execution_config_from_dict(mask_deep(config.raw, secret_values), where="execution config")
    entries = select_entries(manifest, config, skipped, notes, unit="no Job")
    instance = _instance(manifest, config, namespace)
    context, secret_env = _run_context(manifest, config)
    # The MAD_SECRETS* variables of this environment reach the Jobs as Secret references (never values).
    secret_env = sorted(set(secret_env) | set(credentials.secret_env_build_args()))
    try:
        context = prepare_context(context, {"tools": dict(config.run_options.get("tools") or {})},
                                  "the execution config's run_options.tools")
    except ValueError as exc:
        raise InvalidInputError(str(exc), hint="export the execution config again with the tools config") from None
    run = _RunSettings(root=root, instance=instance, context=context, secret_env=secret_env,
                       data_config=dict(config.run_options.get("data") or {}),
                       mirror=config.run_options.get("force_mirror_local") or None,
                       timeout_override=config.run_options.get("timeout"),
                       disable_skip_gpu_arch=bool(config.run_options.get("disable_skip_gpu_arch")))

    names = _job_names(entries)
    manifest_data = manifest.to_dict()
    stems = plan_stems(manifest_data)
    planned: list[_PlannedJob] = []
    for entry in entries:
        request = model_request(manifest_data, entry.key, {}, mad_dir=str(root), stems=stems)["request"]
        try:
            planned.append(_plan_job(entry, request, names[entry.key], run))
        except (ValueError, DataError, OSError) as exc:
            skipped.append({"model": entry.model.name, "reason": str(exc)})
    if not planned:
        reasons = "; ".join(f"{s['model']}: {s['reason']}" for s in skipped)
        raise InvalidInputError(f"No model can run as a Kubernetes Job ({reasons})",
                                hint="fix the model definitions or the execution config, then generate again")
    jobs = [p.job for p in planned]
    mad_files = _mad_files(planned, root, secret_values)
    registries, secrets = _secrets(jobs, entries, manifest, config, credentials, secret_env)
    pull_secret = PULL_SECRET if registries else None
    model_labels = unique_labels(job.model for job in jobs)

    files: dict[str, str] = {}
    common = {"namespace": namespace, "instance": instance, "version": __version__,
              "k8s_version": KUBERNETES_VERSION}
    files["namespace.yaml"] = render("k8s/namespace.yaml.j2", **common, labels=_labels(instance, "namespace"))
    # Only what the Jobs read: the result step and each Job's spec (the manifest and execution config
    # are files of the bundle, not of the cluster). Too large for one ConfigMap: one per Job.
    shared = {PERF_MODULE: _perf_source(), RESULT_SCRIPT: template_text(RESULT_TEMPLATE)}
    specs = {p.job.name: {f"{p.job.name}.json": json.dumps(p.spec, indent=2) + "\n"} for p in planned}
    files["build_manifest.json"] = json.dumps(manifest.to_dict(), indent=2) + "\n"
    files["execution_config.json"] = json.dumps(config.raw, indent=2) + "\n"
    config_maps = _config_maps(shared, specs, lambda name, data: render(
        "k8s/configmap.yaml.j2", **common, name=name, labels=_labels(instance, "config"),
        description="the Jobs' result step and each Job's spec", data=data, binary_data={}))
    job_maps = {}
    for file_name, map_name, text, map_jobs in config_maps:
        files[file_name] = text
        job_maps.update(dict.fromkeys(map_jobs, map_name))
    files["configmap-scripts.yaml"] = render(
        "k8s/configmap.yaml.j2", **common, name=SCRIPTS_MAP, labels=_labels(instance, "scripts"),
        description="the MAD files the Jobs need, flattened (each Job's initContainer restores the tree)",
        data={f.key: f.text for f in mad_files.values() if f.text is not None},
        binary_data={f.key: base64.b64encode(f.binary).decode("ascii")
                     for f in mad_files.values() if f.binary is not None})
    for p in planned:
        job = p.job
        run_script = render("k8s/run.sh.j2", job=job, command=p.command, config_dir=CONFIG_MOUNT,
                            results_dir=RESULTS_MOUNT, result_script=RESULT_SCRIPT, begin=RESULT_BEGIN,
                            end=RESULT_END, model_json=json.dumps(job.model))
        init_script = render("k8s/init.sh.j2", files=[mad_files[f] for f in job.files], folder=p.folder,
                             files_dir=FILES_MOUNT, workspace=WORKSPACE, run_directory=RUN_DIRECTORY)
        files[job.file_name] = render(
            "k8s/job.yaml.j2", **common, job=job, parts=p.parts, run_script=run_script, init_script=init_script,
            labels=_labels(instance, "benchmark", model_labels[job.model]),
            annotations={"madengine/model-name": job.model, "madengine/manifest-key": job.key,
                         "madengine/image": job.image},
            pull_secret=pull_secret, config_map=job_maps[job.name], scripts_map=SCRIPTS_MAP, files_dir=FILES_MOUNT,
            config_dir=CONFIG_MOUNT, results_dir=RESULTS_MOUNT, workspace=WORKSPACE)
    resources = ["namespace.yaml", *(m[0] for m in config_maps), "configmap-scripts.yaml"] + [j.file_name for j in jobs]
    files["kustomization.yaml"] = render("k8s/kustomization.yaml.j2", **common, resources=resources)
    files["README.md"] = render("k8s/README.md.j2", **common, jobs=jobs, secrets=secrets, pull_secret=pull_secret,
                                registries=registries, env_secret=ENV_SECRET, secret_env=secret_env,
                                begin=RESULT_BEGIN, end=RESULT_END, results_dir=RESULTS_MOUNT,
                                grace=DEADLINE_GRACE, skipped=skipped, app=APP)

    for name, map_name in [*((m[0], m[1]) for m in config_maps), ("configmap-scripts.yaml", SCRIPTS_MAP)]:
        size = len(files[name].encode("utf-8"))
        if size > CONFIGMAP_LIMIT:
            raise InvalidInputError(
                f"ConfigMap {map_name} would be {size} bytes; Kubernetes stores at most about 1 MiB",
                hint="select fewer models, or move large files out of the models' scripts folders "
                     "(into the image or a data source)")

    # Last line of defence: no secret value (credential.json, MAD_SECRETS env) reaches the output, whatever
    # path it took; the YAML must still parse afterwards.
    for name, text in files.items():
        masked = mask_text(text, secret_values)
        if masked != text and name.endswith(".yaml"):
            try:
                list(yaml.safe_load_all(masked))
            except yaml.YAMLError:
                raise InvalidInputError(f"{name}: a credential value could not be masked safely in the output",
                                        hint="remove the credential value from the MAD files") from None
        files[name] = masked
    for job in jobs:
        notes += [f"{job.model}: {note}" for note in job.notes]
    for problem in data_problems([e.model.to_dict() for e in entries], run.data_config, str(root), run.mirror,
                                 exists=lambda _p: True).values():  # once per data source
        notes.append(f"{problem}: its Jobs run without it (their rows say so)")
    if not str(context.get("gpu_architecture") or ""):
        gpu_jobs = [job.model for job in jobs if job.gpu_vendor != "CPU"]
        if gpu_jobs:
            notes.append(f"{len(gpu_jobs)} Job(s) get an empty MAD_SYSTEM_GPU_ARCHITECTURE (the context sets no "
                         "gpu_architecture; scripts that read it, like the hub's vllm/run.sh, fail): add "
                         "\"gpu_architecture\": \"gfx942\" (your nodes' architecture) to the context")
    for image in sorted({job.image for job in jobs if not job.pinned}):
        count = sum(1 for job in jobs if job.image == image)
        notes.append(f"image {image} ({count} Job(s)) is not pinned by a registry digest: every node must already "
                     "have it (build with --registry to pull by digest)")
    return K8sBundle(namespace=namespace, instance=instance, files=files, jobs=jobs, pull_secret=pull_secret,
                     secrets=secrets, skipped=skipped, notes=notes)


def _cred_fields(credentials: Credentials, cred: str) -> list[str]:
    entry = credentials.entries.get(cred)
    if not isinstance(entry, dict):
        return []
    return [f"{cred}_{name.upper()}" for name, value in entry.items() if isinstance(value, (str, int, float, bool))]


def _perf_source() -> str:
    from ansible_collections.mad.engine.plugins.module_utils import _perf

    return Path(_perf.__file__).read_text(encoding="utf-8")


GENERATED_MARKER = "Generated by `madengine-cli generate k8s`"


def write_bundle(bundle: K8sBundle, output_dir: Path | str) -> list[Path]:
    """Write every file of ``bundle`` into ``output_dir`` (created as needed), each atomically.

    Job files an earlier generation left there (``job-*.yaml`` with the generated header) that this
    bundle does not have are removed, so ``kubectl apply -f`` on the folder cannot start stale Jobs.
    Returns the paths written.
    """
    out = Path(output_dir)
    written = []
    for name in sorted(bundle.files):
        path = out / name
        write_text_atomic(path, bundle.files[name])
        written.append(path)
    for stale in sorted(out.glob("job-*.yaml")):
        if stale.name in bundle.files:
            continue
        try:
            head = stale.read_text(encoding="utf-8", errors="replace")[:400]
        except OSError:
            continue
        if GENERATED_MARKER in head:
            stale.unlink()
    return written


# ------------------------------------------------------------------------------------------ results
def parse_result_blocks(log_text: str) -> list[dict[str, Any]]:
    """The rows of every ``MADENGINE-RESULT-BEGIN``…``END`` block in a Job log, in order.

    A line in a block that is not a JSON object is skipped (a model's own output cannot end up there:
    the block is printed after the model finished).
    """
    rows: list[dict[str, Any]] = []
    inside = False
    for line in (log_text or "").splitlines():
        stripped = line.strip()
        if stripped == RESULT_BEGIN:
            inside = True
        elif stripped == RESULT_END:
            inside = False
        elif inside and stripped:
            try:
                row = json.loads(stripped)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


__all__ = ["CONFIG_MAP", "DEFAULT_NAMESPACE", "JobPlan", "K8sBundle", "KUBERNETES_VERSION", "PULL_SECRET",
           "RESULT_BEGIN", "RESULT_END", "SCRIPTS_MAP", "dns1123_label", "is_dns1123_label", "parse_result_blocks",
           "render_k8s", "unique_labels", "write_bundle"]
