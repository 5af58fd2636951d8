"""What a `run` is asked to do, resolved once: flags, ``--execution-config``, the ledger of ``--resume`` /
``--rerun-failed`` and the manifest's ``run_options``.

``madengine-cli run`` parses its flags into a :class:`RunRequest` and renders; everything between is
here, as data in and data out (no console, no Rich):

1. :func:`resolve_request` validates the flags, merges an execution config, and for a resume reads the
   earlier run's ledger ``args`` (:func:`request_from_ledger`, the inverse of :func:`ledger_args`: the
   one definition of that schema), then picks the workflow (a manifest to run, or tags to build first).
2. After the build (if any), :func:`run_options` combines the request with the manifest's stored run
   options into the executors' :class:`~madengine.execute.local.RunOptions`.

Precedence, per setting: what the user gives now, then the execution config, then (for a resume) the
earlier run, then the manifest's ``run_options``, then the default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ansible_collections.mad.engine.plugins.module_utils._runspec import DEFAULT_TIMEOUT, MAX_TIMEOUT, MODEL_TIMEOUT
from ansible_collections.mad.engine.plugins.module_utils._secrets import mask_secrets

from madengine.errors import InvalidInputError
from madengine.tags import split_tags

if TYPE_CHECKING:
    from madengine.execute.ansible import ClusterOptions
    from madengine.execute.local import RunOptions
    from madengine.manifest import Manifest

DEFAULT_MANIFEST = Path("build_manifest.json")
DEFAULT_DATA_CONFIG = Path("data.json")
DEFAULT_TOOLS_CONFIG = Path("scripts/common/tools.json")
RUNS_DIR = Path("runs")
IMAGE_TRANSFERS = ("registry", "copy")
RUN_EXAMPLE = ("madengine-cli run --tags dummy\n"
               "madengine-cli run --manifest-file build_manifest.json")


@dataclass
class RunRequest:
    """The run's settings as given (flags), then as resolved by :func:`resolve_request`."""

    tags: list[str] | None = None
    manifest_file: Path | None = None
    registry: str | None = None
    timeout: int = MODEL_TIMEOUT
    keep_alive: bool = False
    keep_model_dir: bool = False
    skip_model_run: bool = False
    #: The parsed -c/-f context (see madengine.context.parse_context).
    context: dict[str, Any] = field(default_factory=dict)
    output: Path = Path("perf.csv")
    data_config: Path = DEFAULT_DATA_CONFIG
    tools_config: Path = DEFAULT_TOOLS_CONFIG
    sys_env_details: bool = True
    force_mirror_local: Path | None = None
    disable_skip_gpu_arch: bool = False
    inventory: Path | None = None
    distribute: str = "replicate"
    limit: str | None = None
    forks: int | None = None  # None: one per target host (at most 64)
    insecure_skip_host_key_check: bool = False
    image_transfer: str | None = None
    #: --slurm: one sbatch job per model (madengine.execute.slurm), with --partition / --slurm-time.
    slurm: bool = False
    partition: str | None = None
    slurm_time: str | None = None
    retries: int = 1
    resume: str | None = None
    rerun_failed: str | None = None
    execution_config: Path | None = None
    mad_dir: Path | None = None

    @property
    def run_id(self) -> str | None:
        """The earlier run this one continues (--resume / --rerun-failed), or None."""
        return self.resume or self.rerun_failed

    @property
    def builds_first(self) -> bool:
        """The full workflow: no manifest to run, so the tags are built first."""
        return self.manifest_file is None


def resolve_request(request: RunRequest, runs_dir: Path = RUNS_DIR,
                    default_manifest: Path = DEFAULT_MANIFEST) -> RunRequest:
    """A copy of ``request`` with the execution config and an earlier run's settings applied and the
    workflow chosen. Raises InvalidInputError (exit 4) for bad flags or nothing to run."""
    req = dataclasses.replace(request, context=dict(request.context))
    if req.tags is not None and req.tags and not split_tags(req.tags):
        raise InvalidInputError("--tags is empty: it names no model (an unset shell variable?)",
                                hint="give the tags to build and run, or --manifest-file to run a manifest",
                                example=RUN_EXAMPLE)
    if req.tags and req.manifest_file is not None:
        # A manifest runs the models it holds; the tags would be silently ignored.
        raise InvalidInputError("--tags and --manifest-file do not go together: a manifest runs every model "
                                "it holds", hint="drop --tags to run the manifest, or --manifest-file to build "
                                                 "and run the tags", example=RUN_EXAMPLE)
    if req.timeout > MAX_TIMEOUT:
        raise InvalidInputError(f"--timeout {req.timeout} is too large (the limit is {MAX_TIMEOUT} s, over 3 years)",
                                hint="use a number of seconds up to that, or 0 for no limit")
    if req.image_transfer not in (None, *IMAGE_TRANSFERS):
        raise InvalidInputError(f"--image-transfer {req.image_transfer!r} is not registry or copy")
    if req.timeout < MODEL_TIMEOUT:
        raise InvalidInputError(f"--timeout {req.timeout} is not allowed",
                                hint="use a number of seconds, 0 for no limit, or -1 for the default "
                                     f"({DEFAULT_TIMEOUT} s)")
    if req.execution_config is not None:
        from madengine.execution_config import load_execution_config

        config = load_execution_config(req.execution_config)
        req.context = {**config.context, **req.context}
        stored = config.run_options
        if req.timeout == MODEL_TIMEOUT and stored.get("timeout") not in (None, MODEL_TIMEOUT):
            req.timeout = int(stored["timeout"])
        req.keep_alive = req.keep_alive or bool(stored.get("keep_alive"))
    if req.resume and req.rerun_failed:
        raise InvalidInputError("--resume and --rerun-failed are exclusive")
    if req.run_id:
        from madengine.ledger import Ledger, check_run_id

        check_run_id(req.run_id, "--resume" if req.resume else "--rerun-failed")
        loaded = Ledger(runs_dir, req.run_id).load()
        req = request_from_ledger(req, loaded.args(), loaded.run.get("context") or {})
    req.image_transfer = req.image_transfer or "registry"
    if req.manifest_file is None and not req.tags and default_manifest.is_file():
        req.manifest_file = default_manifest
    if req.manifest_file is None and not req.tags:
        raise InvalidInputError("Nothing to run: give --tags (build then run) or --manifest-file (run only)",
                                example=RUN_EXAMPLE)
    remote = req.inventory is not None or req.slurm
    if req.builds_first and remote and not req.registry and req.image_transfer == "registry":
        raise InvalidInputError("A cluster run that builds first needs --registry, so the nodes can pull",
                                hint="or --image-transfer copy, which ships docker save tarballs to the hosts",
                                example="madengine-cli run --inventory cluster.yml --tags dummy "
                                        "--registry 127.0.0.1:5000")
    return req


def config_path(option: Path, root: Path) -> Path:
    """A relative --data-config/--tools-config as the build resolves it: the current directory, then the
    MAD root."""
    if option.is_absolute() or (Path.cwd() / option).is_file():
        return option.absolute()
    return root / option


def run_options(req: RunRequest, manifest: Manifest, root: Path, runs_dir: Path = RUNS_DIR) -> RunOptions:
    """The executors' options: the request, then what the manifest stored at build time."""
    from madengine.execute.local import RunOptions

    stored = manifest.run_options

    def pick(option: Path, default: Path, key: str) -> Path | None:
        if option != default or not stored.get(key):
            return config_path(option, root)
        return Path(stored[key]) if Path(stored[key]).is_absolute() else root / stored[key]

    options = RunOptions(
        output=req.output, timeout=req.timeout, keep_alive=req.keep_alive, keep_model_dir=req.keep_model_dir,
        skip_model_run=req.skip_model_run,
        disable_skip_gpu_arch=req.disable_skip_gpu_arch or bool(stored.get("disable_skip_gpu_arch")),
        sys_env_details=req.sys_env_details and stored.get("sys_env_details", True) is not False,
        force_mirror_local=(str(req.force_mirror_local) if req.force_mirror_local
                            else stored.get("force_mirror_local")),
        data_config=pick(req.data_config, DEFAULT_DATA_CONFIG, "data_config"),
        tools_config=pick(req.tools_config, DEFAULT_TOOLS_CONFIG, "tools_config"),
        registry=req.registry, context=req.context, retries=req.retries, runs_dir=runs_dir)
    if req.run_id:
        options.run_id = req.run_id
    options.ledger_meta = {"args": ledger_args(req, root, options), "context": mask_secrets(req.context)}
    return options


def cluster_options(req: RunRequest) -> ClusterOptions | None:
    """The Ansible side of an ``--inventory`` run, or None for a local one."""
    if req.inventory is None:
        return None
    from madengine.execute.ansible import ClusterOptions

    return ClusterOptions(inventory=req.inventory, distribute=req.distribute, limit=req.limit, forks=req.forks,
                          insecure_skip_host_key_check=req.insecure_skip_host_key_check,
                          image_transfer=req.image_transfer or "registry")


# ------------------------------------------------------------------------------------ the ledger's args
def ledger_args(req: RunRequest, root: Path, options: RunOptions) -> dict[str, Any]:
    """What the ledger records of a run, so that ``--resume`` repeats it exactly (no secrets: the
    context goes beside it, masked)."""
    return {
        "manifest_file": str(Path(req.manifest_file or DEFAULT_MANIFEST).absolute()), "mad_dir": str(root),
        "output": str(Path(req.output).absolute()), "timeout": req.timeout, "keep_alive": req.keep_alive,
        "keep_model_dir": req.keep_model_dir, "skip_model_run": req.skip_model_run,
        "disable_skip_gpu_arch": options.disable_skip_gpu_arch, "sys_env_details": options.sys_env_details,
        "force_mirror_local": options.force_mirror_local, "registry": req.registry,
        "data_config": str(options.data_config), "tools_config": str(options.tools_config),
        "cluster": None if req.inventory is None else {
            "inventory": str(Path(req.inventory).absolute()), "distribute": req.distribute, "limit": req.limit,
            "forks": req.forks, "insecure_skip_host_key_check": req.insecure_skip_host_key_check,
            "image_transfer": req.image_transfer},
        "slurm": {"partition": req.partition, "time": req.slurm_time, "image_transfer": req.image_transfer}
        if req.slurm else None,
    }


def request_from_ledger(req: RunRequest, args: Mapping[str, Any], context: Mapping[str, Any]) -> RunRequest:
    """``req`` continuing an earlier run: its recorded settings (``args``, checked by
    ``LedgerState.args``), the context given now winning over the recorded one, a registry or image
    transfer given now winning."""
    cluster = args.get("cluster") or None
    resumed = dataclasses.replace(
        req, manifest_file=Path(args["manifest_file"]), mad_dir=Path(args["mad_dir"]), output=Path(args["output"]),
        tags=None, timeout=int(args["timeout"]), keep_alive=bool(args["keep_alive"]),
        keep_model_dir=bool(args["keep_model_dir"]), skip_model_run=bool(args["skip_model_run"]),
        disable_skip_gpu_arch=bool(args["disable_skip_gpu_arch"]), sys_env_details=bool(args["sys_env_details"]),
        registry=req.registry or args.get("registry"),
        force_mirror_local=Path(args["force_mirror_local"]) if args.get("force_mirror_local") else None,
        data_config=Path(args["data_config"]), tools_config=Path(args["tools_config"]),
        context={**dict(context), **req.context})
    if cluster:
        resumed = dataclasses.replace(
            resumed, inventory=Path(cluster["inventory"]), distribute=cluster["distribute"], limit=cluster["limit"],
            forks=cluster["forks"], insecure_skip_host_key_check=cluster["insecure_skip_host_key_check"],
            image_transfer=req.image_transfer or cluster.get("image_transfer"))
    slurm = args.get("slurm") or None
    if slurm:
        resumed = dataclasses.replace(
            resumed, slurm=True, partition=req.partition or slurm.get("partition"),
            slurm_time=req.slurm_time or slurm.get("time"),
            image_transfer=req.image_transfer or slurm.get("image_transfer"))
    return resumed


def cells_to_rerun(req: RunRequest, manifest: Manifest, runs_dir: Path = RUNS_DIR) -> set[tuple[str, str]] | None:
    """For --resume / --rerun-failed: the (manifest key, host) cells without their result yet (the ledger
    less what perf.csv already holds); None for a new run."""
    if not req.run_id:
        return None
    from madengine.ledger import Ledger, done_in_perf
    from madengine.results import read_rows

    state = Ledger(runs_dir, req.run_id).load()
    names = {entry.key: entry.model.name for entry in manifest.entries()}
    return state.todo(failed_only=bool(req.rerun_failed)) - done_in_perf(read_rows(req.output), req.run_id, names)
