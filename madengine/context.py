"""Additional context: the settings a user gives with --additional-context / --additional-context-file.

``parse_context`` reads and merges both sources, ``validate_context`` type-checks and normalises the
known keys (unknown keys pass through untouched), ``require_build_context`` enforces what build-only
commands need, ``resolve_run_context`` fills gaps from host detection for ``run``, and ``mask_secrets``
hides credentials before anything is shown or written.
"""

from __future__ import annotations

import ast
import copy
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ansible_collections.mad.engine.plugins.module_utils._runspec import (
    GPU_VENDORS,
    parse_gpu_ranges,
)

from madengine.errors import InvalidInputError
from madengine.hostinfo import HostInfo, detect_host

logger = logging.getLogger(__name__)

CLI_SOURCE = "--additional-context"
FILE_OPTION = "--additional-context-file"

GUEST_OSES = ("UBUNTU", "CENTOS", "ROCKY")
BUILD_REQUIRED_KEYS = ("gpu_vendor", "guest_os")
BUILD_ONLY_COMMANDS = ("build", "export-config")


_EXAMPLE_CONTEXT = '{"gpu_vendor": "AMD", "guest_os": "UBUNTU"}'
_MAX_INDEX = 65535  # the largest GPU or CPU index a range may name

# A valid value per known key, used in error examples.
_KEY_EXAMPLES: dict[str, str] = {
    "gpu_vendor": '"AMD"',
    "guest_os": '"UBUNTU"',
    "docker_build_arg": '{"BASE_DOCKER": "rocm/pytorch:latest"}',
    "docker_env_vars": '{"HIP_VISIBLE_DEVICES": "0"}',
    "docker_mounts": '{"/data": "/home/user/data"}',
    "docker_gpus": '"0,2-4"',
    "docker_cpus": '"0-15"',
    "tools": '[{"name": "rocprof"}]',
    "pre_scripts": '[{"path": "scripts/common/pre_scripts/setup.sh", "args": "-v"}]',
    "post_scripts": '[{"path": "scripts/common/post_scripts/collect.sh"}]',
    "model_args": '"--batch-size 32"',
    "timeout": "3600",
    "data": '"/data"',
}


# --------------------------------------------------------------------------------------------------
# Parsing and merging
# --------------------------------------------------------------------------------------------------

def parse_context(text: str | None, file: Path | str | None) -> dict[str, Any]:
    """Parse, merge (file first, then the string, recursively; the string wins) and validate context."""
    merged: dict[str, Any] = {}
    if file is not None:
        path = Path(file)
        merged = _validate(_load_file(path), str(path))
    if text is not None and text.strip():
        merged = deep_merge(merged, _validate(_load_text(text), CLI_SOURCE))
    _log_unknown_keys(merged)
    return merged


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``override`` on top of ``base``; nested dicts are merged key by key, lists replaced."""
    result = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _load_text(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidInputError(f"{CLI_SOURCE} is nested too deeply to be a context",
                                hint=f"Pass one flat JSON object, e.g. {CLI_SOURCE} '{_EXAMPLE_CONTEXT}'") from None
    except json.JSONDecodeError as json_error:
        # Upstream madengine accepted Python dict literals ({'a': True}); keep accepting them.
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise InvalidInputError(
                f"Invalid JSON in {CLI_SOURCE}: {json_error.msg} "
                f"(line {json_error.lineno}, column {json_error.colno})",
                hint=("Pass one JSON object with double-quoted keys and strings, wrapped in single "
                      f"quotes for the shell, e.g. {CLI_SOURCE} '{_EXAMPLE_CONTEXT}'"),
            ) from None
    if not isinstance(value, dict):
        raise InvalidInputError(
            f"{CLI_SOURCE} must be a JSON object, got {_describe(value)}",
            hint=f"Wrap the settings in braces, e.g. {CLI_SOURCE} '{_EXAMPLE_CONTEXT}'",
        )
    return value


def _load_file(path: Path) -> dict[str, Any]:
    hint = f"{FILE_OPTION} takes a JSON file holding one object, e.g. {_EXAMPLE_CONTEXT}"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInputError(f"Additional context file not found: {path}",
                                hint=f"Check the path given to {FILE_OPTION}.") from None
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"Cannot read additional context file {path}: not UTF-8 text ({exc.reason})",
                                hint=hint) from None
    except OSError as exc:
        raise InvalidInputError(f"Cannot read additional context file {path}: {exc.strerror or exc}",
                                hint=f"Check that {path} is a readable file.") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidInputError(f"Additional context file {path} is nested too deeply to be a context",
                                hint=hint) from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"Invalid JSON in additional context file {path}: {exc.msg} "
            f"(line {exc.lineno}, column {exc.colno})",
            hint=hint + ". JSON allows no comments, trailing commas or single quotes.",
        ) from None
    if not isinstance(value, dict):
        raise InvalidInputError(
            f"Additional context file {path} must contain a JSON object, got {_describe(value)}",
            hint=hint,
        )
    return value


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------

class _Invalid(Exception):
    """Raised by the per-key checkers; turned into InvalidInputError naming key and source."""

    def __init__(self, key: str, expected: str, value: Any) -> None:
        super().__init__(key)
        self.key = key
        self.expected = expected
        self.value = value


def validate_context(ctx: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Type-check and normalise the known keys of ``ctx``; returns a new dict.

    ``source`` (a file name or ``--additional-context``) is named in error messages. Unknown keys are
    user settings for other components: they are kept untouched and logged at debug level.
    """
    result = _validate(ctx, source)
    _log_unknown_keys(result)
    return result


def _validate(ctx: Any, source: str) -> dict[str, Any]:
    if not isinstance(ctx, Mapping):
        raise InvalidInputError(f"Additional context from {source} must be a JSON object, "
                                f"got {_describe(ctx)}",
                                hint=f"e.g. {CLI_SOURCE} '{_EXAMPLE_CONTEXT}'")
    result: dict[str, Any] = {}
    for key, value in ctx.items():
        checker = _CHECKERS.get(key) if isinstance(key, str) else None
        if checker is None:
            result[key] = copy.deepcopy(value)
            continue
        try:
            result[key] = checker(key, value)
        except _Invalid as exc:
            raise InvalidInputError(
                f"Invalid '{exc.key}' in {source}: expected {exc.expected}, got {_describe(exc.value)}",
                hint=f"Fix '{exc.key}' in {source}.",
                example=f"{CLI_SOURCE} '{{\"{key}\": {_KEY_EXAMPLES[key]}}}'",
            ) from None
    return result


def _log_unknown_keys(ctx: Mapping[str, Any]) -> None:
    unknown = [str(k) for k in ctx if k not in _CHECKERS]
    if unknown:
        logger.debug("Additional context keys passed through unchecked: %s", ", ".join(sorted(unknown)))


def _describe(value: Any) -> str:
    kind = _json_type(value)
    if value is None:
        return kind
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def _choice(allowed: tuple[str, ...]) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if isinstance(value, str) and value.strip().upper() in allowed:
            return value.strip().upper()
        raise _Invalid(key, "one of " + ", ".join(allowed) + " (case-insensitive)", value)

    return check


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(key, "a string", value)
    return value


def _scalar_to_str(key: str, value: Any, *, allow_bool: bool) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        if allow_bool:
            return "true" if value else "false"  # as the user wrote it in JSON
    elif isinstance(value, (int, float)):
        return str(value)
    expected = "a string, number or boolean" if allow_bool else "a string or number"
    raise _Invalid(key, expected, value)


def _str_map(key: str, value: Any, *, allow_bool: bool) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _Invalid(key, "an object mapping names to strings", value)
    result: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name:
            raise _Invalid(key, "an object with non-empty string names", name)
        result[name] = _scalar_to_str(f"{key}.{name}", item, allow_bool=allow_bool)
    return result


def _build_args(key: str, value: Any) -> dict[str, str]:
    return _str_map(key, value, allow_bool=False)


def _env_vars(key: str, value: Any) -> dict[str, str]:
    return _str_map(key, value, allow_bool=True)


def _mounts(key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _Invalid(key, "an object mapping container paths to host paths", value)
    result: dict[str, str] = {}
    for container_path, host_path in value.items():
        if not isinstance(container_path, str) or not container_path.startswith("/"):
            raise _Invalid(key, "absolute container paths (starting with '/') as names", container_path)
        if not isinstance(host_path, str) or not host_path:
            raise _Invalid(f"{key}.{container_path}", "a non-empty host path string", host_path)
        result[container_path] = host_path
    return result


def _ranges(*, allow_all: bool) -> Callable[[str, Any], str]:
    expected = "a string of indices and ranges like \"0,2-4\""
    if allow_all:
        expected += " or \"all\""
    expected += ", or a non-negative integer"

    def check(key: str, value: Any) -> str:
        if isinstance(value, bool):
            raise _Invalid(key, expected, value)
        if isinstance(value, int):
            if 0 <= value <= _MAX_INDEX:
                return str(value)
            raise _Invalid(key, expected, value)
        if not isinstance(value, str):
            raise _Invalid(key, expected, value)
        spec = "".join(value.split())
        if allow_all and spec.lower() == "all":
            return "all"
        try:
            parse_gpu_ranges(spec)
        except ValueError:
            raise _Invalid(key, expected, value) from None
        return spec

    return check


def _entry_list(key: str, value: Any, required: str, item_check: Callable[[str, dict], None],
                shape: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _Invalid(key, f"an array of {shape}", value)
    result = []
    for index, entry in enumerate(value):
        where = f"{key}[{index}]"
        if not isinstance(entry, Mapping):
            raise _Invalid(where, shape, entry)
        item = copy.deepcopy(dict(entry))
        if not isinstance(item.get(required), str) or not item[required].strip():
            raise _Invalid(f"{where}.{required}", "a non-empty string", item.get(required))
        item_check(where, item)
        result.append(item)
    return result


def _tools(key: str, value: Any) -> list[dict[str, Any]]:
    def check(where: str, item: dict) -> None:
        if "cmd" in item:
            item["cmd"] = _string(f"{where}.cmd", item["cmd"])
        if "env_vars" in item:
            item["env_vars"] = _env_vars(f"{where}.env_vars", item["env_vars"])

    return _entry_list(key, value, "name", check, 'objects like {"name": "rocprof"}')


def _scripts(key: str, value: Any) -> list[dict[str, Any]]:
    def check(where: str, item: dict) -> None:
        if "args" in item:
            item["args"] = _string(f"{where}.args", item["args"])

    return _entry_list(key, value, "path", check, 'objects like {"path": "script.sh", "args": "..."}')


def _timeout(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise _Invalid(key, "an integer number of seconds >= -1", value)
    return value


_CHECKERS: dict[str, Callable[[str, Any], Any]] = {
    "gpu_vendor": _choice(GPU_VENDORS),
    "guest_os": _choice(GUEST_OSES),
    "docker_build_arg": _build_args,
    "docker_env_vars": _env_vars,
    "docker_mounts": _mounts,
    "docker_gpus": _ranges(allow_all=True),
    "docker_cpus": _ranges(allow_all=False),
    "tools": _tools,
    "pre_scripts": _scripts,
    "post_scripts": _scripts,
    "model_args": _string,
    "timeout": _timeout,
    "data": _string,
}


# --------------------------------------------------------------------------------------------------
# Requirements and resolution
# --------------------------------------------------------------------------------------------------

def require_build_context(ctx: Mapping[str, Any], command: str = "build") -> None:
    """Build-only commands cannot detect the target GPU, so gpu_vendor and guest_os must be given."""
    missing = [key for key in BUILD_REQUIRED_KEYS if not ctx.get(key)]
    if not missing:
        return
    raise InvalidInputError(
        "Additional context is required for build-only operations "
        f"(missing: {', '.join(missing)})",
        hint=(f"'{command}' does not detect GPUs on this machine: give the target gpu_vendor and "
              f"guest_os with {CLI_SOURCE} or {FILE_OPTION}."),
        example=(f"madengine-cli {command} --tags dummy \\\n"
                 f"  {CLI_SOURCE} '{_EXAMPLE_CONTEXT}'"),
    )


def resolve_run_context(ctx: Mapping[str, Any],
                        detect: Callable[[], HostInfo] = detect_host) -> dict[str, Any]:
    """A copy of ``ctx`` with gpu_vendor, gpu_count and gpu_architecture filled in from the host.

    Given keys always win; ``detect`` is only called when at least one of them is missing (or null).
    """
    result = copy.deepcopy(dict(ctx))
    missing = [key for key in ("gpu_vendor", "gpu_count", "gpu_architecture") if result.get(key) is None]
    if not missing:
        return result
    host = detect()
    detected = {"gpu_vendor": host.gpu_vendor, "gpu_count": host.gpu_count,
                "gpu_architecture": host.gpu_architecture}
    for key in missing:
        result[key] = detected[key]
    logger.debug("Filled %s from host detection: %s", ", ".join(missing),
                 {key: detected[key] for key in missing})
    given_vendor = ctx.get("gpu_vendor")
    if given_vendor is not None and str(given_vendor).upper() != host.gpu_vendor:
        logger.warning("gpu_vendor %s was given but this host looks like %s", given_vendor, host.gpu_vendor)
    return result

