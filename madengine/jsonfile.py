"""JSON in and out: the documents madengine hands between stages (manifest, execution config), read
with one-screen, exit-4 errors that name the file and say how to get a good one; and the fast reader
and writer that discovery uses for thousands of cards."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from madengine.errors import InvalidInputError

# 19 digits in a row may be an integer beyond 64 bits, which orjson would read as a float. Found by
# turning every digit into "0" and looking for 19 of them: a tenth of the time a regex takes.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19


def loads(data: bytes) -> Any:
    """``json.loads`` with the same result, at orjson's speed for the usual document.

    orjson refuses some documents the standard library reads (NaN, a BOM, lone surrogates) and reads
    integers beyond 64 bits as floats: then ``json`` decides, so the result and the errors are json's.
    """
    if _LONG_NUMBER not in data.translate(_DIGITS_TO_ZERO):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def json_lines_array(items: Iterable[Any]) -> str:
    """A JSON array with one item a line (diff- and grep-friendly), encoded by orjson.

    An item orjson cannot encode (an integer beyond 64 bits) is encoded by ``json`` instead.
    """
    lines = []
    for item in items:
        try:
            lines.append(orjson.dumps(item).decode())
        except orjson.JSONEncodeError:
            lines.append(json.dumps(item))
    if not lines:
        return "[]\n"
    return "[\n  " + ",\n  ".join(lines) + "\n]\n"


def read_json_document(path: Path | str, what: str, *, option: str, missing_hint: str, malformed_hint: str,
                       example: str | None = None) -> Any:
    """The parsed JSON of `path`. Raises InvalidInputError when it is missing, a folder, unreadable,
    not UTF-8, or malformed (with line and column)."""
    file = Path(path)
    where = str(file)
    if not file.exists():
        raise InvalidInputError(f"{what} not found: {where}", hint=missing_hint, example=example)
    if file.is_dir():
        raise InvalidInputError(f"{what} {where} is a folder, not a file",
                                hint=f"{option} takes the {file.name} file itself")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInputError(f"{what} {where} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{what} {where} is not UTF-8 text ({exc.reason})") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidInputError(f"{what} {where} is nested too deeply", hint=malformed_hint,
                                example=example) from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{what} {where} is malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            hint=malformed_hint, example=example) from None
