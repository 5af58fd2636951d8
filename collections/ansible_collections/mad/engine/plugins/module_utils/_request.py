# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""From a build manifest to `execute_model` requests, and from a request to a result on a host.

Controller side (the ``mad.engine.run_plan`` filter of the ``mad.engine.run_models`` role):
:func:`host_plan` turns the manifest's entries for one host into the images to make present, the MAD
paths to sync and one request per model. Host side (the ``mad.engine.run_model`` module):
:func:`run_request` completes a request with the host's facts and resolved tools, runs it with
`execute_model` and writes its rows beside the logs. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._engine import EngineClient, EngineError
from ansible_collections.mad.engine.plugins.module_utils._execute import (
    execute_model,
    file_stem,
    file_stems,
    preflight,
    prepare_context,
)
from ansible_collections.mad.engine.plugins.module_utils._facts import HostInfo, detect_host, gpu_facts, run_facts
from ansible_collections.mad.engine.plugins.module_utils._image import pinned_reference
from ansible_collections.mad.engine.plugins.module_utils._paths import OutsideError, card_problems, inside
from ansible_collections.mad.engine.plugins.module_utils._perf import failure_row
from ansible_collections.mad.engine.plugins.module_utils._runspec import (
    MASK,
    MODEL_TIMEOUT,
    run_timeout,
    script_location,
)

RUN_OPTION_KEYS = ("timeout", "keep_alive", "keep_model_dir", "skip_model_run", "disable_skip_gpu_arch",
                   "sys_env_details", "force_mirror_local")
IMAGE_TRANSFERS = ("registry", "copy")
COMMON_PATHS = ("scripts/common", "data.json")


# --------------------------------------------------------------------------------------------------
# Controller side: the plan of one host
# --------------------------------------------------------------------------------------------------

def run_context(manifest_context: Mapping[str, Any] | None, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The manifest's context overridden by the run's, without env values the manifest masked.

    The manifest stores secrets as ``******``: a masked value nobody supplied again is dropped rather
    than passed to the container as the mask.
    """
    context = {**dict(manifest_context or {}), **dict(given or {})}
    env = {k: v for k, v in dict(context.get("docker_env_vars") or {}).items() if v != MASK}
    context["docker_env_vars"] = env
    return context


def select_keys(manifest: Mapping[str, Any], models: list[str] | None = None,
                assignments: Mapping[str, list[str]] | None = None, host: str = "") -> list[str]:
    """The built_models keys this host runs: its entry in ``assignments`` when that is given (none if it
    has no entry), else ``models``, else all of them (in manifest order)."""
    if assignments:
        return [str(k) for k in assignments.get(host) or []]
    if models:
        return [str(k) for k in models]
    return [str(k) for k in (manifest.get("built_models") or {})]


def _image_entry(manifest: Mapping[str, Any], record: Mapping[str, Any], key: str) -> tuple[str, dict] | None:
    images = manifest.get("built_images") or {}
    name = record.get("docker_image") or key
    if name in images:
        return str(name), dict(images[name])
    for image_key, image in images.items():
        if isinstance(image, Mapping) and image.get("docker_image") == name:
            return str(image_key), dict(image)
    return None


def _rel_inside(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` when it lies inside it after symlinks (see ``_paths.inside``), else None."""
    try:
        return inside(root, path)
    except OutsideError:
        return None


def _script_paths(context: Mapping[str, Any]) -> list[str]:
    entries = list(context.get("pre_scripts") or []) + list(context.get("post_scripts") or [])
    for tool in context.get("tools") or []:
        if isinstance(tool, Mapping):
            entries += list(tool.get("pre_scripts") or []) + list(tool.get("post_scripts") or [])
    paths = []
    for entry in entries:
        path = entry.get("path") if isinstance(entry, Mapping) else entry
        if isinstance(path, str) and path.strip() and not path.startswith("/"):
            paths.append(path.strip())
    return paths


def _tarball(value: Any) -> tuple[str, str]:
    """(controller path, image ID or "") of an image_tarballs value: a path, or {"path", "id"}."""
    if isinstance(value, Mapping):
        return str(value.get("path") or ""), str(value.get("id") or "")
    return str(value or ""), ""


def host_plan(manifest: Mapping[str, Any], keys: list[str], *, host: str, run_id: str, workdir: str,
              mad_dir: str, context: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None,
              tools_config: Mapping[str, Any] | None = None, tools_config_name: str = "tools config",
              tools_config_path: str = "", data_config: Mapping[str, Any] | None = None,
              data_config_path: str = "", image_transfer: str = "registry",
              image_tarballs: Mapping[str, Any] | None = None, step_timeout: int = 600) -> dict[str, Any]:
    """What one host does for ``keys`` of ``manifest`` (the built_models keys, see :func:`select_keys`).

    ``mad_dir`` is the MAD root on the controller; the host gets the needed part of it in
    ``<workdir>/mad`` and writes results to ``<workdir>/results/<run_id>``. Returns::

        {"mad_dir": host MAD root, "output_dir": host results dir,
         "images": [{"key", "name" (reference to make present), "digest", "id" (the image ID a copied
                     tarball holds, or ""), "tarball" (controller path or ""), "load_from" (host path or "")}],
         "image_checks": [{"name", "digest", "id"} of each image: mad.engine.host_facts's images],
         "sync": [paths relative to mad_dir that exist on the controller], "missing": [those that don't],
         "models": [{"key", "name", "image", "cred", "task_timeout" (seconds, 0: none), "request"}]}

    A key the manifest does not know, or whose card names a path outside the MAD package
    (``_paths.card_problems``), gets a request with an ``error`` (a FAILURE row, nothing run, nothing of
    it synced); no synced path leaves ``mad_dir``, after symlinks.
    Raises ValueError for an unknown ``image_transfer``.
    """
    if image_transfer not in IMAGE_TRANSFERS:
        raise ValueError(f"image_transfer must be one of {', '.join(IMAGE_TRANSFERS)}, not {image_transfer!r}")
    host_mad = os.path.join(workdir, "mad")
    output_dir = os.path.join(workdir, "results", run_id)
    run_ctx = run_context(manifest.get("context"), context)
    opts = {k: v for k, v in dict(options or {}).items() if k in RUN_OPTION_KEYS}
    opts.setdefault("timeout", MODEL_TIMEOUT)
    override = opts.get("timeout")
    tarballs = dict(image_tarballs or {})
    built_models = manifest.get("built_models") or {}
    images: dict[str, dict[str, Any]] = {}
    models: list[dict[str, Any]] = []
    sync = list(COMMON_PATHS)
    for path in (tools_config_path, data_config_path):
        rel = _rel_inside(path, mad_dir) if path else None
        if rel:
            sync.append(rel)
    sync += _script_paths(run_ctx)
    base = {"context": run_ctx, "options": opts, "tools_config": dict(tools_config or {}),
            "tools_config_name": tools_config_name, "data_config": dict(data_config or {}),
            "mad_dir": host_mad, "output_dir": output_dir, "run_id": run_id, "host": host}
    stems = file_stems(str((r or {}).get("name") or k) for k, r in built_models.items() if isinstance(r, Mapping))
    for key in keys:
        record = built_models.get(key)
        found = _image_entry(manifest, record, key) if isinstance(record, Mapping) else None
        if found is None:
            reason = (f"model {key} is not in the manifest's built_models" if record is None
                      else f"model {key}: its image is not in the manifest's built_images")
            name = str((record or {}).get("name") or key)
            request = dict(base, key=key, error=reason, infra_error=False, model={"name": name})
            models.append({"key": key, "name": name, "image": "", "cred": "", "task_timeout": step_timeout,
                           "request": request})
            continue
        image_key, image = found
        model = {k: v for k, v in record.items() if k != "docker_image"}
        problems = card_problems(model, mad_dir)
        if problems:  # checked before anything is sent: nothing of this card is synced
            request = dict(base, key=key, error="; ".join(problems), infra_error=False, model=model)
            models.append({"key": key, "name": str(model.get("name") or key), "image": "", "cred": "",
                           "task_timeout": step_timeout, "request": request})
            continue
        tarball, image_id = _tarball(tarballs.get(image_key) or tarballs.get(str(image.get("docker_image") or "")))
        if image_transfer == "copy" and tarball:
            ref, digest = str(image.get("docker_image") or image_key), ""
            load_from = os.path.join(workdir, "images", run_id, os.path.basename(tarball))
        else:
            ref, digest, tarball, load_from, image_id = (pinned_reference(image), str(image.get("image_digest") or ""),
                                                         "", "", "")
        # One entry per registry reference, or per tarball (cards sharing a build: one load gives every tag).
        images.setdefault(tarball or ref, {"key": image_key, "name": ref, "digest": digest, "id": image_id,
                                           "tarball": tarball, "load_from": load_from})
        with contextlib.suppress(ValueError):  # run_model reports it as the model's FAILURE row
            folder = os.path.normpath(script_location(model)[0])
            sync.append(folder)
            # A folder that is a symlink inside the package: its target goes too (the link is sent as a link).
            real = os.path.relpath(os.path.realpath(os.path.join(mad_dir, folder)), os.path.realpath(mad_dir))
            if real != folder:
                sync.append(real)
        data_path = _local_data_path(model, data_config or {})
        if data_path:
            rel = _rel_inside(data_path, mad_dir)
            if rel:
                sync.append(rel)
        seconds = run_timeout(model, run_ctx, override)
        image_info = {
            "docker_file": str(image.get("dockerfile") or ""), "base_docker": str(image.get("base_docker") or ""),
            "docker_sha": str(image.get("docker_sha") or ""), "image_digest": str(image.get("image_digest") or ""),
            "build_duration": image.get("build_duration", "")}
        models.append({
            "key": key, "name": str(model.get("name") or key), "image": ref, "cred": str(model.get("cred") or ""),
            "task_timeout": int(seconds) + int(step_timeout) if seconds else 0,
            "request": dict(base, key=key, model=model, image=ref,
                            file_stem=stems.get(str(model.get("name") or key), ""), image_info=image_info),
        })
    wanted = []
    for rel in filter(None, (_rel_inside(path, mad_dir) for path in sync)):
        if rel != "." and rel not in wanted and not any(rel.startswith(w + "/") for w in wanted):
            wanted = [w for w in wanted if not w.startswith(rel + "/")] + [rel]
    present = [rel for rel in wanted if os.path.exists(os.path.join(mad_dir, rel))]
    return {"mad_dir": host_mad, "output_dir": output_dir, "images": list(images.values()),
            "image_checks": [{k: image[k] for k in ("name", "digest", "id")} for image in images.values()],
            "sync": present, "missing": [rel for rel in wanted if rel not in present], "models": models}


def _local_data_path(model: Mapping[str, Any], data_config: Mapping[str, Any]) -> str:
    """The host path of a model's ``local`` data source (relative ones live in the MAD tree), or ""."""
    entry = data_config.get(str(model.get("data") or "")) if model.get("data") else None
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Mapping):
        local = entry.get("local")
        if isinstance(local, Mapping):
            local = local.get("path")
        if isinstance(local, str):
            return local
    return ""


# --------------------------------------------------------------------------------------------------
# Host side: one request to its result
# --------------------------------------------------------------------------------------------------

def pull_failure_reason(reason: str, message: str) -> str:
    """The row reason of an image that could not be made present (as the local run words it)."""
    return f"{reason if reason == 'engine unreachable' else 'pull failed'}: {message}"


def failure_result(request: Mapping[str, Any], reason: str, infra_error: bool = True) -> dict[str, Any]:
    """An execute_model-shaped result holding one FAILURE row, for a model that could not start."""
    model = dict(request.get("model") or {"name": request.get("key") or "model"})
    info = request.get("image_info") or {}
    row = failure_row(model, reason, host=request.get("host", ""), run_id=request.get("run_id", ""),
                      image=request.get("image", ""),
                      docker_file=str(info.get("docker_file") or model.get("dockerfile") or ""))
    return {"rows": [row], "log_path": "", "log_tail": [], "container": "", "kept": False, "exec_line": "",
            "infra_error": infra_error}


def complete_request(request: Mapping[str, Any], cred_env: Mapping[str, str] | None = None,
                     detect: Callable[[], HostInfo] = detect_host) -> dict[str, Any]:
    """The execute_model request: context completed from the host's facts, tools resolved, secrets in.

    ``request["facts"]`` are the host's facts (``mad.engine.host_facts``); without them the host is
    detected here. ``request["tools_config"]`` (the tools.json content; none: {}) resolves the context's
    tools, as the local run does.
    Raises ValueError for an unknown tool, a bad tools config or a bad gpu_vendor.
    """
    done = dict(request)
    host = dict(done.get("facts") or gpu_facts(detect()))
    context, facts = run_facts(dict(done.get("context") or {}), host)
    tools_config = done.pop("tools_config", None)
    tools_name = str(done.pop("tools_config_name", "") or "tools config")
    context = prepare_context(context, dict(tools_config or {}), tools_name)
    done.update(context=context, facts=facts, cred_env=dict(cred_env or {}))
    for key in ("error", "infra_error", "key"):
        done.pop(key, None)
    return done


def write_rows(path: str, rows: list[dict[str, str]]) -> None:
    """Write the rows as a JSON list, atomically (a reader never sees half a file)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(rows, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def rows_path(output_dir: str, model_name: str, stem: str = "") -> str:
    return os.path.join(output_dir, f"{stem or file_stem(model_name)}.rows.json")


def run_request(request: Mapping[str, Any], cred_env: Mapping[str, str] | None = None,
                engine: Any = None, detect: Callable[[], HostInfo] = detect_host) -> dict[str, Any]:
    """Run one planned model here; every outcome is a result with rows (nothing raises for a model).

    ``engine`` is an EngineClient or what builds one (a docker_host URL, module params). A request with
    an ``error`` (e.g. its image could not be pulled) runs nothing and gives a FAILURE row with that
    reason. Returns execute_model's keys plus ``model`` (the name), ``key``, ``rows_path`` (the rows as
    JSON beside the logs, when the request has an output_dir), ``changed`` (a container ran, and the engine
    did not fail) and ``msg``.
    """
    name = str((request.get("model") or {}).get("name") or request.get("key") or "model")
    if request.get("error"):
        result = failure_result(request, str(request["error"]), bool(request.get("infra_error", True)))
    else:
        try:
            full = complete_request(request, cred_env, detect)
            problems = preflight(full["model"], full["context"], full["mad_dir"])
        except (ValueError, KeyError, TypeError) as e:
            full, problems = None, [str(e) if not isinstance(e, KeyError) else f"request lacks {e}"]
        if problems or full is None:
            result = failure_result(request, "; ".join(problems), infra_error=False)
        else:
            try:
                client = engine if isinstance(engine, EngineClient) else EngineClient(engine)
            except EngineError as e:
                result = failure_result(request, f"{e.reason}: {e}")
            else:
                try:
                    result = execute_model(client, full)
                except OSError as e:  # the output dir on this host: not the model's fault
                    result = failure_result(request, f"cannot write results on this host: {e}")
    # changed: a container ran; an engine failure (infra_error) means nothing (or nothing whole) ran.
    result = dict(result, model=name, key=str(request.get("key") or ""), rows_path="",
                  changed=bool(result.get("container")) and not result.get("infra_error"))
    if request.get("output_dir"):
        result["rows_path"] = rows_path(str(request["output_dir"]), name, str(request.get("file_stem") or ""))
        write_rows(result["rows_path"], result["rows"])
    statuses = sorted({row.get("status", "") for row in result["rows"]})
    reasons = sorted({row.get("reason", "") for row in result["rows"] if row.get("reason")})
    result["msg"] = f"{name}: {'/'.join(statuses) or 'no rows'}" + (f" ({'; '.join(reasons)})" if reasons else "")
    return result
