"""The Model record: one benchmark of a MAD package, validated and normalised.

A raw model object (from ``models.json``, ``scripts/<dir>/models.json`` or a ``get_models_json.py``) is
checked against :data:`MODEL_SCHEMA` (compiled once with fastjsonschema) and turned into a
:class:`Model` by :func:`model_from_raw`. Unknown keys are kept in ``Model.extra`` and passed through.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from madengine.errors import InvalidInputError

log = logging.getLogger(__name__)

SOURCES = ("root", "dir", "dynamic")

_STR = {"type": "string"}
_OPT_STR = {"type": ["string", "null"]}
# anyOf alternatives are ordered most-common-first: fastjsonschema raises (slowly) on each miss.
_STR_OR_LIST = {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}
_BOOL = {"type": "boolean"}
_OBJ = {"type": "object"}

#: JSON schema of one raw model object, as written in a MAD package.
MODEL_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "tags": _STR_OR_LIST,
        "dockerfile": _STR,
        "scripts": _STR,
        "args": _STR,
        "n_gpus": {"anyOf": [{"type": "string", "pattern": r"^\s*(-1|[0-9]+)\s*$"},
                             {"type": "integer", "minimum": -1}]},
        "timeout": {"anyOf": [{"type": "integer", "minimum": -1},
                              {"type": "string", "pattern": r"^\s*(-1|[0-9]+)\s*$"},
                              {"type": "null"}]},
        "multiple_results": _OPT_STR,
        "data": _OPT_STR,
        "cred": _OPT_STR,
        "skip_gpu_arch": _STR_OR_LIST,
        "deprecated": _BOOL,
        "is_deprecated": _BOOL,
        "url": _STR,
        "owner": _STR,
        "training_precision": _STR,
        "additional_docker_run_options": _STR,
        "dockercontext": _OPT_STR,
        # Keys of ROCm's model cards that have no Model field: known (no warning), kept in ``extra``.
        "distributed": _OBJ,
        "env_vars": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "slurm": _OBJ,
        "k8s": _OBJ,
        "kubernetes": _OBJ,
        "deployment": _OPT_STR,
        "nnodes": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^\s*[0-9]+\s*$"}]},
        "nproc_per_node": {"anyOf": [{"type": "integer", "minimum": 1},
                                     {"type": "string", "pattern": r"^\s*[0-9]+\s*$"}]},
        "launcher": _STR,
        "gpu_architecture": _STR,
        "docker_image": _STR,
        "description": _STR,
    },
}

#: Keys of ROCm's cards kept in ``Model.extra`` (and passed through to the manifest) without a warning.
KNOWN_EXTRA_KEYS: frozenset[str] = frozenset({
    "distributed", "env_vars", "slurm", "k8s", "kubernetes", "deployment", "nnodes", "nproc_per_node",
    "launcher", "gpu_architecture", "docker_image", "description"})
#: Keys a raw model object may carry; any other key is warned about (once per key) and kept in ``extra``.
RAW_KEYS: frozenset[str] = frozenset(MODEL_SCHEMA["properties"])
#: Keys that become Model fields.
FIELD_KEYS: frozenset[str] = RAW_KEYS - KNOWN_EXTRA_KEYS
#: Keys madengine itself adds in :meth:`Model.to_dict`; a MAD file may not use them.
RESERVED_KEYS: frozenset[str] = frozenset({"source", "dir", "params", "extra"})

# What each field should look like: the hint and example of a schema error.
_FIELD_HELP: dict[str, tuple[str, str]] = {
    "name": ("every model needs a non-empty string \"name\"", '"name": "my_model"'),
    "tags": ("tags is a list of strings (or one comma-separated string)", '"tags": ["pyt", "fp16"]'),
    "dockerfile": ("dockerfile is a path prefix string: \"docker/x\" stands for docker/x.*Dockerfile",
                   '"dockerfile": "docker/dummy"'),
    "scripts": ("scripts is a path string: a .sh or .py file, or a folder holding run.sh",
                '"scripts": "scripts/dummy/run.sh"'),
    "args": ("args is one string of extra arguments for the script", '"args": "--batch_size 64"'),
    "n_gpus": ("n_gpus is an integer or a string of digits; -1 means all GPUs", '"n_gpus": "1"'),
    "timeout": ("timeout is whole seconds as an integer (-1 for no limit), or null", '"timeout": 3600'),
    "multiple_results": ("multiple_results is the name of the CSV file the script writes",
                         '"multiple_results": "perf.csv"'),
    "data": ("data is the name of an entry of data.json", '"data": "tiny"'),
    "cred": ("cred is the name of an entry of credential.json", '"cred": "example"'),
    "skip_gpu_arch": ("skip_gpu_arch is a list of GPU architectures (or one comma-separated string)",
                      '"skip_gpu_arch": ["gfx908"]'),
    "deprecated": ("deprecated is true or false", '"deprecated": true'),
    "is_deprecated": ("is_deprecated is true or false", '"is_deprecated": true'),
    "url": ("url is a string", '"url": "https://github.com/org/repo"'),
    "owner": ("owner is a string", '"owner": "team@example.com"'),
    "training_precision": ("training_precision is a string", '"training_precision": "fp16"'),
    "additional_docker_run_options": ("additional_docker_run_options is one string of docker run options",
                                      '"additional_docker_run_options": "--shm-size 8g"'),
    "dockercontext": ("dockercontext is a build-context folder relative to the MAD root, or null",
                      '"dockercontext": "docker"'),
    "distributed": ("distributed is an object (launcher settings)", '"distributed": {"launcher": "torchrun"}'),
    "env_vars": ("env_vars maps variable names to string values", '"env_vars": {"MODEL_NAME": "llama"}'),
    "slurm": ("slurm is an object of SLURM settings", '"slurm": {"nodes": 2}'),
    "k8s": ("k8s is an object of Kubernetes settings", '"k8s": {"namespace": "mad"}'),
    "kubernetes": ("kubernetes is an object of Kubernetes settings", '"kubernetes": {"namespace": "mad"}'),
    "nnodes": ("nnodes is a positive integer (or a string of digits)", '"nnodes": 2'),
    "nproc_per_node": ("nproc_per_node is a positive integer (or a string of digits)", '"nproc_per_node": 8'),
}

_validator: Callable[[Any], Any] | None = None
_schema_exc: type[Exception] = Exception

# A hand-written check of the same rules, for the common case of a valid card: discovery of thousands
# of cards must not pay for the general validator (or its import). It may be stricter than the schema,
# never more lenient: whatever it refuses goes to the schema, which has the last word and the message.
_COUNT = re.compile(r"\s*(-1|[0-9]+)\s*").fullmatch
_POSITIVE = re.compile(r"\s*[0-9]+\s*").fullmatch
_SCALARS = (str, int, float, bool)


_NULLABLE = frozenset(k for k, rule in MODEL_SCHEMA["properties"].items()
                      if isinstance(rule.get("type"), list) and "null" in rule["type"]) | {"timeout"}
_PLAIN_STR = frozenset(k for k, rule in MODEL_SCHEMA["properties"].items()
                       if rule.get("type") in ("string", ["string", "null"]) and "pattern" not in rule
                       and "minLength" not in rule) | {"name"}  # name: non-empty, checked first
_LISTS = frozenset({"tags", "skip_gpu_arch"})
_MINIMUM = {"n_gpus": -1, "timeout": -1, "nnodes": 1, "nproc_per_node": 1}
_OBJECTS = frozenset(k for k, rule in MODEL_SCHEMA["properties"].items() if rule == {"type": "object"})
_BOOLS = frozenset({"deprecated", "is_deprecated"})


def _fast_valid(raw: Any) -> bool:
    """True when ``raw`` certainly satisfies :data:`MODEL_SCHEMA` (False: ask the schema)."""
    if type(raw) is not dict:
        return False
    name = raw.get("name")
    if type(name) is not str or not name:
        return False
    for key, value in raw.items():
        kind = type(value)
        if kind is str:
            if key in _PLAIN_STR or key not in RAW_KEYS:
                continue
            low = _MINIMUM.get(key)
            if low is None or (_COUNT if low < 0 else _POSITIVE)(value) is None:
                return False
        elif key not in RAW_KEYS:
            continue
        elif kind is list:
            if key not in _LISTS or not all(type(x) is str for x in value):
                return False
        elif kind is int:
            low = _MINIMUM.get(key)
            if low is None or value < low:
                return False
        elif value is None:
            if key not in _NULLABLE:
                return False
        elif kind is dict:
            if key in _OBJECTS:
                continue
            if key != "env_vars" or not all(type(x) in _SCALARS for x in value.values()):
                return False
        elif kind is bool:
            if key not in _BOOLS:
                return False
        else:
            return False
    return True


def validate_raw(raw: Any, *, where: str, index: int) -> None:
    """Check one raw model object against :data:`MODEL_SCHEMA` (compiled on first use, once per process).

    Raises InvalidInputError naming ``where`` (the file), the model (name or entry index) and the field.
    """
    global _validator, _schema_exc
    if _fast_valid(raw):
        return
    if _validator is None:
        import fastjsonschema

        _schema_exc = fastjsonschema.JsonSchemaValueException
        _validator = fastjsonschema.compile(MODEL_SCHEMA)
    try:
        _validator(raw)
    except _schema_exc as exc:
        raise schema_error(exc, raw, where=where, index=index) from None


@dataclass
class Model:
    """One model of a MAD package, ready for build and run."""

    name: str
    tags: list[str] = field(default_factory=list)
    dockerfile: str = ""
    scripts: str = ""
    args: str = ""
    n_gpus: int = 1
    timeout: int | None = None
    multiple_results: str | None = None
    data: str | None = None
    cred: str | None = None
    skip_gpu_arch: list[str] = field(default_factory=list)
    deprecated: bool = False
    url: str = ""
    owner: str = ""
    training_precision: str = ""
    additional_docker_run_options: str = ""
    dockercontext: str | None = None
    #: Where it came from: "root" (models.json), "dir" (scripts/<dir>/models.json) or "dynamic".
    source: str = "root"
    #: The scripts dir name for "dir" and "dynamic" models.
    dir: str | None = None
    #: The tag parameters (`tag:k=v`) applied to this model.
    params: dict[str, str] = field(default_factory=dict)
    #: Unknown keys of the raw object, passed through unchanged.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def short_name(self) -> str:
        """The name without the ``<dir>/`` prefix (as written in the scripts dir)."""
        if self.dir and self.name.startswith(self.dir + "/"):
            return self.name[len(self.dir) + 1:]
        return self.name

    def to_dict(self) -> dict[str, Any]:
        """Every field plus ``source``, ``dir`` and ``params``; ``extra`` keys merged in at top level."""
        out: dict[str, Any] = {
            "name": self.name,
            "tags": list(self.tags),
            "dockerfile": self.dockerfile,
            "scripts": self.scripts,
            "args": self.args,
            "n_gpus": self.n_gpus,
            "timeout": self.timeout,
            "multiple_results": self.multiple_results,
            "data": self.data,
            "cred": self.cred,
            "skip_gpu_arch": list(self.skip_gpu_arch),
            "deprecated": self.deprecated,
            "url": self.url,
            "owner": self.owner,
            "training_precision": self.training_precision,
            "additional_docker_run_options": self.additional_docker_run_options,
            "dockercontext": self.dockercontext,
            "source": self.source,
            "dir": self.dir,
            "params": dict(self.params),
        }
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "model record") -> Model:
        """Rebuild a Model from :meth:`to_dict` output (e.g. a build manifest entry).

        Validated like a raw object; unknown keys go to ``extra`` without a warning.
        """
        if not isinstance(d, Mapping):
            raise InvalidInputError(f"{where}: a model record must be a JSON object, not {type(d).__name__}")
        raw = dict(d)
        source = raw.pop("source", "root")
        dir_ = raw.pop("dir", None)
        params = raw.pop("params", None) or {}
        extra = raw.pop("extra", None) or {}
        label = f"model {raw.get('name')!r}" if isinstance(raw.get("name"), str) else "model"
        if source not in SOURCES:
            raise InvalidInputError(f"{where}: {label}: field 'source' must be one of {', '.join(SOURCES)}, "
                                    f"not {source!r}")
        if dir_ is not None and not isinstance(dir_, str):
            raise InvalidInputError(f"{where}: {label}: field 'dir' must be a string or null")
        if not isinstance(params, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
            raise InvalidInputError(f"{where}: {label}: field 'params' must map strings to strings")
        if not isinstance(extra, Mapping):
            raise InvalidInputError(f"{where}: {label}: field 'extra' must be an object")
        model = model_from_raw(raw, where=where, index=0, source=source, dir=dir_, warned=None)
        model.params = dict(params)
        for key, value in extra.items():
            model.extra.setdefault(key, value)
        return model


#: Names of the Model dataclass fields, in order.
MODEL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Model))


def as_list(value: Any) -> list[str]:
    """A card's list field as a list: a comma-separated string split, None empty."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return list(value)


def _opt_str(value: Any) -> str | None:
    # "" means "not set" in upstream MAD files (e.g. "multiple_results": "").
    return value if value else None


def schema_error(exc: Any, raw: Any, *, where: str, index: int) -> InvalidInputError:
    """Turn a fastjsonschema error into an InvalidInputError naming file, model and field."""
    name = raw.get("name") if isinstance(raw, dict) else None
    label = f"model {name!r} (entry #{index})" if isinstance(name, str) and name else f"model entry #{index}"
    path = list(getattr(exc, "path", [])[1:])
    if not isinstance(raw, dict):
        return InvalidInputError(
            f"{where}: {label} is a JSON {_json_type(raw)}, not an object",
            hint="each model is a JSON object with at least a \"name\"",
            example='{"name": "my_model", "tags": ["mine"], "dockerfile": "docker/x", "scripts": "run.sh"}')
    if getattr(exc, "rule", None) == "required" or not path:
        field_name = "name"
        problem = "is missing" if "name" not in raw else f"is invalid ({_show(raw.get('name'))})"
    else:
        field_name = str(path[0])
        value = raw.get(field_name)
        problem = f"has an invalid value {_show(value)}"
        if len(path) > 1:
            problem += f" (item {path[1]})"
    hint, example = _FIELD_HELP.get(field_name, ("see the MAD models.json format", '"name": "my_model"'))
    if field_name == "name" and "name" in raw:
        hint = "name must be a non-empty string"
    return InvalidInputError(f"{where}: {label}: field '{field_name}' {problem}", hint=hint, example=example,
                             detail=str(getattr(exc, "message", exc)))


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({_json_type(value)})"


_RELOCATED: dict[tuple[str, str | None], str] = {}  # cards of one folder share their few paths


def relocate_path(value: str, base: str | None) -> str:
    """A path of a MAD file, relative to its folder ``base``, normalised relative to the MAD root."""
    if not value:
        return value
    key = (value, base)
    done = _RELOCATED.get(key)
    if done is None:
        if base is None or value.startswith("/"):
            done = posixpath.normpath(value)
        else:
            done = posixpath.normpath(f"{base}/{value}")
        if len(_RELOCATED) < 100_000:
            _RELOCATED[key] = done
    return done


def warn_key(where: str, key: str, model_name: Any, warned: set[str]) -> None:
    """Say once per discovery (``warned`` holds the keys said) that a card has a key madengine does not
    know (passed through in ``extra``) or reserves (ignored)."""
    warned.add(key)
    if key in RESERVED_KEYS:
        log.warning("%s: key %r is reserved by madengine and ignored (model %r)", where, key, model_name)
    else:
        log.warning("%s: unknown key %r (first on model %r) is passed through unchanged", where, key, model_name)


def unknown_keys(raws: list[Any]) -> list[tuple[str, Any]]:
    """(key, first model name) of every key of ``raws`` that :func:`warn_key` is for, first seen first."""
    seen: dict[str, Any] = {}
    for raw in raws:
        if not FIELD_KEYS.issuperset(raw):
            for key in raw:
                if key not in FIELD_KEYS and key not in KNOWN_EXTRA_KEYS and key not in seen:
                    seen[key] = raw["name"]
    return list(seen.items())


def warn_keys(where: str, keys: list[tuple[str, Any]], warned: set[str]) -> None:
    """:func:`warn_key` for each (key, model name) of :func:`unknown_keys` not said yet: the warnings
    of cards that are not parsed again (a memo, a listing whose models are built from their updates)."""
    for key, model_name in keys:
        if key not in warned:
            warn_key(where, key, model_name, warned)


def model_from_raw(raw: Any, *, where: str, index: int, source: str = "root", dir: str | None = None,
                   warned: set[str] | None = None, relocate: bool = False) -> Model:
    """Validate one raw model object and build the Model.

    ``where`` names the file (or script) for messages; ``index`` is the entry's position there.
    Unknown keys are kept in ``extra``; when ``warned`` is a set they are also logged once per key
    (the set records which keys were already reported: discovery shares one set across all files).
    With ``relocate`` the object is read as written in a MAD file: the name gets the ``<dir>/`` prefix
    and relative ``dockerfile`` and ``scripts`` paths are resolved against ``scripts/<dir>/`` (just
    normalised for root models), ending up relative to the MAD root; ``dockercontext`` is always
    relative to the MAD root (ROCm's rule: a generator's ``dockercontext="."`` is the MAD root).
    """
    validate_raw(raw, where=where, index=index)
    extra: dict[str, Any] = {}
    if not FIELD_KEYS.issuperset(raw):
        for key in raw:
            if key in FIELD_KEYS:
                continue
            if key not in KNOWN_EXTRA_KEYS and warned is not None and key not in warned:
                warn_key(where, key, raw["name"], warned)
            if key not in RESERVED_KEYS:
                extra[key] = raw[key]
    get = raw.get
    n_gpus = get("n_gpus", 1)
    timeout = get("timeout")
    name = raw["name"]
    dockerfile = get("dockerfile") or ""
    scripts = get("scripts") or ""
    dockercontext = get("dockercontext") or None
    if relocate:
        base = None
        if dir is not None:
            name = f"{dir}/{name}"
            base = f"scripts/{dir}"
        dockerfile = relocate_path(dockerfile, base)
        scripts = relocate_path(scripts, base)
        if dockercontext:
            # ROCm's rule: dockercontext is relative to the MAD root, never to the card's folder.
            dockercontext = relocate_path(dockercontext, None)
    tags = get("tags")
    skip = get("skip_gpu_arch")
    # The fields in MODEL_FIELDS order, set directly: the generated __init__ (23 keyword arguments)
    # would be a third of the cost of a card, and discovery builds thousands of them.
    model = _new_model(Model)
    model.__dict__ = {
        "name": name,
        "tags": list(tags) if type(tags) is list else as_list(tags),
        "dockerfile": dockerfile,
        "scripts": scripts,
        "args": get("args") or "",
        "n_gpus": n_gpus if type(n_gpus) is int else int(n_gpus),
        "timeout": timeout if timeout is None or type(timeout) is int else int(timeout),
        "multiple_results": get("multiple_results") or None,
        "data": get("data") or None,
        "cred": get("cred") or None,
        "skip_gpu_arch": list(skip) if type(skip) is list else as_list(skip),
        "deprecated": bool(get("deprecated") or get("is_deprecated")),
        "url": get("url") or "",
        "owner": get("owner") or "",
        "training_precision": get("training_precision") or "",
        "additional_docker_run_options": get("additional_docker_run_options") or "",
        "dockercontext": dockercontext,
        "source": source,
        "dir": dir,
        "params": {},
        "extra": extra,
    }
    return model


_new_model = object.__new__


__all__ = ["MODEL_FIELDS", "MODEL_SCHEMA", "Model", "RAW_KEYS", "model_from_raw", "relocate_path",
           "unknown_keys", "validate_raw", "warn_key", "warn_keys"]
