# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Filters of the mad.engine.run_models role: a manifest's plan for one host (module_utils._plan)."""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.mad.engine.plugins.module_utils._image import pinned_reference as _pinned_reference
from ansible_collections.mad.engine.plugins.module_utils._plan import host_plan, select_keys
from ansible_collections.mad.engine.plugins.module_utils._request import pull_failure_reason


def _read_json(path: str, what: str) -> dict[str, Any]:
    if not path or not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8-sig") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as e:
        raise AnsibleFilterError(f"{what} {path} cannot be read as JSON: {e}") from None
    if not isinstance(data, dict):
        raise AnsibleFilterError(f"{what} {path} must hold a JSON object")
    return data


def run_plan(manifest: dict, host: str, run_id: str, workdir: str, mad_dir: str, models: list | None = None,
             assignments: dict | None = None, context: dict | None = None, options: dict | None = None,
             tools_config: str = "", data_config: str = "", image_transfer: str = "registry",
             image_tarballs: dict | None = None, step_timeout: int = 600) -> dict[str, Any]:
    if not isinstance(manifest, dict) or "built_images" not in manifest:
        raise AnsibleFilterError("run_plan: the input is not a build manifest (no built_images); "
                                 "give run_models_manifest or run_models_manifest_file")
    if not mad_dir:
        raise AnsibleFilterError("run_plan: no MAD root: set run_models_mad_dir (the manifest has no mad_dir)")
    keys = select_keys(manifest, list(models or []), dict(assignments or {}), host)
    try:
        return host_plan(
            manifest, keys, host=host, run_id=run_id, workdir=workdir, mad_dir=mad_dir, context=context,
            options=options, tools_config=_read_json(tools_config, "tools config"),
            tools_config_name=tools_config or "tools config", tools_config_path=tools_config,
            data_config=_read_json(data_config, "data config"), data_config_path=data_config,
            image_transfer=image_transfer, image_tarballs=image_tarballs, step_timeout=int(step_timeout))
    except ValueError as e:
        raise AnsibleFilterError(f"run_plan: {e}") from None


def pull_errors(results: list) -> dict[str, str]:
    """{image reference: FAILURE row reason} of the failed items of a registered mad.engine.image loop."""
    errors = {}
    for result in results or []:
        if isinstance(result, dict) and result.get("failed"):
            item = result.get("item") or {}
            ref = item.get("name") if isinstance(item, dict) else str(item)
            errors[str(ref)] = pull_failure_reason(str(result.get("reason") or ""), str(result.get("msg") or ""))
    return errors


def pinned_reference(image: dict) -> str:
    return _pinned_reference(image or {})


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"run_plan": run_plan, "pull_errors": pull_errors, "pinned_reference": pinned_reference}
