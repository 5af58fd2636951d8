"""The build stage: selected models → Docker images (pushed if asked) → build_manifest.json.

Input: the models :func:`madengine.discover.discover_models` selected, the validated context and
:class:`BuildOptions`. Output: a :class:`BuildResult` (plain data the CLI renders) and, on disk, the
manifest (:mod:`madengine.manifest`), an optional summary JSON and one
``<model>_<dockerfile stem>.build.live.log`` per image beside the manifest.

Steps: skip deprecated models (unless ``ignore_deprecated``); pick each model's Dockerfiles
(:mod:`madengine.dockerfiles`); work out build args (context ``docker_build_arg``, ``MAD_SECRETS*`` env,
``cred`` fields); build each distinct (Dockerfile, context dir, build args) once, ``jobs`` at a time,
through the Docker SDK with ``network_mode="host"``; tag and push to the registry and record the repo
digest. Failures are data (exit 2 from the summary), never exceptions; only bad input raises.
This module prints nothing: progress goes to the optional ``progress(image, event, text)`` callback.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from ansible_collections.mad.engine.plugins.module_utils._paths import OutsideError, card_problems, inside
from ansible_collections.mad.engine.plugins.module_utils._secrets import MASK, is_secret_name, mask_secrets

from madengine import __version__
from madengine.atomic import write_json_atomic
from madengine.credentials import (
    CredentialError,
    Credentials,
    RegistryLogin,
    is_dockerhub,
    mask_deep,
    mask_text,
    secret_context_values,
)
from madengine.dockerfiles import Candidate, base_image, dockerfile_stem, select_dockerfiles
from madengine.errors import BuildError, ExitCode, InvalidInputError
from madengine.manifest import BuiltImage, Manifest, now_iso
from madengine.model import Model

log = logging.getLogger(__name__)

#: ``progress(image, event, text)``. Events, per image: ``queued`` (text: the model names, ", "-joined,
#: the first one builds it), ``start``, ``log`` (one masked log line), ``pull`` (base image), ``built``
#: (build duration), ``push`` (registry tag), ``pushed`` (digest ref), then one of ``done`` (build
#: duration), ``failed`` (cause) or ``push_failed`` (cause).
ProgressFn = Callable[[str, str, str], None]

LOG_SUFFIX = ".build.live.log"
#: Context keys every manifest holds, with their defaults (upstream's run phase reads them).
CONTEXT_DEFAULTS: dict[str, Any] = {
    "docker_env_vars": {}, "docker_mounts": {}, "docker_build_arg": {}, "docker_gpus": "",
    "gpu_vendor": "", "guest_os": "", "tools": [], "pre_scripts": [], "post_scripts": [],
}
_API_TIMEOUT = 600  # seconds between two chunks of an engine response (pushes of big layers)
_PUSH_NOISE = {"Preparing", "Waiting", "Pushing"}


# ------------------------------------------------------------------------------------------- data
@dataclass
class BuildOptions:
    mad_dir: Path
    context: dict[str, Any] = field(default_factory=dict)
    registry: str | None = None
    clean_docker_cache: bool = False
    manifest_output: Path = Path("build_manifest.json")
    summary_output: Path | None = None
    ignore_deprecated: bool = False
    jobs: int = 1
    #: Context keys filled from this host's detection (the full workflow of ``run``): they choose the
    #: Dockerfiles here but stay out of the manifest, so every run host detects its own GPUs.
    detected_keys: frozenset[str] = frozenset()
    #: Run-time flags given at build time, stored as the manifest's ``run_options`` (see run_options()).
    run_options: dict[str, Any] = field(default_factory=dict)
    #: Overrides ``<mad_dir>/credential.json`` (tests, or a shared credentials file).
    credential_file: Path | None = None
    #: ``--target-archs``: build each image once per GPU architecture (build arg MAD_SYSTEM_GPU_ARCHITECTURE,
    #: image name suffix ``_<arch>``), as ROCm's madengine does.
    target_archs: list[str] = field(default_factory=list)
    #: ``--use-image IMAGE|auto``: build nothing, run every model in IMAGE (auto: the card's
    #: DOCKER_IMAGE_NAME env var). The context key MAD_CONTAINER_IMAGE means the same.
    use_image: str | None = None


@dataclass
class PlannedImage:
    """One docker build: a Dockerfile + build context + build args, and the models that use it."""

    docker_image: str
    dockerfile: Path
    context_dir: Path
    build_args: dict[str, str] = field(repr=False)
    #: Names of build args whose values are hidden in build_command (credentials, MAD_SECRETS).
    secret_args: frozenset[str] = field(default_factory=frozenset)
    candidate: Candidate | None = None
    models: list[Model] = field(default_factory=list)
    #: ``built_models`` key of each model (the image name the model would have on its own).
    model_keys: list[str] = field(default_factory=list)
    log_file: Path = Path()
    #: The ``--target-archs`` architecture this build is for ("" without).
    gpu_architecture: str = ""
    #: A ready image (``--use-image``/``MAD_CONTAINER_IMAGE``): nothing is built or tagged.
    prebuilt: bool = False

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]


@dataclass
class ModelFailure:
    """A model that got no image: no Dockerfile matched, a credential is missing, or its build failed."""

    model: str
    dockerfile: str
    error: str
    log_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"model": self.model, "dockerfile": self.dockerfile, "error": self.error}
        if self.log_file:
            out["log_file"] = self.log_file
        return out


@dataclass
class SkippedModel:
    model: str
    reason: str


@dataclass
class BuildPlan:
    images: list[PlannedImage] = field(default_factory=list)
    failures: list[ModelFailure] = field(default_factory=list)
    skipped: list[SkippedModel] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def docker_builds(self) -> int:
        return sum(1 for p in self.images if not p.prebuilt)


@dataclass
class ImageResult:
    """What happened to one planned image."""

    plan: PlannedImage
    ok: bool = False
    duration: float = 0.0
    error: str | None = None
    built: BuiltImage | None = None
    push_error: str | None = None
    push_hint: str | None = None
    #: The image record of each card's own tag (``model_keys``): the build's tag first.
    built_by_key: dict[str, BuiltImage] = field(default_factory=dict)

    @property
    def pushed(self) -> bool:
        return bool(self.built_by_key) and all(b.pushed for b in self.built_by_key.values())


@dataclass
class BuildResult:
    manifest: Manifest
    manifest_path: Path
    summary: dict[str, Any]
    images: list[ImageResult]
    failures: list[ModelFailure]
    skipped: list[SkippedModel]
    registry: str | None = None
    summary_path: Path | None = None
    wall_time: float = 0.0
    #: Number of docker builds started (shared images count once).
    docker_builds: int = 0

    @property
    def push_failures(self) -> list[ImageResult]:
        return [r for r in self.images if r.ok and r.push_error]

    @property
    def exit_code(self) -> ExitCode:
        """0 when every selected model built (and pushed, if asked); 2 otherwise."""
        if self.failures or self.push_failures:
            return ExitCode.BUILD_FAILURE
        return ExitCode.OK


# ------------------------------------------------------------------------------------------- naming
_INVALID_NAME = re.compile(r"[^a-z0-9._-]")
_SEPARATOR_RUN = re.compile(r"[._-]{2,}")


def image_name(model_name: str, dockerfile: Path | str) -> str:
    """``ci-<model, / → _, lower-case>_<Dockerfile name without .Dockerfile>`` (upstream's scheme).

    Characters Docker refuses in a repository name (upper case, spaces...) become ``_``/lower case;
    upstream would fail the build on them instead.
    """
    name = _INVALID_NAME.sub("_", f"ci-{model_name.replace('/', '_').lower()}_{dockerfile_stem(dockerfile)}".lower())
    # Docker separates a name's letters and digits by one '.', one or two '_', or dashes: nothing else.
    name = _SEPARATOR_RUN.sub(lambda m: m.group(0) if m.group(0) == "__" or set(m.group(0)) == {"-"} else "_", name)
    return name.strip("._-") or "ci-model"


def log_file_name(model_name: str, dockerfile: Path | str) -> str:
    """``<model, / → _>_<dockerfile stem>.build.live.log`` (upstream's name for a build log)."""
    return f"{model_name.replace('/', '_')}_{dockerfile_stem(dockerfile)}{LOG_SUFFIX}"


def _unique(name: str, taken: set[str] | dict[str, Any]) -> str:
    if name not in taken:
        return name
    n = 2
    while f"{name}_{n}" in taken:
        n += 1
    return f"{name}_{n}"


# ------------------------------------------------------------------------------------------- planning
def model_build_args(model: Model, context: Mapping[str, Any],
                     credentials: Credentials) -> tuple[dict[str, str], frozenset[str]]:
    """The build args of ``model`` and the names of those that are secret.

    Later sources win: context ``docker_build_arg``, then ``MAD_SECRETS*`` env vars, then the fields
    of the model's ``cred`` entry (raises CredentialError when it is missing).
    """
    args: dict[str, str] = {str(k): str(v) for k, v in (context.get("docker_build_arg") or {}).items()}
    secret = {k for k in args if is_secret_name(k)}
    env_args = credentials.secret_env_build_args()
    args.update(env_args)
    secret |= set(env_args)
    if model.cred:
        cred_args = credentials.cred_build_args(model.cred)
        args.update(cred_args)
        secret |= set(cred_args)
    return args, frozenset(secret)


DEFAULT_DOCKER_CONTEXT = "docker"


def build_context(mad_dir: Path, model: Model, dockerfile: Path) -> Path:
    """The build context folder: the card's ``dockercontext`` (relative to the MAD root), else ``./docker``.

    ROCm's madengine defaults to ``./docker`` of the MAD root; a package without that folder builds
    in the Dockerfile's own folder.
    """
    if model.dockercontext:
        context_dir = Path(model.dockercontext)
        return (context_dir if context_dir.is_absolute() else mad_dir / context_dir).resolve()
    default = mad_dir / DEFAULT_DOCKER_CONTEXT
    return default.resolve() if default.is_dir() else dockerfile.parent


#: The build arg ROCm's madengine sets per ``--target-archs`` architecture.
ARCH_BUILD_ARG = "MAD_SYSTEM_GPU_ARCHITECTURE"
#: Dockerfile variables that list the architectures an image supports (ROCm's check of --target-archs).
_ARCH_LIST_VARS = ("PYTORCH_ROCM_ARCH", "GPU_TARGETS", "GPU_ARCHS")
_ARCH_DECL = re.compile(r"^\s*(?:ARG|ENV)\s+(" + "|".join(_ARCH_LIST_VARS) + r")[=\s]+[\"']?([^\s\"']+)",
                        re.IGNORECASE | re.MULTILINE)
#: The context key that names a ready image to run instead of building (MAD docs).
CONTAINER_IMAGE_KEY = "MAD_CONTAINER_IMAGE"
AUTO_IMAGE = "auto"
#: The card env var ``--use-image auto`` reads.
IMAGE_ENV_VAR = "DOCKER_IMAGE_NAME"
#: Vendor names a Dockerfile's file name may carry (``x.ubuntu.amd.Dockerfile``).
_VENDOR_WORDS = {"AMD": ("amd", "rocm"), "NVIDIA": ("nvidia", "cuda")}


def arch_problem(dockerfile: Path, arch: str) -> str | None:
    """Why ``dockerfile`` cannot be built for ``arch`` (ROCm's rule: a GPU_TARGETS/PYTORCH_ROCM_ARCH/
    GPU_ARCHS list in it must hold the architecture), or None."""
    try:
        text = dockerfile.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for match in _ARCH_DECL.finditer(text):
        values = [v.strip().lower() for v in re.split(r"[;,]", match.group(2)) if v.strip()]
        if values and arch.lower() not in values:
            return (f"--target-archs {arch}: {dockerfile.name} builds only for {match.group(1)}="
                    f"{';'.join(values)}")
    return None


def prebuilt_image(options: BuildOptions) -> str | None:
    """The ready image every model runs in (``--use-image``, else the context's MAD_CONTAINER_IMAGE)."""
    value = options.use_image or options.context.get(CONTAINER_IMAGE_KEY)
    return str(value).strip() or None if value else None


def _plan_prebuilt(plan: BuildPlan, model: Model, image: str, taken_keys: set[str]) -> None:
    if image == AUTO_IMAGE:
        env_vars = model.extra.get("env_vars") or {}
        found = env_vars.get(IMAGE_ENV_VAR) if isinstance(env_vars, Mapping) else None
        if not found:
            plan.failures.append(ModelFailure(
                model.name, model.dockerfile,
                f"--use-image auto: the card has no env_vars.{IMAGE_ENV_VAR} naming its image "
                f"(give --use-image IMAGE instead)"))
            return
        image = str(found)
    stem = Path(model.dockerfile).name if model.dockerfile else "image"
    key = _unique(image_name(model.name, stem), taken_keys)
    taken_keys.add(key)
    planned = PlannedImage(docker_image=image, dockerfile=Path(), context_dir=Path(), build_args={},
                           prebuilt=True, models=[model], model_keys=[key])
    plan.images.append(planned)


def _selection_warnings(plan: BuildPlan, model: Model, pattern: str, selected: list[Candidate],
                        context: Mapping[str, Any]) -> None:
    if len(selected) > 1:
        plan.warnings.append(
            f"{model.name}: Dockerfile prefix {model.dockerfile!r} ({pattern}) matches {len(selected)} files "
            f"({', '.join(c.path.name for c in selected)}): the card is built and run {len(selected)} times; "
            "add a # CONTEXT header to each, or make the prefix longer")
    vendor = str(context.get("gpu_vendor") or "").upper()
    words = _VENDOR_WORDS.get(vendor)
    if not words:
        return
    for cand in selected:
        parts = cand.path.name.lower().split(".")
        if cand.header is None and not any(w in parts for w in words):
            plan.warnings.append(
                f"{model.name}: {cand.path.name} has no # CONTEXT header and its name does not say "
                f"{vendor}: it is chosen for gpu_vendor {vendor} anyway")


def plan_builds(models: list[Model], options: BuildOptions, credentials: Credentials) -> BuildPlan:
    """Decide what to build, without touching Docker.

    Deprecated models are skipped unless ``options.ignore_deprecated``. Each remaining model gets one
    image per selected Dockerfile (and per ``--target-archs`` architecture); models resolving to the
    same Dockerfile, build context and build args share one build, tagged once per model with the
    model's own name (``model_keys``). With ``--use-image``/``MAD_CONTAINER_IMAGE`` nothing is built.
    Warnings (a prefix matching several Dockerfiles, a header-less Dockerfile chosen for a vendor it
    does not name) go to ``plan.warnings``.
    """
    plan = BuildPlan()
    mad_dir = options.mad_dir
    prebuilt = prebuilt_image(options)
    archs: list[str] = list(options.target_archs) or [""]
    given_arch = (options.context.get("docker_build_arg") or {}).get(ARCH_BUILD_ARG)
    if options.target_archs and given_arch:
        # ROCm's rule: a context MAD_SYSTEM_GPU_ARCHITECTURE turns --target-archs off.
        plan.warnings.append(f"docker_build_arg {ARCH_BUILD_ARG}={given_arch} is in the context: "
                             f"--target-archs {','.join(options.target_archs)} is ignored")
        archs = [""]
    by_key: dict[tuple[Any, ...], PlannedImage] = {}
    taken_images: set[str] = set()
    taken_keys: set[str] = set()
    log_dir = Path(options.manifest_output).absolute().parent
    for model in models:
        if model.deprecated and not options.ignore_deprecated:
            plan.skipped.append(SkippedModel(model.name, "deprecated (use --ignore-deprecated to build it)"))
            continue
        if prebuilt is not None:
            _plan_prebuilt(plan, model, prebuilt, taken_keys)
            continue
        if not model.dockerfile:
            plan.failures.append(ModelFailure(model.name, "", "the model has no \"dockerfile\" prefix"))
            continue
        selection = select_dockerfiles(mad_dir, model.dockerfile, options.context)
        if not selection.candidates:
            plan.failures.append(ModelFailure(
                model.name, model.dockerfile,
                f"no Dockerfile matches {selection.pattern} (in {mad_dir})"))
            continue
        if not selection.selected:
            ctx = {k: options.context.get(k) for k in sorted({k for c in selection.candidates
                                                                for k in (c.header or {})})}
            plan.failures.append(ModelFailure(
                model.name, model.dockerfile,
                f"no Dockerfile of {selection.pattern} matches the context {json.dumps(ctx)}; "
                f"candidates:\n{selection.describe()}"))
            continue
        # The Dockerfile and the build context come from the package only (issue 16: hostile cards).
        problems = card_problems(model.to_dict(), str(mad_dir), ("dockerfile", "dockercontext"))
        problems += [f"model {model.name}: dockerfile {c.path.name}: {exc}" for c in selection.selected
                     for exc in _outside(mad_dir, c.path)]
        if problems:
            plan.failures.append(ModelFailure(model.name, model.dockerfile, "; ".join(problems)))
            continue
        log.debug("%s: %s selects %s of %s", model.name, selection.pattern,
                  [c.path.name for c in selection.selected], [c.path.name for c in selection.candidates])
        _selection_warnings(plan, model, selection.pattern, selection.selected, options.context)
        try:
            args, secret_args = model_build_args(model, options.context, credentials)
        except CredentialError as exc:
            plan.failures.append(ModelFailure(model.name, model.dockerfile, str(exc)))
            continue
        for cand in selection.selected:
            dockerfile = cand.path.resolve()
            context_dir = build_context(mad_dir, model, dockerfile)
            for arch in archs:
                arch_args = dict(args)
                own_name = image_name(model.name, dockerfile)
                if arch:
                    problem = arch_problem(dockerfile, arch)
                    if problem:
                        plan.failures.append(ModelFailure(model.name, _rel(dockerfile, mad_dir), problem))
                        continue
                    arch_args[ARCH_BUILD_ARG] = arch
                    own_name = f"{own_name}_{_INVALID_NAME.sub('_', arch.lower())}"
                key = (str(dockerfile), str(context_dir), tuple(sorted(arch_args.items())))
                planned = by_key.get(key)
                if planned is None:
                    name = _unique(own_name, taken_images | taken_keys)
                    if name != own_name:
                        log.warning("image name %s is already used by another build; using %s", own_name, name)
                    log_name = log_file_name(model.name, dockerfile)
                    if arch:
                        log_name = log_name.replace(LOG_SUFFIX, f"_{arch}{LOG_SUFFIX}")
                    planned = PlannedImage(docker_image=name, dockerfile=dockerfile, context_dir=context_dir,
                                           build_args=arch_args, secret_args=secret_args, candidate=cand,
                                           log_file=log_dir / log_name, gpu_architecture=arch)
                    by_key[key] = planned
                    taken_images.add(name)
                    plan.images.append(planned)
                else:
                    log.debug("%s shares the build of %s (same Dockerfile, context and build args)", model.name,
                              planned.docker_image)
                model_key = _unique(own_name, taken_keys | (taken_images - {planned.docker_image}))
                taken_keys.add(model_key)
                planned.models.append(model)
                planned.model_keys.append(model_key)
    return plan


def _outside(mad_dir: Path, path: Path) -> list[str]:
    try:
        inside(str(mad_dir), str(path), "it")
    except OutsideError as exc:
        return [str(exc)]
    return []


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return str(path)


def build_command(plan: PlannedImage, mad_dir: Path, *, nocache: bool, pull: bool) -> str:
    """An equivalent ``docker build`` line for humans (run in the MAD dir), secret values masked."""
    parts = ["docker", "build", "--network", "host"]
    if nocache:
        parts.append("--no-cache")
    if pull:
        parts.append("--pull")
    parts += ["-t", plan.docker_image, "-f", _rel(plan.dockerfile, mad_dir)]
    for name, value in plan.build_args.items():
        shown = MASK if name in plan.secret_args else value
        parts += ["--build-arg", f"{name}={shown}"]
    parts.append(_rel(plan.context_dir, mad_dir))
    return " ".join(shlex.quote(p) for p in parts)


def plan_summary(plan: BuildPlan, options: BuildOptions, models: list[Model]) -> dict[str, Any]:
    """``build --dry-run --json``: what a build would do, secret build-arg values masked."""
    mad_dir = options.mad_dir
    images = []
    for planned in plan.images:
        entry: dict[str, Any] = {
            "docker_image": planned.docker_image,
            "tags": list(planned.model_keys),
            "models": planned.model_names,
            "prebuilt": planned.prebuilt,
        }
        if not planned.prebuilt:
            entry.update({
                "dockerfile": _rel(planned.dockerfile, mad_dir),
                "context": _rel(planned.context_dir, mad_dir),
                "build_args": {k: MASK if k in planned.secret_args else v for k, v in planned.build_args.items()},
                "gpu_architecture": planned.gpu_architecture or None,
                "build_command": build_command(planned, mad_dir, nocache=options.clean_docker_cache, pull=False),
            })
        images.append(entry)
    return {
        "mad_dir": str(mad_dir),
        "cards": len(models),
        "docker_builds": plan.docker_builds,
        "images": images,
        "failures": [f.to_dict() for f in plan.failures],
        "skipped": [{"model": s.model, "reason": s.reason} for s in plan.skipped],
        "warnings": list(plan.warnings),
    }


def dry_run(models: list[Model], options: BuildOptions) -> tuple[BuildPlan, dict[str, Any]]:
    """The plan of :func:`build_models` without Docker: no build, no manifest written."""
    options.mad_dir = Path(options.mad_dir).absolute()
    if prebuilt_image(options) and options.registry:
        raise InvalidInputError("--use-image (or MAD_CONTAINER_IMAGE) and --registry do not go together",
                                hint="--use-image runs a ready image and builds nothing to push; drop one of them")
    credentials = Credentials.load(options.mad_dir, path=options.credential_file)
    plan = plan_builds(models, options, credentials)
    secrets = credentials.secret_values(secret_context_values(options.context))
    return plan, mask_deep(plan_summary(plan, options, models), secrets)


# ------------------------------------------------------------------------------------------- run options
def run_options(mad_dir: Path, *, data_config: Path | str | None, tools_config: Path | str | None,
                force_mirror_local: Path | str | None, disable_skip_gpu_arch: bool, sys_env_details: bool,
                output: Path | str, data_config_given: bool = True,
                tools_config_given: bool = True) -> dict[str, Any]:
    """The run-time flags given at build time, checked now so that a typo fails the build (exit 4).

    A relative data/tools config is looked up in the current directory, then in the MAD dir; a given
    file that is missing or malformed is InvalidInputError; an absent default is recorded as null.
    """
    return {
        "data_config": _config_file(mad_dir, data_config, "--data-config", data_config_given),
        "tools_config": _config_file(mad_dir, tools_config, "--tools-config", tools_config_given),
        "force_mirror_local": str(Path(force_mirror_local).absolute()) if force_mirror_local else None,
        "disable_skip_gpu_arch": bool(disable_skip_gpu_arch),
        "skip_gpu_arch": not disable_skip_gpu_arch,
        "sys_env_details": bool(sys_env_details),
        "output": str(output),
    }


def _config_file(mad_dir: Path, value: Path | str | None, option: str, given: bool) -> str | None:
    if value is None or str(value) == "":
        return None
    path = Path(value).expanduser()
    found = None
    for cand in ([path] if path.is_absolute() else [Path.cwd() / path, mad_dir / path]):
        if cand.is_file():
            found = cand.resolve()
            break
    if found is None:
        if given:
            raise InvalidInputError(f"{option} file not found: {value}",
                                    hint=f"relative paths are looked up in the current directory, then in "
                                         f"the MAD package ({mad_dir})")
        return None
    try:
        json.loads(found.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{option} file {found} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{option} file {found}: malformed JSON at line {exc.lineno}, "
                                f"column {exc.colno}: {exc.msg}") from None
    return str(found)


# ------------------------------------------------------------------------------------------- docker
def connect(*, timeout: int = _API_TIMEOUT, version: str | None = None) -> Any:
    """A Docker SDK client for ``DOCKER_HOST`` (or the default socket); BuildError if none answers."""
    import docker

    try:
        return docker.from_env(timeout=timeout, version=version)
    except docker.errors.DockerException as exc:
        host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise BuildError(f"Cannot reach the Docker engine at {host} ({_engine_cause(str(exc))})",
                         hint="start dockerd (bash tests/infra/up.sh on a test machine) or set DOCKER_HOST",
                         detail=str(exc)) from None


def _engine_cause(text: str) -> str:
    low = text.lower()
    for needle, cause in (("no such file", "no such socket"), ("connection refused", "connection refused"),
                          ("permission denied", "permission denied"), ("timed out", "timed out")):
        if needle in low:
            return cause
    return _short(text, 120)


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0].strip() if text else text


_DIAL_HOST = re.compile(r"dial tcp ((?:\[[^\]]*\]|[0-9A-Za-z.\-]+)(?::\d+)?)")


def explain_registry_error(message: str, registry: str, key: str) -> tuple[str, str | None, bool]:
    """An engine's push/login error → (one-line cause, suggestion, registry unreachable?)."""
    text = " ".join(message.split())
    low = text.lower()
    host_match = _DIAL_HOST.search(text)
    host = host_match.group(1) if host_match else registry
    if "connection refused" in low:
        return (f"connection refused at {host}",
                f"is a registry running at {registry}? Start it, fix --registry, or build without "
                "--registry (images stay local)", True)
    if "no such host" in low or "name resolution" in low or "server misbehaving" in low:
        return (f"no such host: {host}", f"check the registry name {registry!r} in --registry", True)
    if "timeout" in low or "timed out" in low or "no route to host" in low or "network is unreachable" in low:
        return (f"timed out connecting to {host}",
                f"{registry} does not answer from the Docker engine's host; check the address and network",
                True)
    if "http response to https client" in low:
        return (f"{registry} answers plain HTTP but the engine expects HTTPS",
                f"add {registry} to the engine's insecure-registries (daemon.json)", True)
    if "unauthorized" in low or "authentication required" in low or "incorrect username or password" in low \
            or "no basic auth credentials" in low or "denied" in low:
        return (f"authentication failed at {registry}: {_short(text)}",
                f"put credentials for {registry} in credential.json (key \"{key}\": "
                "{\"username\": ..., \"password\": ...}) or set MAD_REGISTRY_USER and MAD_REGISTRY_PASSWORD",
                False)
    return _short(text), None, False


def _short(text: str, limit: int = 300) -> str:
    line = _first_line(text)
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _LineLog:
    """The per-image log file: complete lines only, each masked before it is written."""

    def __init__(self, fh: IO[str], secrets: frozenset[str], on_line: Callable[[str], None]) -> None:
        self.fh, self.secrets, self.on_line = fh, secrets, on_line
        self.pending = ""

    def write(self, text: str) -> None:
        text = self.pending + text.replace("\r\n", "\n").replace("\r", "\n")
        *lines, self.pending = text.split("\n")
        for line in lines:
            self._emit(line)

    def line(self, text: str) -> None:
        self.flush()
        for line in text.split("\n"):
            self._emit(line)

    def flush(self) -> None:
        if self.pending:
            line, self.pending = self.pending, ""
            self._emit(line)

    def _emit(self, line: str) -> None:
        line = mask_text(line, self.secrets)
        self.fh.write(line + "\n")
        self.fh.flush()
        if line.strip():
            self.on_line(line.rstrip())


class _Builder:
    """Runs the plan against one engine: builds, pushes, and keeps results in plan order."""

    def __init__(self, options: BuildOptions, plan: BuildPlan, credentials: Credentials,
                 secrets: frozenset[str], progress: ProgressFn | None) -> None:
        self.options = options
        self.plan = plan
        self.credentials = credentials
        self.secrets = secrets
        self.progress = progress or (lambda image, event, text: None)
        self.client: Any = None
        self.api_version: str | None = None
        self.login: RegistryLogin | None = None
        self.login_error: tuple[str, str | None] | None = None
        self._registry_down: tuple[str, str | None] | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._clients: list[Any] = []
        self.docker_builds = 0

    # -- clients: one per worker thread (requests sessions are not meant to be shared across threads)
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = connect(version=self.api_version)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()

    def start(self) -> None:
        self.client = connect()
        self.api_version = self.client.api.api_version
        self._local.client = self.client
        self._clients.append(self.client)
        registry = self.options.registry
        if registry:
            self.login = self.credentials.registry_login(registry)
            if self.login.has_login:
                try:
                    self.client.login(username=self.login.username, password=self.login.password,
                                      registry=self._server(registry), reauth=True)
                except Exception as exc:  # noqa: BLE001 - recorded on every image; others still build
                    cause, hint, _ = explain_registry_error(
                        mask_text(_api_message(exc), self.secrets), registry, self.login.key)
                    self.login_error = (f"login to {registry} failed: {cause}", hint)

    @staticmethod
    def _server(registry: str) -> str | None:
        return None if is_dockerhub(registry) else registry

    def registry_ref(self, image: str) -> tuple[str, str]:
        """(repository, tag) to push: ``R/<image>:latest`` or ``R/<repository>:<image>``."""
        registry = self.options.registry or ""
        repo = self.login.repository if self.login else None
        if is_dockerhub(registry):
            return (repo, image) if repo else (f"docker.io/{image}", "latest")
        registry = registry.rstrip("/")
        if repo:
            return f"{registry}/{repo}", image
        return f"{registry}/{image}", "latest"

    # -- one image
    def build_one(self, planned: PlannedImage) -> ImageResult:
        image = planned.docker_image
        result = ImageResult(planned)
        planned.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(planned.log_file, "w", encoding="utf-8", buffering=1) as fh:
            out = _LineLog(fh, self.secrets, lambda line: self.progress(image, "log", line))
            try:
                self._build(planned, result, out)
            except Exception as exc:  # noqa: BLE001 - one image's failure must not stop the others
                message = mask_text(_api_message(exc), self.secrets)
                out.line(f"❌ {type(exc).__name__}: {message}")
                result.ok = False
                result.error = _short(message)
            finally:
                out.flush()
        if not result.ok:
            self.progress(image, "failed", result.error or "build failed")
        elif result.push_error:
            self.progress(image, "push_failed", result.push_error)
        else:
            self.progress(image, "done", f"{result.duration:.2f}s")
        return result

    def _build(self, planned: PlannedImage, result: ImageResult, out: _LineLog) -> None:
        client = self._client()
        api = client.api
        options = self.options
        image = planned.docker_image
        text = planned.dockerfile.read_text(encoding="utf-8", errors="replace")
        base = base_image(text, planned.build_args)
        pull = False
        if options.clean_docker_cache and base:
            pull = self._should_pull(api, base, out)
        command = build_command(planned, options.mad_dir, nocache=options.clean_docker_cache, pull=pull)
        self.progress(image, "start", command)
        out.line(f"# madengine {__version__}: building {image} for {', '.join(planned.model_names)}")
        out.line(f"$ {command}")
        with self._lock:
            self.docker_builds += 1
        start = time.monotonic()
        if pull:
            self._pull_base(api, base, out, image)
        image_id = None
        error = None
        stream = api.build(path=str(planned.context_dir), dockerfile=str(planned.dockerfile), tag=image,
                           buildargs=planned.build_args, network_mode="host",
                           nocache=options.clean_docker_cache, pull=False, rm=True, forcerm=True,
                           decode=True)
        for chunk in stream:
            if "stream" in chunk:
                out.write(chunk["stream"])
            elif "error" in chunk:
                error = chunk.get("error") or json.dumps(chunk.get("errorDetail"))
                out.line(f"ERROR: {error}")
            elif "status" in chunk:  # a base image pulled by FROM
                if chunk.get("id") and chunk["status"] in ("Downloading", "Extracting"):
                    continue
                out.line(" ".join(str(chunk[k]) for k in ("id", "status") if chunk.get(k)))
            elif isinstance(chunk.get("aux"), dict) and chunk["aux"].get("ID"):
                image_id = chunk["aux"]["ID"]
        out.flush()
        result.duration = time.monotonic() - start
        if error:
            result.ok = False
            result.error = _short(mask_text(error, self.secrets))
            out.line(f"❌ build failed after {result.duration:.1f}s")
            return
        info = api.inspect_image(image)
        image_id = info.get("Id") or image_id or ""
        out.line(f"⏱️ Build Duration: {result.duration:.2f} seconds")
        out.line(f"🏷️ MAD_CONTAINER_IMAGE is {image}")
        self.progress(image, "built", f"{result.duration:.2f}s")
        ctx = options.context
        built = BuiltImage(
            docker_image=image, dockerfile=_rel(planned.dockerfile, options.mad_dir), base_docker=base,
            docker_sha=self._base_sha(api, base), build_duration=round(result.duration, 3),
            build_command=command, log_file=planned.log_file.name, registry=options.registry,
            gpu_vendor=str(ctx.get("gpu_vendor") or ""), guest_os=str(ctx.get("guest_os") or ""),
            models=planned.model_names, image_id=image_id, size=info.get("Size"),
            build_args=sorted(planned.build_args))
        if planned.gpu_architecture:
            built.extra["gpu_architecture"] = planned.gpu_architecture
        result.ok = True
        result.built = built
        result.built_by_key = {image: built}
        # One build, one tag per card (ROCm names every card's image after the card): a tag is free.
        for key in planned.model_keys:
            if key == image:
                continue
            out.line(f"$ docker tag {image} {key}")
            api.tag(image, key, tag="latest", force=True)
            result.built_by_key[key] = replace(built, docker_image=key, extra=dict(built.extra))
        if options.registry:
            for key, each in result.built_by_key.items():
                self._push(api, key, each, result, out)

    def _should_pull(self, api: Any, base: str, out: _LineLog) -> bool:
        """Pull the base only where a registry has it: an image made locally (no repo digest) is kept."""
        import docker

        try:
            info = api.inspect_image(base)
        except docker.errors.ImageNotFound:
            return True
        if info.get("RepoDigests"):
            return True
        out.line(f"# base {base} exists only locally (no registry digest): not pulled")
        return False

    def _pull_base(self, api: Any, base: str, out: _LineLog, image: str) -> None:
        from docker.utils import parse_repository_tag

        self.progress(image, "pull", base)
        out.line(f"$ docker pull {base}")
        repo, tag = parse_repository_tag(base)
        auth = None
        if self.login and self.login.has_login and self.options.registry \
                and base.startswith(self.options.registry.rstrip("/") + "/"):
            auth = self.login.auth_config()
        try:
            for chunk in api.pull(repo, tag=tag or "latest", stream=True, decode=True, auth_config=auth):
                if "error" in chunk:
                    raise RuntimeError(chunk["error"])
                if chunk.get("status") and chunk["status"] not in ("Downloading", "Extracting", "Waiting"):
                    out.line(" ".join(str(chunk[k]) for k in ("id", "status") if chunk.get(k)))
        except Exception as exc:  # noqa: BLE001 - a local copy may still do; the build reports if not
            out.line(f"# could not pull {base}: {mask_text(_short(_api_message(exc)), self.secrets)}; "
                     "building with the local copy")

    @staticmethod
    def _base_sha(api: Any, base: str) -> str:
        if not base:
            return ""
        try:
            info = api.inspect_image(base)
        except Exception:  # noqa: BLE001 - informational only
            return ""
        digests = info.get("RepoDigests") or []
        if digests:
            return str(digests[0]).rpartition("@")[2]
        return str(info.get("Id") or "")

    def _push(self, api: Any, local: str, built: BuiltImage, result: ImageResult, out: _LineLog) -> None:
        """Push the local tag ``local`` (``built`` records the outcome; a failure also marks ``result``)."""
        registry = self.options.registry or ""
        repo, tag = self.registry_ref(local)
        built.registry_tag = f"{repo}:{tag}"
        key = self.login.key if self.login else registry

        def fail(cause: str, hint: str | None) -> None:
            built.push_failed, built.push_error = True, cause
            if result.push_error is None:
                result.push_error, result.push_hint = cause, hint
            out.line(f"❌ push of {built.registry_tag} failed: {cause}")

        if self.login_error:
            fail(*self.login_error)
            return
        with self._lock:
            down = self._registry_down
        if down:
            fail(*down)
            return
        self.progress(local, "push", built.registry_tag)
        out.line(f"$ docker tag {local} {built.registry_tag}")
        out.line(f"$ docker push {built.registry_tag}")
        digest = None
        try:
            api.tag(local, repo, tag=tag, force=True)
            auth = self.login.auth_config() if self.login else None
            for chunk in api.push(repo, tag=tag, stream=True, decode=True, auth_config=auth):
                if "error" in chunk:
                    raise RuntimeError(chunk.get("error") or json.dumps(chunk.get("errorDetail")))
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("Digest"):
                    digest = aux["Digest"]
                status = chunk.get("status")
                if status and status not in _PUSH_NOISE:
                    out.line(" ".join(str(chunk[k]) for k in ("id", "status") if chunk.get(k)))
            if not digest:  # older engines: the digest is only in the image's RepoDigests
                digest = _repo_digest(api.inspect_image(local), repo)
        except Exception as exc:  # noqa: BLE001 - recorded as push_failed; other images go on
            cause, hint, unreachable = explain_registry_error(
                mask_text(_api_message(exc), self.secrets), registry, key)
            if unreachable:
                with self._lock:
                    self._registry_down = self._registry_down or (cause, hint)
            fail(cause, hint)
            return
        if not digest:
            fail("the registry returned no digest for the pushed image", None)
            return
        built.pushed = True
        built.image_digest = digest
        built.registry_image = f"{repo}@{digest}"
        out.line(f"✅ pushed {built.registry_tag} ({built.registry_image})")
        self.progress(local, "pushed", built.registry_image)


def _repo_digest(info: Mapping[str, Any], repo: str) -> str | None:
    for ref in info.get("RepoDigests") or []:
        name, _, digest = str(ref).partition("@")
        if name == repo or name.endswith("/" + repo):
            return digest
    return None


def _api_message(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation)
    return str(exc) or type(exc).__name__


# ------------------------------------------------------------------------------------------- entry point
def build_models(models: list[Model], options: BuildOptions, *,
                 progress: ProgressFn | None = None) -> BuildResult:
    """Build (and push) the images of ``models``; write the manifest (always) and the summary.

    Raises InvalidInputError for a malformed credential.json and BuildError when no Docker engine
    answers; every per-model problem is recorded in the result instead (``exit_code`` 2).
    """
    wall_start = time.monotonic()
    options.mad_dir = Path(options.mad_dir).absolute()
    options.manifest_output = Path(options.manifest_output)
    if prebuilt_image(options) and options.registry:
        raise InvalidInputError("--use-image (or MAD_CONTAINER_IMAGE) and --registry do not go together",
                                hint="--use-image runs a ready image and builds nothing to push; drop one of them")
    credentials = Credentials.load(options.mad_dir, path=options.credential_file)
    plan = plan_builds(models, options, credentials)
    for warning in plan.warnings:
        log.warning("%s", warning)
    secrets = credentials.secret_values(secret_context_values(options.context))
    builder = _Builder(options, plan, credentials, secrets, progress)
    results: list[ImageResult] = [_prebuilt_result(p, options) for p in plan.images if p.prebuilt]
    to_build = [p for p in plan.images if not p.prebuilt]
    if to_build:
        builder.start()
        for planned in to_build:
            builder.progress(planned.docker_image, "queued", ", ".join(planned.model_names))
        jobs = max(1, int(options.jobs or 1))
        try:
            if jobs == 1:
                for planned in to_build:
                    results.append(builder.build_one(planned))
            else:
                with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="mad-build") as pool:
                    futures = [pool.submit(builder.build_one, planned) for planned in to_build]
                    results += [f.result() for f in futures]
        except KeyboardInterrupt:
            # Keep what finished: the manifest of an interrupted build lists the images that exist.
            _finish(options, plan, results, credentials, secrets, builder, wall_start)
            raise
        finally:
            builder.close()
    return _finish(options, plan, results, credentials, secrets, builder, wall_start)


def _prebuilt_result(planned: PlannedImage, options: BuildOptions) -> ImageResult:
    """A ready image: recorded like a built one (rows and runs name it), nothing built or tagged."""
    ctx = options.context
    built = BuiltImage(docker_image=planned.docker_image, base_docker=planned.docker_image,
                       gpu_vendor=str(ctx.get("gpu_vendor") or ""), guest_os=str(ctx.get("guest_os") or ""),
                       models=planned.model_names, extra={"prebuilt": True})
    return ImageResult(planned, ok=True, built=built,
                       built_by_key={key: replace(built, extra=dict(built.extra)) for key in planned.model_keys})


def _finish(options: BuildOptions, plan: BuildPlan, results: list[ImageResult], credentials: Credentials,
            secrets: frozenset[str], builder: _Builder, wall_start: float) -> BuildResult:
    failures = list(plan.failures)
    manifest = Manifest(registry=options.registry, madengine_version=__version__, created_at=now_iso(),
                        mad_dir=str(options.mad_dir))
    for res in results:
        planned = res.plan
        if not res.ok or res.built is None:
            for model in planned.models:
                failures.append(ModelFailure(model.name, _rel(planned.dockerfile, options.mad_dir),
                                             res.error or "build failed", str(planned.log_file)))
            continue
        for key, model in zip(planned.model_keys, planned.models, strict=True):
            manifest.built_images[key] = res.built_by_key.get(key, res.built)
            manifest.built_models[key] = model
            manifest.model_images[key] = key
    built_models = list(manifest.built_models.values())
    manifest.credentials_required = sorted({m.cred for m in built_models if m.cred})
    context = {**CONTEXT_DEFAULTS,
               **{k: v for k, v in options.context.items() if k not in options.detected_keys}}
    manifest.context = mask_deep(mask_secrets(context), secrets)
    manifest.run_options = mask_deep(dict(options.run_options), secrets)
    wall_time = time.monotonic() - wall_start
    summary = build_summary(results, failures, plan.skipped, wall_time)
    manifest.summary = summary
    manifest_path = options.manifest_output
    # Last line of defence: no secret value leaves this process in the manifest, whatever its source.
    data = mask_deep(manifest.to_dict(), secrets)
    write_json_atomic(manifest_path, data)
    summary_path = None
    if options.summary_output:
        summary_path = Path(options.summary_output)
        write_json_atomic(summary_path, mask_deep(summary, secrets))
    return BuildResult(manifest=manifest, manifest_path=manifest_path, summary=summary, images=results,
                       failures=failures, skipped=plan.skipped, registry=options.registry,
                       summary_path=summary_path, wall_time=wall_time, docker_builds=builder.docker_builds)


def build_summary(results: list[ImageResult], failures: list[ModelFailure], skipped: list[SkippedModel],
                  wall_time: float) -> dict[str, Any]:
    """The ``--summary-output`` JSON (also the manifest's ``summary``), in upstream's shape."""
    successful = []
    pushes_ok = []
    pushes_failed = []
    for res in results:
        if not res.ok or res.built is None:
            continue
        b = res.built
        successful.append({
            "model": res.plan.model_names[0], "models": list(b.models), "docker_image": b.docker_image,
            "dockerfile": b.dockerfile, "build_duration": b.build_duration, "log_file": b.log_file,
            "image_id": b.image_id, "size": b.size, "registry_image": b.registry_image,
        })
        successful[-1]["docker_images"] = list(res.built_by_key)
        for each in res.built_by_key.values():
            if each.pushed:
                pushes_ok.append({"docker_image": each.docker_image, "registry_image": each.registry_image,
                                  "registry_tag": each.registry_tag, "image_digest": each.image_digest})
            elif each.push_failed:
                pushes_failed.append({"docker_image": each.docker_image,
                                      "intended_registry_image": each.registry_tag,
                                      "error": each.push_error, "hint": res.push_hint})
    return {
        "successful_builds": successful,
        "failed_builds": [f.to_dict() for f in failures],
        "total_build_time": round(sum(r.duration for r in results if r.ok), 3),
        "successful_pushes": pushes_ok,
        "failed_pushes": pushes_failed,
        "skipped_models": [{"model": s.model, "reason": s.reason} for s in skipped],
        "wall_time": round(wall_time, 3),
    }


__all__ = [
    "BuildOptions",
    "BuildPlan",
    "BuildResult",
    "ImageResult",
    "ModelFailure",
    "PlannedImage",
    "SkippedModel",
    "build_command",
    "build_models",
    "build_summary",
    "dry_run",
    "image_name",
    "log_file_name",
    "plan_builds",
    "run_options",
]
