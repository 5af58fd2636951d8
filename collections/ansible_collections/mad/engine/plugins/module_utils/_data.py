# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Data providers behind one interface: a data.json entry -> a DataPlan (binds, env, commands).

data.json: ``{"<dataname>": {"local": "<host path>" | {"path": ...}, "readwrite": false,
"custom": "<script path relative to the MAD root>" | {"path": ..., "args": ...},
"nas": {"path": ..., "host"?: ..., "port"?: ..., "user"?: ...}, "aws": {"path": "s3://...", "region"?: ...},
"minio": {"path": "s3://...", "endpoint"?: ...}, "size"?: ..., "home"?: "<container path>"}}``.

A plan is pure data: the caller adds ``binds`` and ``env`` to the container and runs ``commands``
(pre-quoted shell strings) inside it before the model script. Only ``local`` and host-path ``nas``
sources are checked on this host; nothing is downloaded here.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._paths import OutsideError, inside

#: Provider types in the order they are tried when an entry names several (upstream madengine's order).
PROVIDER_ORDER = ("custom", "local", "minio", "nas", "aws")
#: Where data appears in the container by default: ``/data/<dataname>`` (``MAD_DATAHOME``).
DATA_ROOT = "/data"
#: Where a host-path NAS source is bound (read-only) to be copied from.
NAS_SOURCE_ROOT = "/mnt/madengine_nas"
WORKSPACE = "/myworkspace"
#: How a run log and row say that a model's data was not provided (upstream's wording).
NOT_MOUNTED = "NOT mounted"


class DataError(ValueError):
    """A model's data cannot be provided here; the executor turns it into a FAILURE row."""


@dataclass
class DataPlan:
    """How one data source reaches the container (JSON-serialisable via :meth:`to_dict`)."""

    dataname: str
    provider: str
    datahome: str
    binds: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    #: The host directory bound into the container ("" when the data only lives in the container).
    host_path: str = ""
    #: Host directories the caller should create before the run (the mirror directory).
    host_dirs: list[str] = field(default_factory=list)
    readwrite: bool = False
    mirrored: bool = False
    size: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataPlan:
        known = {key: d[key] for key in cls.__dataclass_fields__ if key in d}
        return cls(**known)

    def row_data(self) -> dict[str, str]:
        """The data columns of a perf row (see ``_perf.make_row(data=...)``)."""
        return {"dataname": self.dataname, "data_provider_type": self.provider, "data_size": self.size,
                "data_download_duration": ""}


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "rw")
    return bool(value)


def _as_cfg(value: Any, kind: str, name: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"path": value}
    if isinstance(value, dict):
        return value
    raise DataError(f"data source {name}: provider {kind!r} must be a path string or an object, "
                    f"not {type(value).__name__}")


def _path(cfg: dict[str, Any], kind: str, name: str) -> str:
    path = cfg.get("path")
    if not isinstance(path, str) or not path.strip():
        raise DataError(f"data source {name}: provider {kind!r} needs a non-empty \"path\"")
    return path.strip()


def _host_path(path: str, mad_dir: str) -> str:
    path = os.path.expanduser(path)
    if not os.path.isabs(path):
        path = os.path.join(mad_dir, path)
    return os.path.normpath(path)


def _source_path(path: str, mad_dir: str, name: str) -> str:
    """The host path of a data source: an absolute path is the host's by design (data lives outside the
    package); a relative one is the package's and must stay inside it, after symlinks."""
    if not os.path.isabs(os.path.expanduser(path)):
        try:
            inside(mad_dir, path, f"data source {name}: path")
        except OutsideError as exc:
            raise DataError(f"{exc}; give data outside the package as an absolute host path") from None
    return _host_path(path, mad_dir)


def _bind(host: str, container: str, mode: str, name: str) -> str:
    if ":" in host or ":" in container:
        raise DataError(f"data source {name}: path {host if ':' in host else container!r} contains ':', "
                        "which a bind mount cannot express")
    return f"{host}:{container}:{mode}"


def _args(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, list):
        return [str(item) for item in value]
    return shlex.split(str(value))


def _join(argv: list[str]) -> str:
    return " ".join(shlex.quote(word) for word in argv)


def plan_data(dataname: str, data_config: dict, mad_dir: str, mirror_local: str | None = None, *,
              exists: Callable[[str], bool] = os.path.exists) -> DataPlan:
    """Choose the provider of ``dataname`` from ``data_config`` (data.json) and plan its delivery.

    The first usable provider in :data:`PROVIDER_ORDER` wins; ``local`` (and a NAS given as a host path)
    is usable only if its path exists on this host (``exists``). ``local``: the path bound read-only
    (``rw`` with ``readwrite``) at ``MAD_DATAHOME``. Others fetch into ``MAD_DATAHOME`` inside the
    container; with ``mirror_local`` (``--force-mirror-local``) or a provider's ``mirrorlocal``,
    ``<mirror>/<dataname>`` on the host is bound ``rw`` there so the fetched data persists.
    Raises DataError for an unknown name, a bad entry, or no usable provider
    (``data source <name> not found: <path>``).
    """
    if not isinstance(data_config, dict) or dataname not in data_config:
        known = ", ".join(sorted(data_config)) if isinstance(data_config, dict) and data_config else "none"
        raise DataError(f"data source {dataname} is not defined in the data config (known: {known})")
    entry = data_config[dataname]
    if isinstance(entry, str):
        entry = {"local": entry}
    if not isinstance(entry, dict):
        raise DataError(f"data source {dataname} must be an object, not {type(entry).__name__}")
    kinds = [kind for kind in PROVIDER_ORDER if kind in entry]
    if not kinds:
        raise DataError(f"data source {dataname} names no provider (one of {', '.join(PROVIDER_ORDER)})")
    home = entry.get("home") or f"{DATA_ROOT}/{dataname}"
    if not isinstance(home, str) or not home.startswith("/"):
        raise DataError(f"data source {dataname}: \"home\" must be an absolute container path")
    home = os.path.normpath(home)
    misses = []
    for kind in kinds:
        cfg = _as_cfg(entry[kind], kind, dataname)
        plan = _PLANNERS[kind](dataname, entry, cfg, home, mad_dir, mirror_local, exists)
        if isinstance(plan, DataPlan):
            plan.size = str(entry.get("size", cfg.get("size", "")) or "")
            plan.env = {"MAD_DATANAME": dataname, "MAD_DATAHOME": home}
            return plan
        misses.append(plan)
    raise DataError(misses[0])


def _mirror(plan: DataPlan, cfg: dict[str, Any], mirror_local: str | None, mad_dir: str) -> DataPlan:
    mirror = mirror_local or cfg.get("mirrorlocal")
    plan.commands.insert(0, _join(["mkdir", "-p", plan.datahome]))
    if mirror:
        host = os.path.join(_host_path(str(mirror), mad_dir), plan.dataname)
        plan.binds.append(_bind(host, plan.datahome, "rw", plan.dataname))
        plan.host_path = host
        plan.host_dirs.append(host)
        plan.readwrite = True
        plan.mirrored = True
    return plan


def _local(name: str, entry: dict, cfg: dict, home: str, mad_dir: str, mirror_local: str | None,
           exists: Callable[[str], bool]) -> DataPlan | str:
    # Local data is used in place: --force-mirror-local does not apply (as upstream).
    host = _source_path(_path(cfg, "local", name), mad_dir, name)
    if not exists(host):
        return f"data source {name} not found: {host}"
    readwrite = _truthy(cfg.get("readwrite", entry.get("readwrite", False)))
    return DataPlan(dataname=name, provider="local", datahome=home, host_path=host, readwrite=readwrite,
                    binds=[_bind(host, home, "rw" if readwrite else "ro", name)])


def _custom(name: str, entry: dict, cfg: dict, home: str, mad_dir: str, mirror_local: str | None,
            exists: Callable[[str], bool]) -> DataPlan | str:
    script = _path(cfg, "custom", name).lstrip("/")
    argv = ["bash", f"{WORKSPACE}/{script}", home, *_args(cfg.get("args"))]
    # A subshell: the script runs in MAD_DATAHOME (as upstream) without moving the caller's shell.
    command = f"( cd {shlex.quote(home)} && {_join(argv)} )"
    return _mirror(DataPlan(dataname=name, provider="custom", datahome=home, commands=[command]),
                   cfg, mirror_local, mad_dir)


def _s3_sync(cfg: dict, source: str, home: str, endpoint: str | None) -> str:
    words = ["aws"]
    if endpoint is not None:
        words += ["--endpoint-url", endpoint]
    if cfg.get("region"):
        words += ["--region", str(cfg["region"])]
    words += ["s3", "sync", source, home]
    return _join(words)


def _aws(name: str, entry: dict, cfg: dict, home: str, mad_dir: str, mirror_local: str | None,
         exists: Callable[[str], bool]) -> DataPlan | str:
    source = _path(cfg, "aws", name)
    endpoint = cfg.get("endpoint_url")
    command = _s3_sync(cfg, source, home, str(endpoint) if endpoint else None)
    return _mirror(DataPlan(dataname=name, provider="aws", datahome=home, commands=[command]),
                   cfg, mirror_local, mad_dir)


def _minio(name: str, entry: dict, cfg: dict, home: str, mad_dir: str, mirror_local: str | None,
           exists: Callable[[str], bool]) -> DataPlan | str:
    source = _path(cfg, "minio", name)
    if not source.startswith("s3://"):
        source = "s3://" + source.lstrip("/")
    endpoint = cfg.get("endpoint") or cfg.get("endpoint_url") or cfg.get("minio_endpoint")
    if endpoint:
        command = _s3_sync(cfg, source, home, str(endpoint))
    else:
        # No endpoint configured: take it from the container's environment (e.g. docker_env_vars).
        command = 'aws --endpoint-url "$MINIO_ENDPOINT" ' + _s3_sync(cfg, source, home, None)[len("aws "):]
    return _mirror(DataPlan(dataname=name, provider="minio", datahome=home, commands=[command]),
                   cfg, mirror_local, mad_dir)


def _nas(name: str, entry: dict, cfg: dict, home: str, mad_dir: str, mirror_local: str | None,
         exists: Callable[[str], bool]) -> DataPlan | str:
    # No mounts inside the container: copy from the NAS path (rsync over ssh when a host is given,
    # else a host path where the NAS is already mounted, bound read-only and copied).
    source = _path(cfg, "nas", name)
    plan = DataPlan(dataname=name, provider="nas", datahome=home)
    if cfg.get("host"):
        remote = f"{cfg['host']}:{source.rstrip('/')}/"
        if cfg.get("user"):
            remote = f"{cfg['user']}@{remote}"
        ssh = f"ssh -p {int(cfg.get('port', 22))} -o BatchMode=yes"
        plan.commands.append(_join(["rsync", "-a", "-e", ssh, remote, home.rstrip("/") + "/"]))
    else:
        host = _source_path(source, mad_dir, name)
        if not exists(host):
            return f"data source {name} not found: {host}"
        staged = f"{NAS_SOURCE_ROOT}/{name}"
        plan.binds.append(_bind(host, staged, "ro", name))
        plan.commands.append(_join(["cp", "-a", staged + "/.", home + "/"]))
    return _mirror(plan, cfg, mirror_local, mad_dir)


def has_provider(entry: Any) -> bool:
    """Whether a data.json entry names a provider (a path string, or an object with a provider key).

    The hub's ``{"huggingface": {}}`` names none: the model's script fetches its data itself.
    """
    return isinstance(entry, str) or (isinstance(entry, dict) and any(kind in entry for kind in PROVIDER_ORDER))


def resolve_data(dataname: str, data_config: Any, mad_dir: str, mirror_local: str | None = None, *,
                 exists: Callable[[str], bool] = os.path.exists) -> tuple[DataPlan, str]:
    """The data of a model, never an obstacle to its run: ``(plan, problem)`` (the run-context rule).

    A source with a usable provider gives :func:`plan_data`'s plan and ``problem`` "". A source that
    names no provider (the hub's ``{"huggingface": {}}``) gives a plan with no mount, only
    ``MAD_DATANAME`` set, and ``problem`` "" (the script fetches its data itself). A source missing from
    the data config, malformed, or whose providers all fail gives that same mount-less plan and
    ``problem`` ``data <name> is NOT mounted: <why>`` (as upstream logs it): the model runs anyway and
    its metric decides the status; the caller warns and writes ``problem`` into the row's reason.
    """
    entry = data_config.get(dataname) if isinstance(data_config, dict) else None
    if isinstance(entry, dict) and not has_provider(entry):
        return unmounted_plan(dataname, entry), ""
    try:
        return plan_data(dataname, data_config, mad_dir, mirror_local, exists=exists), ""
    except DataError as exc:
        return unmounted_plan(dataname, entry), f"data {dataname} is {NOT_MOUNTED}: {exc}"


def unmounted_plan(dataname: str, entry: Any = None) -> DataPlan:
    """The plan of data that is not mounted: ``MAD_DATANAME`` only, no bind, no command."""
    size = str(entry.get("size", "") or "") if isinstance(entry, dict) else ""
    return DataPlan(dataname=dataname, provider="", datahome="", env={"MAD_DATANAME": dataname}, size=size)


def data_problems(models: Any, data_config: Any, mad_dir: str, mirror_local: str | None = None, *,
                  exists: Callable[[str], bool] = os.path.exists) -> dict[str, str]:
    """``{dataname: problem}`` for the data sources of ``models`` (dicts with ``data``) that will not be
    mounted (see :func:`resolve_data`); one entry per source, so a caller warns once per source."""
    problems: dict[str, str] = {}
    for model in models:
        name = str((model or {}).get("data") or "")
        if name and name not in problems:
            problems[name] = resolve_data(name, data_config, mad_dir, mirror_local, exists=exists)[1]
    return {name: text for name, text in problems.items() if text}


_PLANNERS: dict[str, Callable[..., Any]] = {
    "custom": _custom, "local": _local, "minio": _minio, "nas": _nas, "aws": _aws,
}
