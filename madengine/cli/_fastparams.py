"""Start-up speed: coerce madengine's plain option types without Pydantic.

Typer 0.2x coerces every parameter through a Pydantic ``TypeAdapter`` (built even for an option left
at None), so any command pays for importing Pydantic: about 0.25 s, most of `madengine discover`'s
run time. madengine's options are only ``str``, ``bool``, ``int`` (with bounds), ``Path``, string enums
and lists of those; :func:`install` coerces these itself, with Typer's own path checks and messages
(``coerce_cli_path``), and leaves every other parameter (clamped ints, floats...) to Typer.
On a Typer without that machinery (older releases use Click's types) it does nothing.
"""

from __future__ import annotations

import types
from enum import Enum
from pathlib import Path
from typing import Any, Union, get_args, get_origin

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off", ""})


def _plain(annotation: Any) -> Any:
    """``X | None`` → ``X``; anything else unchanged."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _leaf_ok(annotation: Any, info: Any) -> bool:
    if getattr(info, "parser", None) is not None or getattr(info, "click_type", None) is not None:
        return False
    if annotation is str or annotation is bool:
        return True
    if annotation is int:
        return not info.clamp
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return all(isinstance(member.value, str) for member in annotation)
    return isinstance(annotation, type) and issubclass(annotation, Path) and info.path_type is None


def install() -> None:
    """Route madengine's plain parameters past Typer's Pydantic adapters (idempotent)."""
    try:
        from typer import _coercion, _param_types, core
        from typer._click.exceptions import BadParameter
    except ImportError:  # a Typer without Pydantic coercion: nothing to do
        return
    original = getattr(core, "build_runtime_param", None)
    if original is None or getattr(original, "_madengine", False):
        return

    def leaf(annotation: Any, info: Any, value: Any, param: Any, ctx: Any) -> Any:
        if annotation is str:
            if isinstance(value, bytes):
                return value.decode("utf-8", "replace")
            return value if isinstance(value, str) else str(value)
        if annotation is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise BadParameter(f"{value!r} is not a valid boolean.", ctx=ctx, param=param)
        if annotation is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            try:
                number = int(str(value).strip())
            except ValueError:
                raise BadParameter(f"{value!r} is not a valid integer.", ctx=ctx, param=param) from None
            low, high = info.min, info.max
            if (low is not None and number < low) or (high is not None and number > high):
                bounds = " and ".join(part for part in (f">= {low}" if low is not None else "",
                                                        f"<= {high}" if high is not None else "") if part)
                raise BadParameter(f"{number} is not in the range {bounds}.", ctx=ctx, param=param)
            return number
        if isinstance(annotation, type) and issubclass(annotation, Enum):
            if isinstance(value, annotation):
                return value
            text = str(value)
            for member in annotation:
                if member.value == text or (not info.case_sensitive and member.value.lower() == text.lower()):
                    return member
            choices = ", ".join(repr(m.value) for m in annotation)
            raise BadParameter(f"{text!r} is not one of {choices}.", ctx=ctx, param=param)
        checked = _param_types.coerce_cli_path(value, info, path_type=None, param=param, ctx=ctx)
        return checked if isinstance(checked, annotation) else annotation(checked)

    class _Plain(_coercion.RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            annotation = _plain(self.annotation)
            if get_origin(annotation) is list:
                item = get_args(annotation)[0]
                values = value if isinstance(value, (list, tuple)) else [value]
                return [leaf(item, self.parameter_info, v, param, ctx) for v in values]
            return leaf(annotation, self.parameter_info, value, param, ctx)

    def build_runtime_param(descriptor: Any) -> Any:
        annotation = _plain(descriptor.annotation)
        info = descriptor.parameter_info
        if get_origin(annotation) is list and len(get_args(annotation)) == 1:
            annotation = get_args(annotation)[0]
        if descriptor.file_annotation is None and _leaf_ok(annotation, info):
            return _Plain(parameter_info=info, annotation=descriptor.annotation)
        return original(descriptor)

    build_runtime_param._madengine = True  # type: ignore[attr-defined]
    core.build_runtime_param = build_runtime_param
