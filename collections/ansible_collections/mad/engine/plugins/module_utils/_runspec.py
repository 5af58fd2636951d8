# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""How a model becomes a container: model + context + host facts -> engine create body + command line.

Inputs are plain dicts (``Model.to_dict()``, the run context, host facts, a DataPlan); the output is
the JSON body of ``POST /containers/create`` and the single ``bash -c`` line run in it. Pure and
deterministic: the same inputs give an identical body, so the local executor and the Ansible module
(which both call :func:`container_body`) cannot drift. Standard library only (runs on target hosts).

Container layout (upstream-compatible): the MAD root is bound at ``/myworkspace``, the caller's fresh
run directory (a copy of the model's scripts folder) at ``/myworkspace/run_directory``, the working
directory of the model script.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._secrets import MASK, SECRET_ENV_LABEL, is_secret_name

WORKSPACE = "/myworkspace"
RUN_DIRECTORY = WORKSPACE + "/run_directory"
#: With keep_alive the exit status of the script is written to this file in the run directory.
RC_FILE = ".madengine_rc"
DEFAULT_SHM_SIZE = 16 * 1024 ** 3
DEFAULT_TIMEOUT = 7200
#: ``--timeout`` / ``run_options.timeout`` -1: each model's own timeout (else DEFAULT_TIMEOUT).
MODEL_TIMEOUT = -1
GPU_VENDORS = ("AMD", "NVIDIA", "INTEL", "CPU")
#: A ``scripts`` value ending in one of these names a file run with that interpreter; anything else is a
#: folder holding run.sh. ``.slurm``/``.sbatch`` files are batch scripts, run with bash on one host.
SCRIPT_RUNNERS = {".sh": "bash", ".slurm": "bash", ".sbatch": "bash", ".py": "python3"}
_MAX_INDEX = 65535
_SIZE = re.compile(r"(\d+)\s*([bkmg]?)b?", re.IGNORECASE)


# --------------------------------------------------------------------------------------------------
# GPUs
# --------------------------------------------------------------------------------------------------

def parse_gpu_ranges(spec: str | int) -> list[int]:
    """``"0,2-4"`` -> ``[0, 2, 3, 4]`` (sorted, de-duplicated). Raises ValueError on bad syntax."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = str(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty or non-string GPU range specification: {spec!r}")
    indices: set[int] = set()
    for raw in spec.split(","):
        part = "".join(raw.split())
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"bad item {part!r} in GPU ranges {spec!r}: expected N or N-M")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if low > high:
            raise ValueError(f"descending range {part!r} in GPU ranges {spec!r}")
        if high > _MAX_INDEX:
            raise ValueError(f"index {high} in GPU ranges {spec!r} is larger than {_MAX_INDEX}")
        indices.update(range(low, high + 1))
    return sorted(indices)


def select_gpus(model_n_gpus: int | str, docker_gpus: str | int | None, host_count: int, *,
                model_name: str = "the model") -> list[int]:
    """The GPU indices a model gets: the first ``n_gpus`` of ``docker_gpus`` (ranges, or all GPUs).

    ``n_gpus`` -1 means every allowed GPU. A host with no GPUs runs models needing at most one GPU
    with none (CPU runs). Raises ValueError when ``docker_gpus`` names a GPU the host lacks or the model
    needs more GPUs than the host has (``model X needs 4 GPUs but this host has 2``) or than
    ``docker_gpus`` allows.
    """
    try:
        wanted = int(model_n_gpus)
    except (TypeError, ValueError):
        raise ValueError(f"model {model_name}: n_gpus must be an integer, not {model_n_gpus!r}") from None
    if wanted < -1:
        raise ValueError(f"model {model_name}: n_gpus must be -1 (all) or >= 0, not {wanted}")
    count = max(int(host_count or 0), 0)
    spec = None if docker_gpus is None else str(docker_gpus).strip()
    if not spec or spec.lower() == "all":
        spec, pool = None, list(range(count))
    else:
        pool = parse_gpu_ranges(spec)
        beyond = [index for index in pool if index >= count]
        if beyond:
            raise ValueError(f"docker_gpus {spec!r} names GPU {beyond[0]} but this host has {count} GPU(s)")
    if wanted == -1:
        return pool
    if count == 0 and wanted <= 1:
        return []
    if wanted > count:
        raise ValueError(f"model {model_name} needs {wanted} GPUs but this host has {count}")
    if wanted > len(pool):
        raise ValueError(f"model {model_name} needs {wanted} GPUs but docker_gpus {spec!r} "
                         f"allows only {len(pool)}")
    return pool[:wanted]


def normalize_vendor(vendor: Any) -> str:
    """``amd`` → ``AMD``; raises ValueError for anything but AMD, NVIDIA, INTEL or CPU."""
    text = str(vendor or "").strip().upper()
    if text not in GPU_VENDORS:
        raise ValueError(f"gpu_vendor must be one of {', '.join(GPU_VENDORS)}, not {vendor!r}")
    return text


def gpu_vendor(context: dict | None, facts: dict | None) -> str:
    """The vendor of this run: the context's ``gpu_vendor``, else the host's, else CPU."""
    return normalize_vendor((context or {}).get("gpu_vendor") or (facts or {}).get("gpu_vendor") or "CPU")


def run_gpus(model: dict, context: dict | None, facts: dict | None) -> list[int]:
    """The GPU indices of this run (none for a CPU vendor run); see :func:`select_gpus`."""
    if gpu_vendor(context, facts) == "CPU":
        return []
    return select_gpus(model.get("n_gpus", 1), (context or {}).get("docker_gpus"),
                       int((facts or {}).get("gpu_count") or 0), model_name=str(model.get("name")))


# --------------------------------------------------------------------------------------------------
# Small model helpers
# --------------------------------------------------------------------------------------------------

def should_skip(model: dict, facts: dict | None, disable_skip_gpu_arch: bool = False) -> str | None:
    """The reason to skip ``model`` on this host (``skip_gpu_arch lists gfx90a``), or None."""
    if disable_skip_gpu_arch:
        return None
    arch = str((facts or {}).get("gpu_architecture") or "").partition(":")[0].strip().lower()
    skip = model.get("skip_gpu_arch") or []
    if isinstance(skip, str):
        skip = skip.split(",")
    listed = {str(item).strip().lower() for item in skip if str(item).strip()}
    if arch and arch in listed:
        return f"skip_gpu_arch lists {arch}"
    return None


def script_location(model: dict) -> tuple[str, str]:
    """``(folder, file)``: the folder (relative to the MAD root) the caller copies into the run directory,
    and the script's file name in it (``run.sh`` when ``scripts`` is a folder).

    Raises ValueError when the model has no ``scripts``.
    """
    scripts = str(model.get("scripts") or "").strip()
    while scripts.startswith("./"):
        scripts = scripts[2:]
    scripts = scripts.rstrip("/")
    if not scripts:
        raise ValueError(f"model {model.get('name')} has no scripts to run")
    if scripts.endswith(tuple(SCRIPT_RUNNERS)):
        return os.path.dirname(scripts) or ".", os.path.basename(scripts)
    return scripts, "run.sh"


def script_runner(script: str) -> str:
    """The interpreter of a model script in the container: ``python3`` for ``.py``, else ``bash``
    (``.sh``, and on a single host ``.slurm`` and ``.sbatch`` too, as upstream runs them)."""
    return SCRIPT_RUNNERS.get(os.path.splitext(script)[1], "bash")


def effective_args(model: dict, context: dict | None) -> str:
    """The script's argument string: the context's ``model_args`` when set (even ``""``, as upstream),
    else the model's ``args``."""
    model_args = (context or {}).get("model_args")
    return str(model.get("args") or "") if model_args is None else str(model_args)


def multiple_results_path(model: dict, run_dir: str) -> str | None:
    """The host path of the multiple_results CSV the script writes in its run directory, or None."""
    name = model.get("multiple_results")
    return os.path.join(run_dir, str(name)) if name else None


#: The longest run timeout in seconds (over 3 years); the CLI refuses a larger --timeout.
MAX_TIMEOUT = 100_000_000


def run_timeout(model: dict, context: dict | None = None, override: int | str | None = None,
                default: int = DEFAULT_TIMEOUT) -> int | None:
    """Seconds the run may take: ``override`` (``--timeout``), else the context's ``timeout``, else the
    model's, else ``default`` (7,200 s). An override of ``-1`` (:data:`MODEL_TIMEOUT`) and a None anywhere
    fall through to the next source; any other value <= 0 means no limit (None), as does a model's own
    -1. The one timeout rule of every executor."""
    if override is not None and str(override).strip() == str(MODEL_TIMEOUT):
        override = None
    for value in (override, (context or {}).get("timeout"), model.get("timeout"), default):
        if value is None or value == "":
            continue
        seconds = int(value)
        # Clamped: Ansible refuses task timeouts this large, and no run needs more than 3 years.
        return min(seconds, MAX_TIMEOUT) if seconds > 0 else None
    return None


# --------------------------------------------------------------------------------------------------
# The in-container command line
# --------------------------------------------------------------------------------------------------

def describe_timeout(timeout: int | None) -> str:
    """``--timeout`` for humans: ``model default (7200 s)``, ``none`` or ``60 s``."""
    if timeout is None or timeout == MODEL_TIMEOUT:
        return f"model default ({DEFAULT_TIMEOUT} s)"
    return "none" if timeout <= 0 else f"{timeout} s"


def _quote_args(text: str, where: str) -> str:
    try:
        words = shlex.split(text or "")
    except ValueError as exc:
        raise ValueError(f"{where}: cannot split {text!r}: {exc}") from None
    return " ".join(shlex.quote(word) for word in words)


def _script_call(entry: dict, where: str) -> str:
    path = str(entry.get("path") or "").strip()
    if not path:
        raise ValueError(f"{where}: a script entry needs a \"path\"")
    while path.startswith("./"):
        path = path[2:]
    full = path if path.startswith("/") else f"{WORKSPACE}/{path}"
    args = _quote_args(str(entry.get("args") or ""), f"{where} {path} args")
    return " ".join(word for word in ("bash", shlex.quote(full), args) if word)


def _plan(data_plan: Any) -> dict:
    if data_plan is None:
        return {}
    if hasattr(data_plan, "to_dict"):
        return data_plan.to_dict()
    return dict(data_plan)


def script_command(model: dict, context: dict | None = None, options: dict | None = None,
                   data_plan: Any = None) -> str:
    """The single shell line run in the container.

    ``cd /myworkspace/run_directory && <data commands> && <pre scripts> && <tool cmds> bash <script>
    <args>; rc=$?; <post scripts>; exit $rc``. Pre scripts: each tool's (in tool order), then the
    context's; post scripts: the context's, then each tool's in reverse tool order; the first tool's
    ``cmd`` is the outermost wrapper. (Upstream madengine stacks tools the other way round: the last
    tool outermost and its pre scripts first; nesting like a stack is what profilers expect.)
    Post scripts run even when an earlier step failed; the line exits with the first failing step's
    status. ``.py`` scripts run with ``python3``, others with bash (:func:`script_runner`).
    ``skip_model_run`` runs everything but the script.
    ``keep_alive`` writes the status to ``run_directory/.madengine_rc`` and sleeps forever instead of
    exiting, so the container stays up for inspection. Every word is ``shlex.quote``-d except tool
    ``cmd`` prefixes (trusted tools.json strings) and pre-quoted data commands.
    """
    ctx = context or {}
    opts = options or {}
    name = str(model.get("name"))
    tools = ctx.get("tools") or []
    steps = [f"cd {RUN_DIRECTORY}"]
    steps += [str(command) for command in _plan(data_plan).get("commands") or []]
    pre = [entry for tool in tools for entry in tool.get("pre_scripts") or []]
    pre += list(ctx.get("pre_scripts") or [])
    steps += [_script_call(entry, "pre_scripts") for entry in pre]
    if not opts.get("skip_model_run"):
        script = script_location(model)[1]
        runner = script_runner(script)
        words = [str(tool.get("cmd") or "").strip() for tool in tools]
        words += [runner, shlex.quote(script), _quote_args(effective_args(model, ctx), f"model {name} args")]
        steps.append(" ".join(word for word in words if word))
    parts = [" && ".join(steps), "rc=$?"]
    post = list(ctx.get("post_scripts") or [])
    post += [entry for tool in reversed(tools) for entry in tool.get("post_scripts") or []]
    parts += [_script_call(entry, "post_scripts") for entry in post]
    if opts.get("keep_alive"):
        parts += [f"echo $rc > {RUN_DIRECTORY}/{RC_FILE}", "sleep infinity"]
    else:
        parts.append("exit $rc")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------------
# The container create body
# --------------------------------------------------------------------------------------------------

def parse_size(value: int | str) -> int:
    """Bytes of a docker size: ``17179869184``, ``"16g"``, ``"512m"``, ``"64k"``. Raises ValueError."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.fullmatch(str(value).strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"bad size {value!r}: expected bytes or a number with k, m or g")
    return int(match.group(1)) * {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[
        match.group(2).lower()]


def _str(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def _device(path_on_host: str, path_in_container: str | None = None, perms: str = "rwm") -> dict:
    return {"PathOnHost": path_on_host, "PathInContainer": path_in_container or path_on_host,
            "CgroupPermissions": perms}


def _add_unique(items: list, value: Any) -> None:
    if value not in items:
        items.append(value)


_IGNORED_FLAGS = ("--rm", "-i", "-t", "-it", "-ti", "--interactive", "--tty", "-d", "--detach")
_VALUE_FLAGS = ("--shm-size", "-e", "--env", "-v", "--volume", "--device", "--cap-add", "--cap-drop",
                "--security-opt", "--ipc", "--group-add", "--network", "--net", "--ulimit", "-u", "--user",
                "-w", "--workdir", "--cpuset-cpus", "--tmpfs")


def _apply_run_options(text: str, body: dict, host: dict, env: dict, where: str) -> set[str]:
    """Apply a model's ``additional_docker_run_options`` (docker run flags) to the body.

    Returns the flags used. Raises ValueError for a flag this runner cannot express.
    """
    try:
        words = shlex.split(text or "")
    except ValueError as exc:
        raise ValueError(f"{where}: cannot split {text!r}: {exc}") from None
    used: set[str] = set()
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        value = None
        if word.startswith("--") and "=" in word:
            word, value = word.split("=", 1)
        elif len(word) > 2 and word[:2] in ("-e", "-v", "-u", "-w") and not word.startswith("--"):
            word, value = word[:2], word[2:]
        used.add(word)
        if word in _IGNORED_FLAGS:
            continue
        if word == "--privileged":
            host["Privileged"] = True
            continue
        if word == "--init":
            host["Init"] = True
            continue
        if word not in _VALUE_FLAGS:
            raise ValueError(f"{where}: unsupported option {word!r} (supported: "
                             f"{', '.join(_VALUE_FLAGS + ('--privileged', '--init'))})")
        if value is None:
            if index >= len(words):
                raise ValueError(f"{where}: option {word!r} needs a value")
            value = words[index]
            index += 1
        if word == "--shm-size":
            host["ShmSize"] = parse_size(value)
        elif word in ("-e", "--env"):
            key, sep, val = value.partition("=")
            if not sep or not key:
                raise ValueError(f"{where}: {word} {value!r} must be KEY=VALUE")
            env[key] = val
        elif word in ("-v", "--volume"):
            host.setdefault("Binds", []).append(value)
        elif word == "--device":
            parts = value.split(":") + [""] * 2
            host.setdefault("Devices", []).append(_device(parts[0], parts[1] or None, parts[2] or "rwm"))
        elif word == "--cap-add":
            _add_unique(host.setdefault("CapAdd", []), value)
        elif word == "--cap-drop":
            _add_unique(host.setdefault("CapDrop", []), value)
        elif word == "--security-opt":
            _add_unique(host.setdefault("SecurityOpt", []), value)
        elif word == "--ipc":
            host["IpcMode"] = value
        elif word == "--group-add":
            _add_unique(host.setdefault("GroupAdd", []), value)
        elif word in ("--network", "--net"):
            host["NetworkMode"] = value
        elif word == "--ulimit":
            limit, bounds = value.partition("=")[::2]
            soft, hard = bounds.partition(":")[::2]
            try:
                host.setdefault("Ulimits", []).append(
                    {"Name": limit, "Soft": int(soft), "Hard": int(hard or soft)})
            except ValueError:
                raise ValueError(f"{where}: --ulimit {value!r} must be NAME=SOFT[:HARD]") from None
        elif word in ("-u", "--user"):
            body["User"] = value
        elif word in ("-w", "--workdir"):
            body["WorkingDir"] = value
        elif word == "--cpuset-cpus":
            host["CpusetCpus"] = value
        elif word == "--tmpfs":
            path, mount_opts = value.partition(":")[::2]
            host.setdefault("Tmpfs", {})[path] = mount_opts
    return used


def card_env(model: dict) -> dict[str, str]:
    """The card's ``env_vars`` as container env strings (a boolean as ``true``/``false``).

    Raises ValueError when ``env_vars`` is not an object of names to strings, numbers or booleans (the
    card model's rule; the hub passes JSON as a string value).
    """
    raw = model.get("env_vars")
    if raw in (None, ""):
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"model {model.get('name')}: env_vars must be an object of NAME: value, "
                         f"not {type(raw).__name__}")
    env = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key or "=" in key:
            raise ValueError(f"model {model.get('name')}: env_vars key {key!r} is not an environment name")
        if isinstance(value, (dict, list)):
            raise ValueError(f"model {model.get('name')}: env_vars {key} must be a string, number or boolean "
                             f"(give JSON as a string)")
        env[key] = _str(value)
    return env


def container_env(model: dict, context: dict | None, facts: dict | None, gpus: list[int], vendor: str,
                  data_plan: Any = None, cred_env: dict | None = None,
                  options_env: dict | None = None) -> dict[str, str]:
    """The container's environment: the one precedence every path uses (local run, the cluster role,
    generated bundles and Jobs, SLURM). Later sources override earlier keys:

    1. madengine's: MAD_MODEL_NAME, MAD_RUNTIME_NGPUS, MAD_SYSTEM_NGPUS, MAD_SYSTEM_GPU_ARCHITECTURE,
       MAD_GPU_VENDOR, MAD_OUTPUT_CSV (multiple_results);
    2. the data plan's (MAD_DATANAME, MAD_DATAHOME);
    3. the card's ``env_vars`` (:func:`card_env`): the card's defaults;
    4. ``cred_env`` (sorted): the card's ``cred`` fields and the host's ``MAD_SECRETS*`` variables;
    5. each tool's ``env_vars`` (in tool order);
    6. ``-e`` of the card's ``additional_docker_run_options`` (``options_env``);
    7. the context's ``docker_env_vars`` (sorted): the user's choice for this run wins.

    Raises ValueError for a malformed card ``env_vars``.
    """
    ctx = context or {}
    facts = facts or {}
    env: dict[str, str] = {
        "MAD_MODEL_NAME": str(model.get("name")),
        "MAD_RUNTIME_NGPUS": str(len(gpus)),
        "MAD_SYSTEM_NGPUS": str(int(facts.get("gpu_count") or 0)),
        "MAD_SYSTEM_GPU_ARCHITECTURE": _str(facts.get("gpu_architecture")),
        "MAD_GPU_VENDOR": vendor,
    }
    if model.get("multiple_results"):
        env["MAD_OUTPUT_CSV"] = str(model["multiple_results"])
    env.update({str(k): _str(v) for k, v in (_plan(data_plan).get("env") or {}).items()})
    env.update(card_env(model))
    cred_env = cred_env or {}
    env.update({str(k): _str(cred_env[k]) for k in sorted(cred_env)})
    for tool in ctx.get("tools") or []:
        tool_env = tool.get("env_vars") or {}
        env.update({str(k): _str(tool_env[k]) for k in sorted(tool_env)})
    env.update({str(k): _str(v) for k, v in (options_env or {}).items()})
    docker_env = ctx.get("docker_env_vars") or {}
    env.update({str(k): _str(docker_env[k]) for k in sorted(docker_env)})
    return env


def container_body(model: dict, image: str, context: dict | None, facts: dict | None,
                   options: dict | None, mad_dir: str, run_dir: str, cred_env: dict | None = None,
                   data_plan: Any = None, *, run_id: str = "") -> dict:
    """The JSON body of ``POST /containers/create`` for one model run.

    Env: :func:`container_env`. The names of the ``cred_env`` keys are listed in the
    ``madengine.secret_env`` label for :func:`display_command`.
    Vendor options: AMD gets /dev/kfd and the selected GPUs' render devices (``facts.render_devices``
    by index; all of /dev/dri when unknown), group video, host IPC, a 16 GiB shm, SYS_PTRACE and
    seccomp=unconfined; NVIDIA the same IPC/shm/capability settings and an nvidia DeviceRequest for the
    selected GPUs; INTEL /dev/dri; CPU nothing. A shm size from the context (``docker_shm_size`` or
    upstream's ``SHM_SIZE``) or the model's ``--shm-size`` drops host IPC so that the size applies, as
    upstream does (unless the model's options give ``--ipc``).
    Raises ValueError for impossible GPU requests or unsupported run options.
    """
    ctx = context or {}
    facts = facts or {}
    name = str(model.get("name"))
    vendor = gpu_vendor(ctx, facts)
    gpus = run_gpus(model, ctx, facts)
    plan = _plan(data_plan)

    cred_env = cred_env or {}

    body: dict[str, Any] = {
        "Image": image,
        "Cmd": ["bash", "-c", script_command(model, ctx, options, plan)],
        "Env": [],
        "WorkingDir": WORKSPACE,
        "Labels": {"madengine.model": name},
    }
    if run_id:
        body["Labels"]["madengine.run_id"] = str(run_id)
    if cred_env:
        body["Labels"][SECRET_ENV_LABEL] = ",".join(sorted(str(k) for k in cred_env))

    mounts = ctx.get("docker_mounts") or {}
    binds = [f"{mad_dir}:{WORKSPACE}:rw", f"{run_dir}:{RUN_DIRECTORY}:rw"]
    binds += [f"{mounts[container]}:{container}" for container in sorted(mounts)]
    binds += [str(bind) for bind in plan.get("binds") or []]
    host: dict[str, Any] = {"NetworkMode": "host", "Binds": binds}

    if vendor in ("AMD", "NVIDIA"):
        if vendor == "AMD":
            render = list(facts.get("render_devices") or [])
            devices = [_device("/dev/kfd")]
            if gpus and not render:
                # Render devices unknown: expose them all (docker expands a device directory).
                devices.append(_device("/dev/dri"))
            for index in gpus if render else []:
                if index >= len(render):
                    raise ValueError(f"GPU {index} has no render device (the host facts list {len(render)})")
                devices.append(_device(str(render[index])))
            host["Devices"] = devices
            host["GroupAdd"] = ["video"]
        else:
            if gpus:
                host["DeviceRequests"] = [{"Driver": "nvidia", "DeviceIDs": [str(i) for i in gpus],
                                           "Capabilities": [["gpu"]]}]
        host["IpcMode"] = "host"
        host["ShmSize"] = DEFAULT_SHM_SIZE
        host["CapAdd"] = ["SYS_PTRACE"]
        host["SecurityOpt"] = ["seccomp=unconfined"]
    elif vendor == "INTEL":
        host["Devices"] = [_device("/dev/dri")]

    shm = ctx.get("docker_shm_size") or ctx.get("SHM_SIZE")
    if shm:
        host["ShmSize"] = parse_size(shm)
    if ctx.get("docker_cpus") not in (None, ""):
        host["CpusetCpus"] = str(ctx["docker_cpus"])

    options_env: dict[str, str] = {}
    used = _apply_run_options(str(model.get("additional_docker_run_options") or ""), body, host,
                              options_env, f"model {name}: additional_docker_run_options")
    if (shm or "--shm-size" in used) and "--ipc" not in used and host.get("IpcMode") == "host":
        # Docker ignores the shm size of a container sharing the host's IPC namespace (upstream drops
        # --ipc=host when SHM_SIZE is set); an explicit --ipc of the model wins.
        del host["IpcMode"]
    env = container_env(model, ctx, facts, gpus, vendor, plan, cred_env, options_env)
    body["Env"] = [f"{key}={value}" for key, value in env.items()]
    body["HostConfig"] = host
    return body


# --------------------------------------------------------------------------------------------------
# For humans
# --------------------------------------------------------------------------------------------------

def is_secret_env(key: str, secret_keys: Any = ()) -> bool:
    """Whether an env key's value must not be shown: a credential key, or a secret-looking name."""
    return key in set(secret_keys or ()) or is_secret_name(key)


def _size_text(size: int) -> str:
    for unit, factor in (("g", 1024 ** 3), ("m", 1024 ** 2), ("k", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def display_command(body: dict, secret_keys: Any = ()) -> str:
    """An equivalent ``docker run`` line for logs, with secret env values masked as ``******``.

    Secret keys: those in ``secret_keys``, those named in the body's ``madengine.secret_env`` label,
    and any matching password|secret|token|key (case-insensitive).
    """
    labels = body.get("Labels") or {}
    secrets = set(secret_keys or ())
    secrets.update(k for k in str(labels.get(SECRET_ENV_LABEL, "")).split(",") if k)
    host = body.get("HostConfig") or {}
    words = ["docker", "run"]
    if host.get("NetworkMode"):
        words += ["--network", host["NetworkMode"]]
    if host.get("IpcMode"):
        words += ["--ipc", host["IpcMode"]]
    if host.get("ShmSize"):
        words += ["--shm-size", _size_text(int(host["ShmSize"]))]
    if host.get("Privileged"):
        words.append("--privileged")
    if host.get("Init"):
        words.append("--init")
    for cap in host.get("CapAdd") or []:
        words += ["--cap-add", cap]
    for cap in host.get("CapDrop") or []:
        words += ["--cap-drop", cap]
    for opt in host.get("SecurityOpt") or []:
        words += ["--security-opt", opt]
    for group in host.get("GroupAdd") or []:
        words += ["--group-add", group]
    for dev in host.get("Devices") or []:
        inside = dev.get("PathInContainer") or dev["PathOnHost"]
        perms = dev.get("CgroupPermissions") or "rwm"
        spec = dev["PathOnHost"]
        if inside != spec or perms != "rwm":
            spec += ":" + inside
        if perms != "rwm":
            spec += ":" + perms
        words += ["--device", spec]
    for request in host.get("DeviceRequests") or []:
        ids = request.get("DeviceIDs") or []
        words += ["--gpus", f'"device={",".join(ids)}"' if ids else "all"]
    if host.get("CpusetCpus"):
        words += ["--cpuset-cpus", host["CpusetCpus"]]
    for limit in host.get("Ulimits") or []:
        words += ["--ulimit", f"{limit['Name']}={limit['Soft']}:{limit['Hard']}"]
    for path, mount_opts in (host.get("Tmpfs") or {}).items():
        words += ["--tmpfs", f"{path}:{mount_opts}" if mount_opts else path]
    for bind in host.get("Binds") or []:
        words += ["-v", bind]
    for item in body.get("Env") or []:
        key, value = str(item).partition("=")[::2]
        words += ["-e", f"{key}={MASK if is_secret_env(key, secrets) and value else value}"]
    for key, value in labels.items():
        words += ["--label", f"{key}={value}"]
    if body.get("User"):
        words += ["-u", body["User"]]
    if body.get("WorkingDir"):
        words += ["-w", body["WorkingDir"]]
    words.append(str(body.get("Image", "")))
    words += [str(word) for word in body.get("Cmd") or []]
    return " ".join(shlex.quote(str(word)) for word in words)
