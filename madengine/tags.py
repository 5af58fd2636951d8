"""The ``--tags`` grammar: pure functions, no file access.

A tag is ``SELECTOR[:PART]...``:

* ``dummy`` selects models whose name is ``dummy`` or whose ``tags`` list holds ``dummy``;
  ``all`` selects every model.
* ``dummy2/dummy_2`` and ``dummy2:dummy_2`` select model ``dummy_2`` of ``scripts/dummy2/`` (full
  name ``dummy2/dummy_2``); ``dummy3/all`` and ``dummy3:all`` select every model of that dir. Dirs
  nest: ``MAD-private/inference/m`` (or ``MAD-private/inference:m``) is model ``m`` of
  ``scripts/MAD-private/inference/`` (the longest dir the tag starts with wins).
* a simple tag that matches no card name or tag selects the scripts-dir cards whose short name it is
  (``pyt_vllm_deepseek-r1`` → ``vllm/pyt_vllm_deepseek-r1``); in several dirs, all of them, with a
  warning (discovery does this: it knows the cards).
  ``a:b`` is dir:model only when ``a`` is a scripts dir and ``b`` has no ``=``; otherwise ``a`` is a
  simple tag and ``b`` its first parameter.
* every further ``k=v`` part is a parameter: it is handed to a ``get_models_json.py`` that accepts
  parameters and appended as `` --k v`` to the selected models' ``args``; a bare ``word`` appends
  `` --word``.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from madengine.errors import InvalidInputError

ALL = "all"

_EXAMPLE = "madengine discover --tags dummy\nmadengine discover --tags dummy3:dummy_3:batch_size=512"


@dataclass(frozen=True)
class TagSpec:
    """One parsed tag."""

    #: The tag as the user wrote it.
    raw: str
    #: "all" (everything), "simple" (a model name or tag) or "dir" (a model, or all, of one scripts dir).
    kind: str
    #: simple: the name or tag to match; dir: the model's short name (or tag), or "all"; all: "all".
    name: str
    #: The scripts dir for kind "dir".
    dir: str | None = None
    #: The ``k=v`` parameters, in order.
    params: dict[str, str] = field(default_factory=dict)
    #: What gets appended to ``args``, one item per part: ``"--k v"`` or ``"--word"``.
    arg_parts: tuple[str, ...] = ()

    @property
    def extra_args(self) -> str:
        """The text appended to a selected model's ``args`` (`` --k v --word``), or ""."""
        return "".join(" " + part for part in self.arg_parts)

    def matches(self, model: Any) -> bool:
        """Whether this tag selects ``model`` (anything with ``name``, ``tags`` and ``dir``)."""
        return matches(self, model.name, model.tags, model.dir)


def split_tags(values: Iterable[str] | None) -> list[str]:
    """Flatten repeated ``--tags`` values, splitting each on commas and dropping empty items."""
    out: list[str] = []
    for value in values or ():
        for item in value.split(","):
            item = item.strip()
            if item:
                out.append(item)
    return out


def _bad_tag(tag: str, why: str) -> InvalidInputError:
    return InvalidInputError(
        f"Malformed tag {tag!r}: {why}",
        hint="a tag is NAME_OR_TAG[:key=value]..., DIR:MODEL[:key=value]... or DIR/all",
        example=_EXAMPLE,
    )


def parse_params(tag: str, parts: Iterable[str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """Parse the parameter parts of a tag: ``k=v`` → param and ``--k v``; ``word`` → ``--word``."""
    params: dict[str, str] = {}
    arg_parts: list[str] = []
    for part in parts:
        if "=" in part:
            key, _, value = part.partition("=")
            key, value = key.strip().lstrip("-").strip(), value.strip()
            if not key:
                raise _bad_tag(tag, f"parameter {part!r} has no name before '='")
            params[key] = value
            arg_parts.append(f"--{key} {value}" if value else f"--{key}")
        else:
            word = part.lstrip("-").strip()
            if not word:
                raise _bad_tag(tag, f"flag {part!r} has no name")
            arg_parts.append(f"--{word}")
    return params, tuple(arg_parts)


def parse_tag(tag: str, dir_names: Collection[str] = ()) -> TagSpec:
    """Parse one tag. ``dir_names`` are the scripts dirs of the MAD package (for ``a:b`` and ``a/b``)."""
    raw = tag.strip()
    parts = [p.strip() for p in raw.split(":")]
    if not raw or not parts[0]:
        raise _bad_tag(tag, "it must start with a model name, a tag, a DIR/MODEL or 'all'")
    parts = [parts[0]] + [p for p in parts[1:] if p]
    head = parts[0]
    if "=" in head:
        raise _bad_tag(tag, f"{head!r} is a parameter; put a model name or tag before it")
    kind, name, dir_, rest = "simple", head, None, parts[1:]
    if "/" in head:
        # The longest scripts dir the head starts with: dirs nest (``MAD-private/inference/model``).
        cut = len(head)
        while (cut := head.rfind("/", 0, cut)) > 0:
            if head[:cut] in dir_names and head[cut + 1:]:
                kind, name, dir_ = "dir", head[cut + 1:], head[:cut]
                break
        if kind == "simple" and head in dir_names and rest and "=" not in rest[0]:
            kind, name, dir_, rest = "dir", rest[0], head, rest[1:]
    elif head in dir_names and rest and "=" not in rest[0]:
        kind, name, dir_, rest = "dir", rest[0], head, rest[1:]
    elif head == ALL:
        kind = "all"
    params, arg_parts = parse_params(tag, rest)
    return TagSpec(raw=raw, kind=kind, name=name, dir=dir_, params=params, arg_parts=arg_parts)


def parse_tags(tags: Iterable[str] | None, dir_names: Collection[str] = ()) -> list[TagSpec]:
    """:func:`split_tags` then :func:`parse_tag` each; no tags at all means ``[all]``."""
    specs = [parse_tag(t, dir_names) for t in split_tags(tags)]
    return specs or [TagSpec(raw=ALL, kind="all", name=ALL)]


def short_name(name: str, dir_: str | None) -> str:
    """A model's name without its ``<dir>/`` prefix."""
    if dir_ and name.startswith(dir_ + "/"):
        return name[len(dir_) + 1:]
    return name


def matches(spec: TagSpec, name: str, tags: Collection[str], dir_: str | None) -> bool:
    """Whether ``spec`` selects the model with this name, tags and scripts dir."""
    if spec.kind == "all":
        return True
    if spec.kind == "dir":
        if dir_ != spec.dir:
            return False
        return spec.name == ALL or short_name(name, dir_) == spec.name or spec.name in tags
    return name == spec.name or spec.name in tags


def append_args(args: str, spec: TagSpec) -> str:
    """A model's ``args`` with the tag's parameters appended (as upstream madengine does)."""
    return args + spec.extra_args


def suggest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Close matches of ``word`` among ``candidates`` (case-insensitive exact matches first)."""
    unique = list(dict.fromkeys(c for c in candidates if c))
    lower = word.lower()
    exact = [c for c in unique if c.lower() == lower and c != word]
    close = difflib.get_close_matches(word, unique, n=n, cutoff=0.6)
    return list(dict.fromkeys(exact + close))[:n]


__all__ = ["ALL", "TagSpec", "append_args", "matches", "parse_params", "parse_tag", "parse_tags",
           "short_name", "split_tags", "suggest"]
