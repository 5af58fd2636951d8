"""Model discovery: read a MAD package in place and select its models by tag.

Three sources, in this discovery order:

1. ``models.json`` at the MAD root (source "root");
2. ``scripts/<dir>/models.json`` (source "dir"), dirs sorted by name;
3. ``scripts/<dir>/get_models_json.py`` (source "dynamic"): imported, its ``list_models()`` called.

Names from a scripts dir become ``<dir>/<name>`` and their relative paths are resolved against
``scripts/<dir>/``. See :mod:`madengine.tags` for the tag grammar.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import itertools
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from madengine.errors import InvalidInputError
from madengine.model import Model, model_from_raw
from madengine.tags import ALL, TagSpec, matches, parse_tags, split_tags, suggest

log = logging.getLogger(__name__)

MODELS_JSON = "models.json"
SCRIPTS_DIR = "scripts"
DYNAMIC_SCRIPT = "get_models_json.py"

_MAD_HINT = ("point --mad-dir (or the MAD_DIR environment variable) at a MAD package: "
             "the folder holding models.json and scripts/")
_MAD_EXAMPLE = "madengine discover --mad-dir examples/MAD\nMAD_DIR=/path/to/MAD madengine discover"
_module_counter = itertools.count()


# --------------------------------------------------------------------------------------------- MAD dir
def _check_mad_dir(path: Path, origin: str) -> None:
    if not path.exists():
        raise InvalidInputError(f"MAD package folder {str(path)!r} ({origin}) does not exist",
                                hint=_MAD_HINT, example=_MAD_EXAMPLE)
    if not path.is_dir():
        raise InvalidInputError(f"MAD package path {str(path)!r} ({origin}) is not a folder",
                                hint=_MAD_HINT, example=_MAD_EXAMPLE)
    if not (path / MODELS_JSON).is_file() and not (path / SCRIPTS_DIR).is_dir():
        raise InvalidInputError(f"{str(path)!r} ({origin}) is not a MAD package: it has neither "
                                f"{MODELS_JSON} nor {SCRIPTS_DIR}/", hint=_MAD_HINT, example=_MAD_EXAMPLE)


def resolve_mad_dir(mad_dir: Path | str | None = None) -> Path:
    """The MAD package root: ``mad_dir``, else ``$MAD_DIR``, else ``$MODEL_DIR``, else the cwd.

    It must exist and hold ``models.json`` or ``scripts/``. Returns an absolute path.
    """
    if mad_dir is not None and str(mad_dir) != "":
        origin, value = "--mad-dir", str(mad_dir)
    elif os.environ.get("MAD_DIR"):
        origin, value = "MAD_DIR", os.environ["MAD_DIR"]
    elif os.environ.get("MODEL_DIR"):
        origin, value = "MODEL_DIR", os.environ["MODEL_DIR"]
    else:
        origin, value = "the current directory", os.getcwd()
    path = Path(value).expanduser()
    _check_mad_dir(path, origin)
    return path.resolve()


# ------------------------------------------------------------------------------------------ JSON files
def _load_json(path: Path, where: str) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{where}: cannot be read: {exc.strerror or exc}") from None
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        lines = exc.doc.splitlines() if isinstance(exc.doc, str) else []
        detail = None
        if 0 < exc.lineno <= len(lines):
            detail = f"{exc.lineno:>5} | {lines[exc.lineno - 1]}\n        {' ' * (exc.colno - 1)}^"
        raise InvalidInputError(
            f"{where}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            hint="fix the JSON syntax there (a trailing comma or a missing quote is the usual cause)",
            detail=detail,
        ) from None
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{where}: is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _load_model_list(path: Path, where: str) -> list[Any]:
    data = _load_json(path, where)
    if not isinstance(data, list):
        raise InvalidInputError(
            f"{where}: expected a JSON list of model objects, found a JSON {type(data).__name__}",
            hint="a models.json file is a list: [ {\"name\": ...}, {\"name\": ...} ]",
            example='[{"name": "my_model", "tags": ["mine"], "dockerfile": "docker/x", "scripts": "run.sh"}]',
        )
    return data


# ------------------------------------------------------------------------------------- catalogue pieces
class _Entry:
    """A discovered model, plus the Python object it came from (dynamic models only)."""

    __slots__ = ("model", "obj")

    def __init__(self, model: Model, obj: Any = None) -> None:
        self.model = model
        self.obj = obj


class _Group:
    """The models of one source file, in file order."""

    dir: str | None = None
    source = "root"

    def entries(self, params: Mapping[str, str]) -> list[_Entry]:
        raise NotImplementedError


class _JsonGroup(_Group):
    def __init__(self, path: Path, where: str, dir_: str | None, warned: set[str]) -> None:
        self.path, self.where, self.dir, self.warned = path, where, dir_, warned
        self.source = "root" if dir_ is None else "dir"
        self._entries: list[_Entry] | None = None

    def entries(self, params: Mapping[str, str]) -> list[_Entry]:
        if self._entries is None:
            where, source, dir_, warned = self.where, self.source, self.dir, self.warned
            self._entries = [
                _Entry(model_from_raw(raw, where=where, index=i, source=source, dir=dir_, warned=warned,
                                      relocate=True))
                for i, raw in enumerate(_load_model_list(self.path, where))
            ]
        return self._entries


@contextlib.contextmanager
def _script_env(folder: str, keep: str) -> Iterator[None]:
    """Run code of a MAD script: its folder first on sys.path, no .pyc written into the MAD tree.

    What the script prints goes to stderr (stdout may be `discover --json` output). Sibling modules
    it imports are dropped from sys.modules afterwards, so that two dirs each with their own
    ``helpers.py`` do not see each other's. ``keep`` is the script's own module name.
    """
    before = set(sys.modules)
    sys.path.insert(0, folder)
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.dont_write_bytecode = dont_write
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
        prefix = folder + os.sep
        for name in sys.modules.keys() - before:
            if name == keep:
                continue
            module_file = getattr(sys.modules.get(name), "__file__", None) or ""
            if module_file.startswith(prefix):
                sys.modules.pop(name, None)


def _call_mode(fn: Any) -> tuple[str, frozenset[str]]:
    """How to hand the tag parameters to ``list_models``: "none", "positional", "kwargs" or "keywords"."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return "none", frozenset()
    kinds = [p.kind for p in sig.parameters.values()]
    P = inspect.Parameter
    required_positional = any(p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD) and p.default is P.empty
                              for p in sig.parameters.values())
    if required_positional:
        return "positional", frozenset()
    if P.VAR_KEYWORD in kinds:
        return "kwargs", frozenset()
    if any(k in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD, P.VAR_POSITIONAL) for k in kinds):
        return "positional", frozenset()
    keywords = frozenset(p.name for p in sig.parameters.values() if p.kind is P.KEYWORD_ONLY)
    return ("keywords", keywords) if keywords else ("none", frozenset())


def _last_line(exc: BaseException) -> str:
    line = traceback.format_exception_only(type(exc), exc)[-1].strip()
    if isinstance(exc, SyntaxError) and exc.lineno:
        line += f" (line {exc.lineno})"
    return line


def _object_to_raw(obj: Any) -> Any:
    """A dynamic model's fields as a dict: dicts as they are, else ``to_dict()``, else ``__dict__``."""
    if isinstance(obj, Mapping):
        return dict(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if hasattr(obj, "__dict__"):
        return {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    return obj  # not an object: validation reports it


class _DynamicGroup(_Group):
    """``scripts/<dir>/get_models_json.py``: imported once, ``list_models`` called once per params set."""

    source = "dynamic"

    def __init__(self, path: Path, where: str, dir_: str, warned: set[str], modules: list[str]) -> None:
        self.path, self.where, self.dir, self.warned = path, where, dir_, warned
        self.folder = str(path.parent)
        self._modules = modules  # module names to drop from sys.modules when discovery ends
        self._module_name = ""
        self._fn: Any = None
        self._mode = "none"
        self._keywords: frozenset[str] = frozenset()
        self._listings: dict[frozenset[tuple[str, str]], list[_Entry]] = {}
        self._updated: dict[int, tuple[Any, Model]] = {}

    # -- errors
    def _crash(self, exc: BaseException, what: str) -> InvalidInputError:
        tb = exc.__traceback__
        # Show the traceback from the script's own first frame on: importlib and discovery frames are noise.
        start = tb
        while start is not None and not start.tb_frame.f_code.co_filename.startswith(self.folder + os.sep):
            start = start.tb_next
        detail = "".join(traceback.format_exception(type(exc), exc, start or tb))
        return InvalidInputError(
            f"{self.where}: {_last_line(exc)}",
            hint=f"{what} raised an exception: fix the script (--verbose shows the full traceback)",
            detail=detail,
        )

    # -- loading
    def _load(self) -> None:
        if self._fn is not None:
            return
        safe_dir = re.sub(r"\W", "_", self.dir)
        name = f"_madengine_mad_{safe_dir}_{next(_module_counter)}"
        spec = importlib.util.spec_from_file_location(name, self.path)
        if spec is None or spec.loader is None:  # pragma: no cover - only for exotic paths
            raise InvalidInputError(f"{self.where}: cannot be imported as a Python file")
        module = importlib.util.module_from_spec(spec)
        with _script_env(self.folder, name):
            sys.modules[name] = module
            self._modules.append(name)
            try:
                spec.loader.exec_module(module)
            except (Exception, SystemExit) as exc:
                raise self._crash(exc, f"importing {DYNAMIC_SCRIPT}") from None
        fn = getattr(module, "list_models", None)
        if not callable(fn):
            raise InvalidInputError(
                f"{self.where}: defines no list_models() function",
                hint=f"{DYNAMIC_SCRIPT} must define list_models() (or list_models(params)) returning models",
                example="from madengine.tools.discover_models import CustomModel\n\n"
                        "def list_models(params):\n"
                        "    return [CustomModel(name=\"m\", tags=[\"mine\"], dockerfile=\"../../docker/x\", "
                        "scripts=\"run.sh\")]",
            )
        self._module_name = name
        self._mode, self._keywords = _call_mode(fn)
        self._fn = fn

    @property
    def accepts_params(self) -> bool:
        self._load()
        return self._mode != "none"

    def entries(self, params: Mapping[str, str]) -> list[_Entry]:
        self._load()
        mode = self._mode
        if mode == "none":
            params = {}
        elif mode == "keywords":
            params = {k: v for k, v in params.items() if k in self._keywords}
        key = frozenset(params.items())
        cached = self._listings.get(key)
        if cached is not None:
            return cached
        with _script_env(self.folder, self._module_name):
            try:
                if mode == "none":
                    result = self._fn()
                elif mode == "positional":
                    result = self._fn(dict(params))
                else:
                    result = self._fn(**params)
                if result is None or isinstance(result, (str, bytes, Mapping)):
                    raise InvalidInputError(
                        f"{self.where}: list_models() returned {type(result).__name__}, not a list of models",
                        hint="return a list of CustomModel objects (or dicts)")
                objects = list(result)
                raws = [_object_to_raw(obj) for obj in objects]
            except InvalidInputError:
                raise
            except (Exception, SystemExit) as exc:
                raise self._crash(exc, "list_models()") from None
        entries = [
            _Entry(model_from_raw(raw, where=self.where, index=i, source="dynamic", dir=self.dir,
                                  warned=self.warned, relocate=True), obj)
            for i, (obj, raw) in enumerate(zip(objects, raws, strict=True))
        ]
        self._listings[key] = entries
        return entries

    @staticmethod
    def _updatable(entry: _Entry) -> bool:
        obj = entry.obj
        if obj is None or isinstance(obj, Mapping):
            return False
        return callable(getattr(obj, "update_model", None))

    def update(self, entries: list[_Entry]) -> None:
        """Call ``update_model()`` of the selected objects (once each) and re-read their fields."""
        todo: dict[int, _Entry] = {}
        for entry in entries:
            if self._updatable(entry) and id(entry.obj) not in self._updated:
                todo.setdefault(id(entry.obj), entry)
        if not todo:
            return
        raws: list[tuple[_Entry, Any]] = []
        with _script_env(self.folder, self._module_name):
            for entry in todo.values():
                try:
                    entry.obj.update_model()
                    raws.append((entry, _object_to_raw(entry.obj)))
                except (Exception, SystemExit) as exc:
                    raise self._crash(exc, "update_model()") from None
        for entry, raw in raws:
            if isinstance(raw, dict):
                # Name and tags were used for selection: changing them in update_model() has no effect.
                raw = dict(raw)
                raw["name"] = entry.model.short_name
                raw["tags"] = list(entry.model.tags)
            model = model_from_raw(raw, where=self.where, index=0, source="dynamic", dir=self.dir,
                                   warned=self.warned, relocate=True)
            self._updated[id(entry.obj)] = (entry.obj, model)  # keeps obj alive, so its id stays unique

    def finalise(self, entry: _Entry) -> Model:
        """The model as returned: re-read after ``update_model()`` when the object has one."""
        if self._updatable(entry):
            self.update([entry])
            return self._updated[id(entry.obj)][1]
        return entry.model


# ------------------------------------------------------------------------------------------ catalogue
class _Catalogue:
    """Every source of one MAD package, loaded lazily, in discovery order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.groups: list[_Group] = []
        self.dirs: dict[str, _Group] = {}
        self.modules: list[str] = []
        self._names: dict[str, str] = {}
        self._checked: set[int] = set()
        if (root / MODELS_JSON).is_file():
            self.groups.append(_JsonGroup(root / MODELS_JSON, MODELS_JSON, None, set()))
        scripts = root / SCRIPTS_DIR
        if not scripts.is_dir():
            return
        with os.scandir(scripts) as it:
            subdirs = sorted(e.name for e in it
                             if not e.name.startswith(".") and e.name != "__pycache__" and e.is_dir())
        for name in subdirs:
            folder = scripts / name
            try:
                files = set(os.listdir(folder))
            except OSError:
                continue
            has_json, has_py = MODELS_JSON in files, DYNAMIC_SCRIPT in files
            if has_json and has_py:
                raise InvalidInputError(
                    f"{SCRIPTS_DIR}/{name} has both {MODELS_JSON} and {DYNAMIC_SCRIPT}",
                    hint=f"keep one: a scripts dir lists its models either statically ({MODELS_JSON}) "
                         f"or dynamically ({DYNAMIC_SCRIPT})",
                )
            group: _Group
            if has_json:
                group = _JsonGroup(folder / MODELS_JSON, f"{SCRIPTS_DIR}/{name}/{MODELS_JSON}", name, set())
            elif has_py:
                group = _DynamicGroup(folder / DYNAMIC_SCRIPT, f"{SCRIPTS_DIR}/{name}/{DYNAMIC_SCRIPT}", name,
                                      set(), self.modules)
            else:
                continue
            self.groups.append(group)
            self.dirs[name] = group

    def entries(self, group: _Group, params: Mapping[str, str]) -> list[_Entry]:
        entries = group.entries(params)
        if not params and id(group) not in self._checked:
            self._checked.add(id(group))
            where = getattr(group, "where", "")
            names = self._names
            for entry in entries:
                name = entry.model.name
                if name in names:
                    log.warning("model %r is defined twice: in %s and in %s", name, names[name], where)
                else:
                    names[name] = where
        return entries

    def base_models(self) -> list[Model]:
        return [e.model for g in self.groups for e in self.entries(g, {})]

    def finalise(self, group: _Group, entry: _Entry) -> Model:
        if isinstance(group, _DynamicGroup):
            return group.finalise(entry)
        return entry.model

    def close(self) -> None:
        for name in self.modules:
            sys.modules.pop(name, None)


# ------------------------------------------------------------------------------------------ selection
def _unknown_tag(spec: TagSpec, cat: _Catalogue) -> InvalidInputError:
    example_tail = "madengine discover            # list every model, its tags and dir"
    fallback: tuple[str, str] | None = None
    if spec.kind == "dir":
        assert spec.dir is not None
        group = cat.dirs[spec.dir]
        models = [e.model for e in cat.entries(group, {})]
        candidates = [m.short_name for m in models] + [t for m in models for t in m.tags] + [ALL]
        found = suggest(spec.name, candidates)
        shown = [f"{spec.dir}/{s}" for s in found]
        message = f"No model {spec.name!r} in {SCRIPTS_DIR}/{spec.dir} (tag {spec.raw!r})"
        if not shown and models:
            listed = ", ".join(m.short_name for m in models[:10]) + (", ..." if len(models) > 10 else "")
            fallback = (f"{SCRIPTS_DIR}/{spec.dir} has: {listed}",
                        f"madengine discover --tags {spec.dir}/all")
    else:
        models = cat.base_models()
        prefix, slash, _ = spec.name.partition("/")
        if slash and prefix not in cat.dirs:
            shown = [f"{d}/{spec.name.partition('/')[2]}" for d in suggest(prefix, cat.dirs)]
            shown += [s for s in suggest(spec.name, [m.name for m in models]) if s not in shown]
            message = f"Unknown scripts dir {prefix!r} in tag {spec.raw!r}"
        else:
            shown = [m.name for m in models if m.dir and m.short_name == spec.name]
            candidates = [m.name for m in models] + [t for m in models for t in m.tags]
            candidates += [f"{d}/all" for d in cat.dirs] + list(cat.dirs)
            for s in suggest(spec.name, candidates):
                s = f"{s}/all" if s in cat.dirs and not any(s == m.name or s in m.tags for m in models) else s
                if s not in shown:
                    shown.append(s)
            message = f"No model matches tag {spec.name!r}"
            if spec.raw != spec.name:
                message += f" (in {spec.raw!r})"
    shown = shown[:3]
    if shown:
        hint = "did you mean " + ", ".join(repr(s) for s in shown) + "?"
        example = f"madengine discover --tags {shown[0]}\n{example_tail}"
    elif fallback is not None:
        hint, example = fallback[0], f"{fallback[1]}\n{example_tail}"
    elif message.startswith("Unknown scripts dir") and cat.dirs:
        listed = ", ".join(list(cat.dirs)[:10]) + (", ..." if len(cat.dirs) > 10 else "")
        hint = f"the scripts dirs with models are: {listed}"
        example = f"madengine discover --tags {next(iter(cat.dirs))}/all\n{example_tail}"
    else:
        hint = "run `madengine discover` with no tags to list every model, its tags and its scripts dir"
        example = example_tail
    return InvalidInputError(message, hint=hint, example=example)


def discover_models(mad_dir: Path | str, tags: list[str] | None = None) -> list[Model]:
    """The models of the MAD package at ``mad_dir`` that ``tags`` select, in order, without duplicates.

    No tags (or an empty list) selects every model, like ``all``. Order: tag order first, then
    discovery order. A model selected twice with the same final args is returned once, with a warning.
    """
    root = Path(mad_dir).absolute()
    _check_mad_dir(root, "--mad-dir")
    cat = _Catalogue(root)
    try:
        specs = parse_tags(split_tags(tags), cat.dirs)
        selected: list[Model] = []
        seen: dict[tuple[str, str], str] = {}
        for spec in specs:
            groups = [cat.dirs[spec.dir]] if spec.kind == "dir" and spec.dir is not None else cat.groups
            matched: list[tuple[_Group, _Entry]] = []
            for group in groups:
                for entry in cat.entries(group, spec.params):
                    m = entry.model
                    if matches(spec, m.name, m.tags, m.dir):
                        matched.append((group, entry))
            if not matched:
                raise _unknown_tag(spec, cat)
            extra_args = spec.extra_args
            by_group: dict[int, tuple[_DynamicGroup, list[_Entry]]] = {}
            for group, entry in matched:
                if isinstance(group, _DynamicGroup):
                    by_group.setdefault(id(group), (group, []))[1].append(entry)
            for dynamic, entries in by_group.values():
                dynamic.update(entries)  # all of a script's update_model() calls in one go
            for group, entry in matched:
                model = cat.finalise(group, entry)
                if extra_args or spec.params:
                    model = replace(model, args=model.args + extra_args, params=dict(spec.params),
                                    tags=list(model.tags), skip_gpu_arch=list(model.skip_gpu_arch),
                                    extra=dict(model.extra))
                key = (model.name, model.args)
                first = seen.get(key)
                if first is not None:
                    log.warning("model %r is selected more than once (by tag %r and tag %r); it runs once",
                                model.name, first, spec.raw)
                    continue
                seen[key] = spec.raw
                selected.append(model)
        return selected
    finally:
        cat.close()


__all__ = ["discover_models", "resolve_mad_dir"]
