"""What a build is asked to do, once for ``build`` and for the full workflow of ``run``.

The CLI fills one :class:`BuildRequest` from its flags; :func:`build_options` turns it into the models
to build and the :class:`~madengine.build.BuildOptions` of :func:`madengine.build.build_models`. For
``run`` (``for_run``) the context is completed from this host's detection, which only chooses the
Dockerfiles: the detected keys stay out of the manifest, so every run host detects its own GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from madengine.run_settings import DEFAULT_DATA_CONFIG, DEFAULT_MANIFEST, DEFAULT_TOOLS_CONFIG

if TYPE_CHECKING:
    from madengine.build import BuildOptions
    from madengine.model import Model


@dataclass
class BuildRequest:
    """The build flags (``madengine-cli build --help``), as given."""

    tags: list[str] | None = None
    registry: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    clean_docker_cache: bool = False
    manifest_output: Path = DEFAULT_MANIFEST
    summary_output: Path | None = None
    output: Path = Path("perf.csv")
    ignore_deprecated: bool = False
    data_config: Path = DEFAULT_DATA_CONFIG
    tools_config: Path = DEFAULT_TOOLS_CONFIG
    sys_env_details: bool = True
    force_mirror_local: Path | None = None
    disable_skip_gpu_arch: bool = False
    jobs: int = 1
    target_archs: list[str] = field(default_factory=list)
    use_image: str | None = None
    mad_dir: Path | None = None
    #: The full workflow of `run`: GPU keys the context lacks are detected on this host.
    for_run: bool = False

    @property
    def registry_name(self) -> str | None:
        return self.registry.strip() if self.registry and self.registry.strip() else None


def build_options(req: BuildRequest) -> tuple[list[Model], BuildOptions]:
    """The models the tags select and how to build them. Raises InvalidInputError for bad input."""
    from madengine import build as core
    from madengine.context import resolve_run_context
    from madengine.discover import discover_models, resolve_mad_dir
    from madengine.tags import split_tags

    context = resolve_run_context(req.context) if req.for_run else dict(req.context)
    root = resolve_mad_dir(req.mad_dir)
    options = core.BuildOptions(
        mad_dir=root, context=context, registry=req.registry_name, clean_docker_cache=req.clean_docker_cache,
        manifest_output=req.manifest_output, summary_output=req.summary_output,
        ignore_deprecated=req.ignore_deprecated, jobs=req.jobs,
        detected_keys=frozenset(k for k, v in context.items() if req.context.get(k) != v),
        target_archs=list(req.target_archs), use_image=req.use_image,
        run_options=core.run_options(
            root, data_config=req.data_config, tools_config=req.tools_config,
            force_mirror_local=req.force_mirror_local, disable_skip_gpu_arch=req.disable_skip_gpu_arch,
            sys_env_details=req.sys_env_details, output=req.output,
            data_config_given=req.data_config != DEFAULT_DATA_CONFIG,
            tools_config_given=req.tools_config != DEFAULT_TOOLS_CONFIG))
    return discover_models(root, split_tags(req.tags or [])), options
