"""The execution config: what `export-config` writes and `run`/`generate` read as the run options.

Input: the models :func:`madengine.discover.discover_models` selected, the validated (build-only)
context and :class:`ExportOptions`. Output: :class:`ExportResult`, whose ``config`` is the JSON
document; :func:`write_execution_config` writes it atomically and :func:`load_execution_config` reads
it back (every problem is an :class:`~madengine.errors.InvalidInputError`, exit 4). Needs no GPU and no
Docker; prints nothing.

Layout::

    {
      "execution_config_version": 1,
      "madengine_version": "...", "mad_dir": "/abs/MAD", "tags": ["dummy"],
      "models": [<Model.to_dict(): tag params applied>],
      "context": {...secrets masked...},
      "run_options": {"timeout": -1, "keep_alive": false, "data_config": path|null,
                      "tools_config": path|null, "data": {<dataname>: <data.json entry, masked>},
                      "tools": {<tool>: <tools.json entry>}, "force_mirror_local": path|null,
                      "disable_skip_gpu_arch": false, "skip_gpu_arch": true, "sys_env_details": true,
                      "ignore_deprecated": false},
      "credentials_required": ["<credential.json entry name>"],
      "resources": [{"model", "n_gpus", "gpu_vendor", "gpu_resource", "timeout", "data"}],
      "skipped": [{"model", "reason"}]
    }

``run_options.timeout`` is -1 ("each model's own timeout") unless the context sets ``timeout``;
``resources[i]`` belongs to ``models[i]`` (two models may share a name with different args), and its
``timeout`` is the effective one in seconds (null: no limit). ``credentials_required`` lists the models'
``cred`` names: the registry login is a property of the build, recorded in the build manifest.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._runspec import run_timeout
from ansible_collections.mad.engine.plugins.module_utils._secrets import mask_secrets
from ansible_collections.mad.engine.plugins.module_utils._tools import tools_table

from madengine import __version__
from madengine.atomic import write_json_atomic
from madengine.credentials import Credentials, mask_deep, secret_context_values
from madengine.errors import InvalidInputError
from madengine.jsonfile import read_json_document
from madengine.manifest import Manifest, ManifestEntry
from madengine.model import Model

EXECUTION_CONFIG_VERSION = 1

#: Kubernetes extended resource of each GPU vendor (CPU runs request none).
GPU_RESOURCES: dict[str, str | None] = {
    "AMD": "amd.com/gpu",
    "NVIDIA": "nvidia.com/gpu",
    "INTEL": "gpu.intel.com/i915",
    "CPU": None,
}

_EXPORT_EXAMPLE = ("madengine-cli export-config --tags dummy \\\n"
                   "  --additional-context '{\"gpu_vendor\": \"AMD\", \"guest_os\": \"UBUNTU\"}'")


@dataclass
class ExportOptions:
    """What export-config was asked besides tags and context (paths as given on the command line)."""

    mad_dir: Path
    data_config: Path | str | None = None
    tools_config: Path | str | None = None
    #: Whether the data/tools config was named explicitly (then a missing file is exit 4).
    data_config_given: bool = True
    tools_config_given: bool = True
    ignore_deprecated: bool = False
    sys_env_details: bool = True
    force_mirror_local: Path | str | None = None
    disable_skip_gpu_arch: bool = False
    tags: list[str] = field(default_factory=list)
    #: Overrides ``<mad_dir>/credential.json`` (only used to find secret values to mask).
    credential_file: Path | None = None


@dataclass
class ExportResult:
    config: dict[str, Any]
    models: list[Model]
    skipped: list[dict[str, str]] = field(default_factory=list)
    #: Things the user should know (a model's data entry is missing, ...), one line each.
    notes: list[str] = field(default_factory=list)


@dataclass
class ExecutionConfig:
    """A loaded execution config (see the module docstring for the fields)."""

    models: list[Model]
    context: dict[str, Any]
    run_options: dict[str, Any]
    credentials_required: list[str]
    resources: list[dict[str, Any]]
    madengine_version: str = ""
    mad_dir: str = ""
    version: int = EXECUTION_CONFIG_VERSION
    path: Path | None = None
    #: The whole document as read.
    raw: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- build
def _read_json_object(path: str | None, option: str) -> dict[str, Any]:
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{option} file {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{option} file {path} must hold a JSON object")
    return data


def _data_needs(model: Model, data_config: Mapping[str, Any], notes: list[str]) -> dict[str, Any] | None:
    if not model.data:
        return None
    entry = data_config.get(model.data)
    if entry is None:
        note = (f"data {model.data!r} is not defined in the data config: its models run without it (NOT mounted) "
                "unless the run host's data config defines it")
        if note not in notes:  # once per data source
            notes.append(note)
        return {"name": model.data, "defined": False, "providers": [], "readwrite": False, "size": ""}
    if isinstance(entry, str):
        entry = {"local": entry}
    if not isinstance(entry, dict):
        entry = {}
    from ansible_collections.mad.engine.plugins.module_utils._data import PROVIDER_ORDER

    readwrite = entry.get("readwrite", False)
    local = entry.get("local")
    if isinstance(local, dict):
        readwrite = local.get("readwrite", readwrite)
    return {"name": model.data, "defined": True,
            "providers": [kind for kind in PROVIDER_ORDER if kind in entry],
            "readwrite": bool(readwrite), "size": str(entry.get("size", "") or "")}


def _tools(context: Mapping[str, Any], tools_config_path: str | None) -> dict[str, Any]:
    """The tools.json entries of the tools the context asks for; unknown tools are exit 4."""
    requested = context.get("tools") or []
    if not requested:
        return {}
    from madengine.tools_config import effective_tools_config, tools_config_name

    path = effective_tools_config(tools_config_path)  # the hub has none: madengine's default
    name = tools_config_name(path)
    config = _read_json_object(str(path), "--tools-config")
    try:
        table = tools_table(config, name)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    out: dict[str, Any] = {}
    for item in requested:
        tool = str(item.get("name", "")).strip()
        if tool not in table:
            known = ", ".join(sorted(table)) or "none"
            raise InvalidInputError(f"unknown tool {tool!r}: it is not defined in {name} (known tools: {known})",
                                    hint="fix the tool name in the context, or add it to the tools config")
        out[tool] = copy.deepcopy(table[tool])
    return out


def build_execution_config(models: list[Model], context: Mapping[str, Any],
                           options: ExportOptions) -> ExportResult:
    """The execution config of ``models`` (already selected by tags) under ``context``.

    ``context`` must be validated and hold gpu_vendor and guest_os (see require_build_context).
    Deprecated models are left out (listed in ``skipped``) unless ``options.ignore_deprecated``.
    Raises InvalidInputError for a named data/tools config that is missing or malformed, or an
    unknown tool. Every secret value (credential.json, MAD_SECRETS env, secret-looking context keys)
    is masked in the result.
    """
    from madengine.build import run_options as checked_paths

    paths = checked_paths(options.mad_dir, data_config=options.data_config, tools_config=options.tools_config,
                          force_mirror_local=options.force_mirror_local,
                          disable_skip_gpu_arch=options.disable_skip_gpu_arch,
                          sys_env_details=options.sys_env_details, output="perf.csv",
                          data_config_given=options.data_config_given,
                          tools_config_given=options.tools_config_given)
    notes: list[str] = []
    selected: list[Model] = []
    skipped: list[dict[str, str]] = []
    for model in models:
        if model.deprecated and not options.ignore_deprecated:
            skipped.append({"model": model.name, "reason": "deprecated (use --ignore-deprecated to export it)"})
        else:
            selected.append(model)

    data_config = _read_json_object(paths["data_config"], "--data-config")
    tools = _tools(context, paths["tools_config"])
    vendor = str(context.get("gpu_vendor") or "").upper()
    resources = []
    data_entries: dict[str, Any] = {}
    for model in selected:
        record = model.to_dict()
        data = _data_needs(model, data_config, notes)
        if data and data["defined"]:
            data_entries[model.data] = copy.deepcopy(data_config[model.data])
        resources.append({
            "model": model.name,
            "n_gpus": model.n_gpus,
            "gpu_vendor": vendor,
            "gpu_resource": GPU_RESOURCES.get(vendor) if model.n_gpus != 0 else None,
            "timeout": run_timeout(record, dict(context)),
            "data": data,
        })
    timeout = context.get("timeout")
    run_options = {
        "timeout": -1 if timeout is None else int(timeout),
        "keep_alive": False,
        "data_config": paths["data_config"],
        "tools_config": paths["tools_config"],
        "data": mask_secrets(data_entries),
        "tools": tools,
        "force_mirror_local": paths["force_mirror_local"],
        "disable_skip_gpu_arch": paths["disable_skip_gpu_arch"],
        "skip_gpu_arch": paths["skip_gpu_arch"],
        "sys_env_details": paths["sys_env_details"],
        "ignore_deprecated": bool(options.ignore_deprecated),
    }
    config: dict[str, Any] = {
        "execution_config_version": EXECUTION_CONFIG_VERSION,
        "madengine_version": __version__,
        "mad_dir": str(options.mad_dir),
        "tags": list(options.tags),
        "models": [m.to_dict() for m in selected],
        "context": mask_secrets(dict(context)),
        "run_options": run_options,
        "credentials_required": sorted({m.cred for m in selected if m.cred}),
        "resources": resources,
        "skipped": skipped,
    }
    credentials = Credentials.load(options.mad_dir, path=options.credential_file)
    secrets = credentials.secret_values(secret_context_values(context))
    # Last line of defence, as for the build manifest: no secret value leaves this process.
    config = mask_deep(config, secrets)
    return ExportResult(config=config, models=selected, skipped=skipped, notes=notes)


def write_execution_config(path: Path | str, config: Mapping[str, Any]) -> Path:
    """Write ``config`` to ``path`` atomically; returns the path."""
    write_json_atomic(path, dict(config))
    return Path(path)


# -------------------------------------------------------------------------------------------- loading
def _bad(where: str, problem: str) -> InvalidInputError:
    return InvalidInputError(f"Execution config {where} {problem}",
                             hint="regenerate it with `madengine-cli export-config`", example=_EXPORT_EXAMPLE)


def load_execution_config(path: Path | str) -> ExecutionConfig:
    """Read and validate an execution config written by export-config.

    Raises InvalidInputError (exit 4) when it is missing, not JSON, not an execution config, or
    written by a newer madengine.
    """
    file = Path(path)
    where = str(file)
    data = read_json_document(
        file, "Execution config", option="--execution-config",
        missing_hint="export one first (it writes execution_config.json), or point --execution-config at an "
                     "existing file",
        malformed_hint="it was probably truncated or edited by hand: export it again", example=_EXPORT_EXAMPLE)
    config = execution_config_from_dict(data, where=where)
    config.path = file
    return config


def execution_config_from_dict(data: Any, *, where: str = "execution config") -> ExecutionConfig:
    """Validate a decoded execution config (see :func:`load_execution_config`)."""
    if not isinstance(data, dict):
        raise _bad(where, f"must be a JSON object, not {type(data).__name__}")
    version = data.get("execution_config_version")
    if version is None and "models" not in data:
        raise _bad(where, "has neither 'execution_config_version' nor 'models': it is not an execution config")
    version = EXECUTION_CONFIG_VERSION if version is None else version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _bad(where, f"execution_config_version must be a positive integer, not {version!r}")
    if version > EXECUTION_CONFIG_VERSION:
        raise InvalidInputError(
            f"Execution config {where} has execution_config_version {version}; this madengine reads up to "
            f"{EXECUTION_CONFIG_VERSION}",
            hint="it was written by a newer madengine: upgrade madengine, or export it with this one",
            example=_EXPORT_EXAMPLE)
    models_raw = data.get("models", [])
    if not isinstance(models_raw, list):
        raise _bad(where, "'models' must be a list of model objects")
    models = [Model.from_dict(record, where=f"{where}: models[{i}]") for i, record in enumerate(models_raw)]
    parts: dict[str, Any] = {}
    for name, kind in (("context", dict), ("run_options", dict), ("credentials_required", list),
                       ("resources", list)):
        value = data.get(name)
        value = kind() if value is None else value
        if not isinstance(value, kind):
            raise _bad(where, f"'{name}' must be {'an object' if kind is dict else 'a list'}")
        parts[name] = value
    if not all(isinstance(c, str) for c in parts["credentials_required"]):
        raise _bad(where, "'credentials_required' must be a list of credential names")
    if not all(isinstance(r, dict) for r in parts["resources"]):
        raise _bad(where, "'resources' must be a list of objects")
    timeout = parts["run_options"].get("timeout", -1)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < -1:
        raise _bad(where, f"run_options.timeout must be an integer >= -1, not {timeout!r}")
    texts = {}
    for name in ("madengine_version", "mad_dir"):
        value = data.get(name) or ""
        if not isinstance(value, str):
            raise _bad(where, f"'{name}' must be a string")
        texts[name] = value
    return ExecutionConfig(models=models, version=version, raw=dict(data), **parts, **texts)


def execution_config_from_manifest(manifest: Manifest, mad_dir: Path) -> ExecutionConfig:
    """The execution config a build manifest implies on its own: its models, its (masked) context and
    the run options recorded at build time (data and tools configs read again from their recorded
    paths; one that is gone since counts as absent). What ``generate`` uses without ``export-config``."""
    stored = manifest.run_options
    options = ExportOptions(mad_dir=Path(mad_dir), data_config=stored.get("data_config"),
                            tools_config=stored.get("tools_config"), data_config_given=False,
                            tools_config_given=False, ignore_deprecated=True,
                            sys_env_details=bool(stored.get("sys_env_details", True)),
                            force_mirror_local=stored.get("force_mirror_local"),
                            disable_skip_gpu_arch=bool(stored.get("disable_skip_gpu_arch")))
    models = [entry.model for entry in manifest.entries()]
    result = build_execution_config(models, manifest.context, options)
    where = f"implied by the build manifest {manifest.path}" if manifest.path else "of the build manifest"
    return execution_config_from_dict(result.config, where=where)


__all__ = ["EXECUTION_CONFIG_VERSION", "GPU_RESOURCES", "ExecutionConfig", "ExportOptions", "ExportResult",
           "build_execution_config", "execution_config_from_dict", "execution_config_from_manifest",
           "load_execution_config",
           "write_execution_config"]


def select_entries(manifest: Manifest, config: ExecutionConfig, skipped: list[dict[str, str]],
                   notes: list[str], *, unit: str) -> list[ManifestEntry]:
    """The manifest entries the execution config selects (all when it names none); shared by the
    generators. Unselected models go to `skipped`; configured models missing from the manifest get a
    note ending in `unit` (what the generator does not produce for them)."""
    entries = manifest.entries()
    if not entries:
        where = f" {manifest.path}" if manifest.path else ""
        raise InvalidInputError(f"Build manifest{where} has no built models to run",
                                hint="build again: a model whose build failed cannot be run")
    if not config.models:
        return entries
    wanted = {m.name for m in config.models}
    chosen = [e for e in entries if e.model.name in wanted]
    for entry in entries:
        if entry.model.name not in wanted:
            skipped.append({"model": entry.model.name, "reason": "not in the execution config"})
    built = {e.model.name for e in entries}
    for name in sorted(wanted - built):
        notes.append(f"model {name} is in the execution config but not in the build manifest: {unit}")
    if not chosen:
        raise InvalidInputError(
            "No model of the execution config is in the build manifest",
            hint="export the config and build with the same --tags",
            example="madengine-cli export-config --tags dummy -c CONTEXT\n"
                    "madengine-cli build --tags dummy -c CONTEXT --registry HOST:PORT")
    return chosen
