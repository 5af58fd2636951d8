"""build_manifest.json: what the build stage hands to the run stage (and to ROCm madengine's tools).

Input (writing): :class:`Manifest` built by :mod:`madengine.build`. Output: the JSON file, written
atomically. :func:`load_manifest` reads it back (ours, or one written by upstream ROCm madengine) and
validates it; every problem is an :class:`~madengine.errors.InvalidInputError` (exit 4).

Layout (upstream-compatible top-level keys, plus ``manifest_version`` and a few of our own)::

    {
      "manifest_version": 1,
      "built_images": {"<image>": {"docker_image", "dockerfile", "base_docker", "docker_sha",
                                    "build_duration", "build_command", "log_file", "registry_image",
                                    "image_digest", "gpu_vendor", "guest_os", "models", ...}},
      "built_models": {"<image name of the model>": {<model definition>, "docker_image": "<image>"}},
      "context": {...secrets masked...}, "credentials_required": [...], "registry": "...",
      "run_options": {...}, "summary": {...}, "madengine_version", "created_at", "mad_dir"
    }

Every model has its own image name, ``ci-<model, / → _>_<dockerfile stem>``, as in ROCm's madengine: it
is the ``built_models`` key, the ``built_images`` key and the ``docker_image`` of both. Models that share
a Dockerfile (same context and build args) are built once and the one image is tagged once per model, so
their ``built_images`` entries share ``image_id`` and list every model of the build in ``models``. With
``--use-image``/``MAD_CONTAINER_IMAGE`` an entry's ``docker_image`` is that ready image (``prebuilt``).
Manifests of older madengine versions, whose shared models point at the first model's image, still load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from madengine.atomic import write_json_atomic
from madengine.errors import InvalidInputError
from madengine.jsonfile import read_json_document
from madengine.model import Model

MANIFEST_VERSION = 1
#: ``manifest_version`` of a file without one: written by upstream ROCm madengine.
UPSTREAM_VERSION = 0

_REBUILD = ("madengine-cli build --tags TAG "
            "--additional-context '{\"gpu_vendor\": \"AMD\", \"guest_os\": \"UBUNTU\"}'")


@dataclass
class BuiltImage:
    """One ``built_images`` entry: an image that was built (and maybe pushed)."""

    docker_image: str
    dockerfile: str = ""
    base_docker: str = ""
    docker_sha: str = ""
    build_duration: float = 0.0
    build_command: str = ""
    log_file: str = ""
    #: A pullable reference of the pushed image: ``R/<image>@sha256:...`` (None when not pushed).
    registry_image: str | None = None
    #: The pushed image's repo digest, ``sha256:...``.
    image_digest: str | None = None
    #: The tag that was pushed: ``R/<image>:latest`` or ``R/<repository>:<image>``.
    registry_tag: str | None = None
    registry: str | None = None
    gpu_vendor: str = ""
    guest_os: str = ""
    models: list[str] = field(default_factory=list)
    image_id: str = ""
    size: int | None = None
    build_args: list[str] = field(default_factory=list)
    pushed: bool = False
    push_failed: bool = False
    push_error: str | None = None
    #: Keys we don't know (written by another tool): kept and written back unchanged.
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            out[f.name] = getattr(self, f.name)
        out["models"] = list(self.models)
        out["build_args"] = list(self.build_args)
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @classmethod
    def from_dict(cls, key: str, d: Any, *, where: str) -> BuiltImage:
        if not isinstance(d, Mapping):
            raise _bad(where, f"built_images[{key!r}] must be an object, not {_kind(d)}")
        raw = dict(d)
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {}
        for name in known:
            if name in raw:
                kwargs[name] = raw.pop(name)
        kwargs.setdefault("docker_image", key)
        _check_types(kwargs, where, f"built_images[{key!r}]")
        return cls(**kwargs, extra=raw)


@dataclass
class ManifestEntry:
    """One model to run: its ``built_models`` key, the model, and the image it runs in."""

    key: str
    model: Model
    image: BuiltImage


@dataclass
class Manifest:
    built_images: dict[str, BuiltImage] = field(default_factory=dict)
    #: ``built_models`` key → the model definition (after tag parameters).
    built_models: dict[str, Model] = field(default_factory=dict)
    #: ``built_models`` key → the ``built_images`` key of the image it runs in.
    model_images: dict[str, str] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    credentials_required: list[str] = field(default_factory=list)
    registry: str | None = None
    run_options: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    madengine_version: str = ""
    created_at: str = ""
    mad_dir: str = ""
    manifest_version: int = MANIFEST_VERSION
    #: Where it was read from (None for a manifest built in memory).
    path: Path | None = None
    #: Unknown top-level keys (e.g. upstream's ``push_failures``), written back unchanged.
    extra: dict[str, Any] = field(default_factory=dict)

    def entries(self) -> list[ManifestEntry]:
        """Each model once, with its image: what the run stage iterates."""
        out = []
        for key, model in self.built_models.items():
            image_key = self.model_images.get(key, key)
            image = self.built_images.get(image_key)
            if image is not None:
                out.append(ManifestEntry(key, model, image))
        return out

    def to_dict(self) -> dict[str, Any]:
        built_models: dict[str, Any] = {}
        for key, model in self.built_models.items():
            record = model.to_dict()
            image_key = self.model_images.get(key, key)
            image = self.built_images.get(image_key)
            record["docker_image"] = image.docker_image if image else image_key
            built_models[key] = record
        out: dict[str, Any] = {
            "manifest_version": self.manifest_version,
            "built_images": {k: v.to_dict() for k, v in self.built_images.items()},
            "built_models": built_models,
            "context": self.context,
            "credentials_required": list(self.credentials_required),
            "registry": self.registry,
            "run_options": self.run_options,
            "summary": self.summary,
            "madengine_version": self.madengine_version,
            "created_at": self.created_at,
            "mad_dir": self.mad_dir,
        }
        push_failures = [{"image": k, "intended_registry_image": v.registry_tag, "error": v.push_error}
                         for k, v in self.built_images.items() if v.push_failed]
        if push_failures:
            out["push_failures"] = push_failures  # as upstream writes it
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_manifest(path: Path | str, manifest: Manifest) -> None:
    """Write ``manifest`` to ``path`` atomically (readers never see half a file)."""
    write_json_atomic(path, manifest.to_dict())


# ------------------------------------------------------------------------------------------- loading
def load_manifest(path: Path | str) -> Manifest:
    """Read and validate a build manifest (ours or upstream's).

    Raises InvalidInputError (exit 4) when it is missing, not JSON, not a manifest, or written by a
    newer madengine (``manifest_version`` above :data:`MANIFEST_VERSION`).
    """
    file = Path(path)
    where = str(file)
    data = read_json_document(
        file, "Build manifest", option="--manifest-file",
        missing_hint="build first (it writes build_manifest.json), or point --manifest-file at the manifest "
                     "of an earlier build",
        malformed_hint="it was probably truncated or edited by hand: build again to regenerate it",
        example=_REBUILD)
    manifest = manifest_from_dict(data, where=where)
    manifest.path = file
    return manifest


def manifest_from_dict(data: Any, *, where: str = "build manifest") -> Manifest:
    """Validate a decoded manifest and build the :class:`Manifest` (see :func:`load_manifest`)."""
    if not isinstance(data, dict):
        raise _bad(where, f"must be a JSON object, not {_kind(data)}")
    raw = dict(data)
    version = raw.pop("manifest_version", UPSTREAM_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise _bad(where, f"manifest_version must be a non-negative integer, not {version!r}")
    if version > MANIFEST_VERSION:
        raise InvalidInputError(
            f"Build manifest {where} has manifest_version {version}; this madengine reads up to "
            f"{MANIFEST_VERSION}",
            hint="it was written by a newer madengine: upgrade madengine, or rebuild with this one",
            example=_REBUILD)
    if "built_images" not in raw:
        raise _bad(where, "has no 'built_images': it is not a build manifest")
    images_raw = raw.pop("built_images")
    if not isinstance(images_raw, dict):
        raise _bad(where, f"'built_images' must be an object keyed by image name, not {_kind(images_raw)}")
    images = {str(k): BuiltImage.from_dict(str(k), v, where=where) for k, v in images_raw.items()}
    models_raw = raw.pop("built_models", None) or {}
    if not isinstance(models_raw, dict):
        raise _bad(where, f"'built_models' must be an object keyed by image name, not {_kind(models_raw)}")
    models: dict[str, Model] = {}
    model_images: dict[str, str] = {}
    for key, record in models_raw.items():
        if not isinstance(record, dict):
            raise _bad(where, f"built_models[{key!r}] must be an object, not {_kind(record)}")
        record = dict(record)
        image_name = record.pop("docker_image", None)
        image_key = _image_key(str(key), image_name, images)
        if image_key is None:
            raise _bad(where, f"built_models[{key!r}] refers to image {image_name or key!r}, "
                              "which is not in 'built_images'")
        models[str(key)] = Model.from_dict(record, where=f"{where}: built_models[{key!r}]")
        model_images[str(key)] = image_key
    context = raw.pop("context", None) or {}
    if not isinstance(context, dict):
        raise _bad(where, f"'context' must be an object, not {_kind(context)}")
    creds = raw.pop("credentials_required", None) or []
    if not isinstance(creds, list) or not all(isinstance(c, str) for c in creds):
        raise _bad(where, "'credentials_required' must be a list of credential names")
    registry = raw.pop("registry", None)
    if registry is not None and not isinstance(registry, str):
        raise _bad(where, f"'registry' must be a string or null, not {_kind(registry)}")
    run_options = raw.pop("run_options", None) or {}
    summary = raw.pop("summary", None) or {}
    for name, value in (("run_options", run_options), ("summary", summary)):
        if not isinstance(value, dict):
            raise _bad(where, f"'{name}' must be an object, not {_kind(value)}")
    texts = {}
    for name in ("madengine_version", "created_at", "mad_dir"):
        value = raw.pop(name, "")
        if value is not None and not isinstance(value, str):
            raise _bad(where, f"'{name}' must be a string, not {_kind(value)}")
        texts[name] = value or ""
    raw.pop("push_failures", None)  # derived from built_images on write
    return Manifest(built_images=images, built_models=models, model_images=model_images, context=context,
                    credentials_required=list(creds), registry=registry or None, run_options=run_options,
                    summary=summary, manifest_version=version, extra=raw, **texts)


def _image_key(key: str, image_name: Any, images: Mapping[str, BuiltImage]) -> str | None:
    if isinstance(image_name, str) and image_name:
        if image_name in images:
            return image_name
        for name, image in images.items():
            if image.docker_image == image_name:
                return name
        return None
    return key if key in images else None


_TYPES: dict[str, tuple[type, ...]] = {
    "docker_image": (str,), "dockerfile": (str,), "base_docker": (str,), "docker_sha": (str,),
    "build_duration": (int, float), "build_command": (str,), "log_file": (str,),
    "registry_image": (str, type(None)), "image_digest": (str, type(None)),
    "registry_tag": (str, type(None)), "registry": (str, type(None)), "gpu_vendor": (str,),
    "guest_os": (str,), "models": (list,), "image_id": (str,), "size": (int, type(None)),
    "build_args": (list,), "pushed": (bool,), "push_failed": (bool,), "push_error": (str, type(None)),
}


def _check_types(values: Mapping[str, Any], where: str, label: str) -> None:
    for name, value in values.items():
        allowed = _TYPES.get(name)
        if allowed is None:
            continue
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if not ok:
            raise _bad(where, f"{label}.{name} has the wrong type ({_kind(value)})")
        if name == "models" and not all(isinstance(m, str) for m in value):
            raise _bad(where, f"{label}.models must be a list of model names")
    if not values.get("docker_image"):
        raise _bad(where, f"{label}.docker_image must be a non-empty string")


def _bad(where: str, problem: str) -> InvalidInputError:
    return InvalidInputError(f"Build manifest {where} {problem}",
                             hint="regenerate it with `madengine-cli build`", example=_REBUILD)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)
