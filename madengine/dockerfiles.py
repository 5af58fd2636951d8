"""Dockerfile selection (build stage, step 1): a model's Dockerfile prefix → the Dockerfiles to build.

Input: a :class:`~madengine.model.Model` (its ``dockerfile`` prefix, relative to the MAD root) and the
resolved context. Output: :class:`Candidate` records, each with its ``# CONTEXT {...}`` header.

A prefix ``docker/dummy`` has the candidates ``docker/dummy.*Dockerfile``. A candidate may carry
``# CONTEXT {...}`` (a JSON object or a Python dict literal, as upstream MAD files do) in its first 5
lines; it is dropped when a key of that header is in the context with a different value (compared
case-insensitively for ``gpu_vendor`` and ``guest_os``). A missing or unreadable header matches anything.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DOCKERFILE_SUFFIX = ".Dockerfile"
HEADER_LINES = 5
#: Header keys whose values are compared case-insensitively ("amd" matches "AMD").
CASE_INSENSITIVE_KEYS = frozenset({"gpu_vendor", "guest_os"})

_HEADER = re.compile(r"^\s*#\s*CONTEXT\s+(.*?)\s*$")
_ARG = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:\s*=\s*(.*?))?\s*$", re.IGNORECASE)
_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", re.IGNORECASE)
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-+][^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass
class Candidate:
    """One Dockerfile a model may use, with its parsed ``# CONTEXT`` header."""

    path: Path
    #: The header as a dict; None when there is none or it could not be read ("matches anything").
    header: dict[str, Any] | None = None
    #: The header text as written (for messages), "" when absent.
    header_text: str = ""
    #: Why a present header was ignored, if it was.
    header_error: str | None = None

    @property
    def stem(self) -> str:
        """The file name without ``.Dockerfile`` (``dummy.ubuntu.amd``): used in image and log names."""
        return dockerfile_stem(self.path)


@dataclass
class Selection:
    """The candidates of one model: all found, and those the context keeps."""

    pattern: str
    candidates: list[Candidate] = field(default_factory=list)
    selected: list[Candidate] = field(default_factory=list)

    def describe(self) -> str:
        """The candidates and their headers, one per line, for a "no Dockerfile matches" error."""
        lines = []
        for cand in self.candidates:
            if cand.header is None:
                note = f" (unreadable header ignored: {cand.header_error})" if cand.header_error else ""
                lines.append(f"  {cand.path.name}: no CONTEXT header{note}")
            else:
                lines.append(f"  {cand.path.name}: # CONTEXT {json.dumps(cand.header, sort_keys=True)}")
        return "\n".join(lines)


def dockerfile_stem(path: Path | str) -> str:
    name = Path(path).name
    return name[: -len(DOCKERFILE_SUFFIX)] if name.endswith(DOCKERFILE_SUFFIX) else name


def parse_header(text: str) -> tuple[dict[str, Any] | None, str, str | None]:
    """Find ``# CONTEXT {...}`` in the first 5 lines of a Dockerfile's text.

    Returns ``(header, header_text, error)``: header is None when absent or unreadable (error says why).
    The value may be JSON or a Python dict literal (``{'gpu_vendor': 'AMD'}``).
    """
    for line in text.splitlines()[:HEADER_LINES]:
        match = _HEADER.match(line)
        if not match:
            continue
        raw = match.group(1)
        try:
            value = json.loads(raw)
        except ValueError:
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
                return None, raw, f"not a JSON object or Python dict literal ({type(exc).__name__})"
        if not isinstance(value, dict):
            return None, raw, f"a {type(value).__name__}, not a dict"
        return {str(k): v for k, v in value.items()}, raw, None
    return None, "", None


def read_candidate(path: Path) -> Candidate:
    """A candidate with its header; an unreadable file also counts as "no header" (matches anything)."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            head = "".join(fh.readline() for _ in range(HEADER_LINES))
    except OSError as exc:
        log.warning("%s: cannot read the CONTEXT header (%s); it matches any context", path, exc.strerror)
        return Candidate(path, None, "", f"unreadable file: {exc.strerror or exc}")
    header, raw, error = parse_header(head)
    if error:
        log.warning("%s: ignoring the CONTEXT header %r: %s; it matches any context", path, raw, error)
    return Candidate(path, header, raw, error)


def find_candidates(mad_dir: Path, prefix: str) -> tuple[str, list[Candidate]]:
    """The Dockerfiles ``<prefix>.*Dockerfile`` under ``mad_dir``, sorted by name.

    A prefix that already names a file (``docker/x.Dockerfile``) is that one file. Returns the glob
    pattern (relative to the MAD root, for messages) and the candidates.
    """
    base = Path(prefix) if Path(prefix).is_absolute() else mad_dir / prefix
    pattern = f"{prefix}.*Dockerfile"
    folder, name = base.parent, base.name
    paths: list[Path] = []
    if folder.is_dir():
        paths = sorted(p for p in folder.glob(f"{_glob_escape(name)}.*Dockerfile") if p.is_file())
    if not paths and base.is_file():
        paths = [base]
    return pattern, [read_candidate(p) for p in paths]


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def header_matches(header: Mapping[str, Any] | None, context: Mapping[str, Any]) -> bool:
    """False when a key of ``header`` is in ``context`` with a different value."""
    if not header:
        return True
    for key, wanted in header.items():
        if key not in context:
            continue
        if not _same(key, wanted, context[key]):
            return False
    return True


def _same(key: str, header_value: Any, context_value: Any) -> bool:
    if header_value == context_value:
        return True
    if isinstance(header_value, (str, int, float)) and isinstance(context_value, (str, int, float)) \
            and not isinstance(header_value, bool) and not isinstance(context_value, bool):
        a, b = str(header_value).strip(), str(context_value).strip()
        if key in CASE_INSENSITIVE_KEYS:
            return a.casefold() == b.casefold()
        return a == b
    return False


def select_dockerfiles(mad_dir: Path, prefix: str, context: Mapping[str, Any]) -> Selection:
    """Every candidate of ``prefix`` and those whose header matches ``context``."""
    pattern, candidates = find_candidates(mad_dir, prefix)
    selected = [c for c in candidates if header_matches(c.header, context)]
    return Selection(pattern, candidates, selected)


# ------------------------------------------------------------------------------------- base image
def base_image(text: str, build_args: Mapping[str, str]) -> str:
    """The image of the first ``FROM``, with ``$VAR``/``${VAR}`` taken from ARGs and build args.

    Upstream madengine reports ``BASE_DOCKER`` the same way (the build arg, else the ARG default).
    Returns "" when the Dockerfile has no FROM.
    """
    args: dict[str, str] = {}
    for line in _logical_lines(text):
        from_match = _FROM.match(line)
        if from_match:
            return _substitute(from_match.group(1), args)
        arg_match = _ARG.match(line)
        if arg_match:
            name, default = arg_match.group(1), arg_match.group(2)
            if name in build_args:
                args[name] = build_args[name]
            elif default is not None:
                args[name] = _unquote(default)
    return ""


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _substitute(image: str, args: Mapping[str, str]) -> str:
    return _VAR.sub(lambda m: args.get(m.group(1) or m.group(2), ""), image)
