# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Controller side: from a build manifest to the requests of the models a run executes.

Every executor plans here: the local run (``madengine/execute/local.py``), the ``mad.engine.run_models``
role (its ``mad.engine.run_plan`` filter), ``generate ansible`` (``madengine/ansible_bundle.py``), SLURM
(``madengine/execute/slurm.py``) and ``generate k8s`` (``madengine/k8s.py``). :func:`model_request` is
one model's request; :func:`host_plan` adds what a remote host needs besides (the images to make present,
the MAD paths to sync). Running a request on a host is :mod:`._request`'s. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._execute import file_stems
from ansible_collections.mad.engine.plugins.module_utils._image import pinned_reference
from ansible_collections.mad.engine.plugins.module_utils._paths import OutsideError, card_problems, inside
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


def plan_stems(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Each model's log and rows file stem (``_execute.file_stems``), over every model of the manifest so a
    model keeps its stem whichever host or executor runs it."""
    built_models = manifest.get("built_models") or {}
    return file_stems(str((r or {}).get("name") or k) for k, r in built_models.items() if isinstance(r, Mapping))


def model_request(manifest: Mapping[str, Any], key: str, base: Mapping[str, Any], *, mad_dir: str,
                  stems: Mapping[str, str]) -> dict[str, Any]:
    """One model's part of every executor's plan: ``base`` (what all the run's requests share) plus the
    card, its image reference (pinned by digest when the manifest has one), the image facts its row
    records and its file stem.

    Returns ``{"key", "name", "model", "image_key", "image" (the built_images record, {} if none),
    "request"}``. A key the manifest does not know, an image missing from ``built_images`` or a card path
    outside the MAD package (``_paths.card_problems``, checked before anything is sent) gives a request
    with an ``error`` instead: that model's FAILURE row, nothing of it run.
    """
    record = (manifest.get("built_models") or {}).get(key)
    found = _image_entry(manifest, record, key) if isinstance(record, Mapping) else None
    if found is None:
        reason = (f"model {key} is not in the manifest's built_models" if record is None
                  else f"model {key}: its image is not in the manifest's built_images")
        name = str((record or {}).get("name") or key)
        return {"key": key, "name": name, "model": {"name": name}, "image_key": "", "image": {},
                "request": dict(base, key=key, error=reason, model={"name": name})}
    image_key, image = found
    model = {k: v for k, v in record.items() if k != "docker_image"}
    name = str(model.get("name") or key)
    problems = card_problems(model, mad_dir)
    if problems:
        return {"key": key, "name": name, "model": model, "image_key": image_key, "image": image,
                "request": dict(base, key=key, error="; ".join(problems), model=model)}
    ref = pinned_reference(image)
    image_info = {
        "docker_file": str(image.get("dockerfile") or ""), "base_docker": str(image.get("base_docker") or ""),
        "docker_sha": str(image.get("docker_sha") or ""), "image_digest": str(image.get("image_digest") or ""),
        "build_duration": image.get("build_duration", "")}
    return {"key": key, "name": name, "model": model, "image_key": image_key, "image": image,
            "request": dict(base, key=key, model=model, image=ref, file_stem=stems.get(name, ""),
                            image_info=image_info)}


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
    stems = plan_stems(manifest)
    for key in keys:
        planned = model_request(manifest, key, base, mad_dir=mad_dir, stems=stems)
        model, image, request = planned["model"], planned["image"], planned["request"]
        if "error" in request:
            models.append({"key": key, "name": planned["name"], "image": "", "cred": "",
                           "task_timeout": step_timeout, "request": dict(request, infra_error=False)})
            continue
        image_key = planned["image_key"]
        tarball, image_id = _tarball(tarballs.get(image_key) or tarballs.get(str(image.get("docker_image") or "")))
        if image_transfer == "copy" and tarball:
            ref, digest = str(image.get("docker_image") or image_key), ""
            load_from = os.path.join(workdir, "images", run_id, os.path.basename(tarball))
            request["image"] = ref
        else:
            ref, digest = request["image"], str(image.get("image_digest") or "")
            tarball, load_from, image_id = "", "", ""
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
        models.append({
            "key": key, "name": planned["name"], "image": ref, "cred": str(model.get("cred") or ""),
            "task_timeout": int(seconds) + int(step_timeout) if seconds else 0, "request": request,
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
