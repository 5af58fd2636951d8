"""The child process that runs a MAD package's ``get_models_json.py`` generators for discovery.

A generator is someone else's Python: it may print, write to fd 1, read stdin, call ``os._exit()``,
``sys.exit()`` or loop forever. So :mod:`madengine.discover` never imports one; it forks this worker
(or, while other threads run, starts it as ``python -S -B`` with the parent's ``sys.path`` prepended)
and talks to it in JSON lines over the worker's
original stdin/stdout, which are moved to private descriptors first: the generator's fd 0 is
/dev/null and its fd 1 is the worker's stderr, so nothing it prints reaches ``discover --json``.
The parent enforces the timeout and names the generator that ended or hung the worker.

Requests (one JSON object a line): ``{"id", "op": "list"|"update"|"update_all", "path", "params",
"indices"}`` ("update_all": every listed model with an ``update_model``, asked for with the listing when
all are selected). Answers: ``{"id", "raws": [...], "updatable": [...]}`` for "list", ``{"id", "raws":
[...]}`` for "update" and ``{"id", "raws": [...], "indices": [...]}`` for "update_all", or ``{"id",
"error": {"message", "hint", "example", "detail"}}``.
Stdlib only, no madengine import but the one the generators make themselves.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import itertools
import json
import marshal
import os
import queue
import sys
import threading
from collections.abc import Iterator, Mapping
from types import FunctionType
from typing import Any

DYNAMIC_SCRIPT = "get_models_json.py"
#: The folder of compiled generators (:func:`main`'s ``code_cache``; None: compile every time).
_code_cache: str | None = None
_counter = itertools.count()


class _Failure(Exception):
    def __init__(self, message: str, hint: str = "", example: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.payload = {"message": message, "hint": hint, "example": example, "detail": detail}


def _last_line(exc: BaseException) -> str:
    import traceback

    line = traceback.format_exception_only(type(exc), exc)[-1].strip()
    if isinstance(exc, SyntaxError) and exc.lineno:
        line += f" (line {exc.lineno})"
    return line


def _crash(exc: BaseException, folder: str, what: str) -> _Failure:
    import traceback

    tb = exc.__traceback__
    # Show the traceback from the script's own first frame on: importlib and worker frames are noise.
    start = tb
    while start is not None and not start.tb_frame.f_code.co_filename.startswith(folder + os.sep):
        start = start.tb_next
    detail = "".join(traceback.format_exception(type(exc), exc, start or tb))
    return _Failure(_last_line(exc), hint=f"{what} raised an exception: fix the script (--verbose shows the "
                                          "full traceback)", detail=detail)


_VARARGS, _VARKEYWORDS = 0x04, 0x08  # code object flags (inspect.CO_VARARGS, inspect.CO_VARKEYWORDS)


def _call_mode(fn: Any) -> tuple[str, frozenset[str]]:
    """How to hand the tag parameters to ``list_models``: "none", "positional", "kwargs" or "keywords".

    A plain function is read from its code object: importing ``inspect`` would be a good part of the
    worker's start-up. Anything else (a wrapped function, a callable object) asks ``inspect``.
    """
    if type(fn) is not FunctionType or "__wrapped__" in fn.__dict__ or "__signature__" in fn.__dict__:
        return _call_mode_from_signature(fn)
    code = fn.__code__
    positional = code.co_argcount
    keyword_only = code.co_varnames[positional:positional + code.co_kwonlyargcount]
    if positional > len(fn.__defaults__ or ()):
        return "positional", frozenset()
    if code.co_flags & _VARKEYWORDS:
        return "kwargs", frozenset()
    if positional or code.co_flags & _VARARGS:
        return "positional", frozenset()
    return ("keywords", frozenset(keyword_only)) if keyword_only else ("none", frozenset())


def _call_mode_from_signature(fn: Any) -> tuple[str, frozenset[str]]:
    """:func:`_call_mode` by ``inspect.signature``, for callables that are not plain functions."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return "none", frozenset()
    P = inspect.Parameter
    params = list(sig.parameters.values())
    kinds = [p.kind for p in params]
    if any(p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD) and p.default is P.empty for p in params):
        return "positional", frozenset()
    if P.VAR_KEYWORD in kinds:
        return "kwargs", frozenset()
    if any(k in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD, P.VAR_POSITIONAL) for k in kinds):
        return "positional", frozenset()
    keywords = frozenset(p.name for p in params if p.kind is P.KEYWORD_ONLY)
    return ("keywords", keywords) if keywords else ("none", frozenset())


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


def _updatable(obj: Any) -> bool:
    """Whether ``obj`` has an ``update_model`` worth calling (CustomModel's own is a no-op)."""
    if obj is None or isinstance(obj, Mapping):
        return False
    method = getattr(type(obj), "update_model", None)
    if method is None:
        return callable(getattr(obj, "update_model", None))
    base = next((k for k in type(obj).__mro__ if k.__name__ == "CustomModel"
                 and k.__module__.endswith("discover_models")), None)
    return callable(method) and (base is None or method is not base.__dict__.get("update_model"))


@contextlib.contextmanager
def _script_env(folder: str, keep: str) -> Iterator[None]:
    """The generator's folder first on sys.path; sibling modules it imports dropped afterwards.

    Two dirs each with their own ``helpers.py`` must not see each other's. ``keep`` is the script's
    own module name.
    """
    # sys.modules is a dict: what is imported meanwhile comes after its current last entry (cheaper
    # than a copy of it, ~4 times a generator). If that entry goes, every module is looked at.
    last = next(reversed(sys.modules), None)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
        prefix = folder + os.sep
        for name in list(itertools.takewhile(lambda name: name != last, reversed(sys.modules))):
            if name == keep:
                continue
            module_file = getattr(sys.modules.get(name), "__file__", None) or ""
            if module_file.startswith(prefix):
                sys.modules.pop(name, None)


def _code(path: str) -> Any:
    """The script's code object, compiled once per content into the code cache folder.

    Python's own bytecode cache would write ``__pycache__`` into the MAD package, which discovery
    never writes; this one lives in the user's cache, keyed by the script's path and bytes (so an
    edit is a miss whatever the timestamps say) and the interpreter's bytecode magic.
    """
    with open(path, "rb") as handle:
        source = handle.read()
    folder = _code_cache
    if not folder:
        return compile(source, path, "exec", dont_inherit=True)
    key = hashlib.blake2b(importlib.util.MAGIC_NUMBER + path.encode() + b"\0" + source, digest_size=16)
    cached = os.path.join(folder, key.hexdigest() + ".code")
    with contextlib.suppress(OSError, ValueError, EOFError, TypeError), open(cached, "rb") as handle:
        return marshal.load(handle)
    code = compile(source, path, "exec", dont_inherit=True)
    with contextlib.suppress(OSError):  # the folder exists, this user's alone (the parent checked)
        partial = f"{cached}.{os.getpid()}"
        with open(partial, "wb") as handle:
            marshal.dump(code, handle)
        os.replace(partial, cached)
    return code


class _Generator:
    """One imported ``get_models_json.py`` and the objects its ``list_models`` returned, per params."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.folder = os.path.dirname(path)
        self.module_name = f"_madengine_mad_{next(_counter)}"
        spec = importlib.util.spec_from_file_location(self.module_name, path)
        if spec is None or spec.loader is None:  # pragma: no cover - only for exotic paths
            raise _Failure("cannot be imported as a Python file")
        module = importlib.util.module_from_spec(spec)
        with _script_env(self.folder, self.module_name):
            sys.modules[self.module_name] = module
            try:
                exec(_code(path), module.__dict__)  # what exec_module does, with a compile cache
            except (Exception, SystemExit) as exc:
                raise _crash(exc, self.folder, f"importing {DYNAMIC_SCRIPT}") from None
        fn = getattr(module, "list_models", None)
        if not callable(fn):
            raise _Failure(
                "defines no list_models() function",
                hint=f"{DYNAMIC_SCRIPT} must define list_models() (or list_models(params)) returning models",
                example="from madengine.tools.discover_models import CustomModel\n\n"
                        "def list_models(params):\n"
                        "    return [CustomModel(name=\"m\", tags=[\"mine\"], dockerfile=\"../../docker/x\", "
                        "scripts=\"run.sh\")]")
        self.fn = fn
        self.mode, self.keywords = _call_mode(fn)
        self.listings: dict[frozenset[tuple[str, str]], list[Any]] = {}
        self.updated: dict[int, Any] = {}
        self.update_failures: dict[int, _Failure] = {}

    def listing(self, params: dict[str, str]) -> list[Any]:
        if self.mode == "none":
            params = {}
        elif self.mode == "keywords":
            params = {k: v for k, v in params.items() if k in self.keywords}
        key = frozenset(params.items())
        objects = self.listings.get(key)
        if objects is not None:
            return objects
        with _script_env(self.folder, self.module_name):
            try:
                if self.mode == "none":
                    result = self.fn()
                elif self.mode == "positional":
                    result = self.fn(dict(params))
                else:
                    result = self.fn(**params)
                if result is None or isinstance(result, (str, bytes, Mapping)):
                    raise _Failure(f"list_models() returned {type(result).__name__}, not a list of models",
                                   hint="return a list of CustomModel objects (or dicts)")
                objects = list(result)
            except _Failure:
                raise
            except (Exception, SystemExit) as exc:
                raise _crash(exc, self.folder, "list_models()") from None
        self.listings[key] = objects
        return objects

    def raws(self, objects: list[Any]) -> list[Any]:
        with _script_env(self.folder, self.module_name):
            try:
                return [_object_to_raw(obj) for obj in objects]
            except (Exception, SystemExit) as exc:
                raise _crash(exc, self.folder, "list_models()") from None

    def update(self, objects: list[Any], indices: list[int]) -> list[Any]:
        """Each object's fields after its ``update_model()``, which runs once per object: a later
        request gets the same fields, or the same failure."""
        out = []
        with _script_env(self.folder, self.module_name):
            for index in indices:
                obj = objects[index]
                raw = self.updated.get(id(obj))
                if raw is None:
                    failure = self.update_failures.get(id(obj))
                    if failure is not None:
                        raise failure
                    try:
                        obj.update_model()
                        raw = _object_to_raw(obj)
                    except (Exception, SystemExit) as exc:
                        failure = self.update_failures[id(obj)] = _crash(exc, self.folder, "update_model()")
                        raise failure from None
                    self.updated[id(obj)] = raw
                out.append(raw)
        return out


def _handle(request: dict[str, Any], generators: dict[str, _Generator]) -> dict[str, Any]:
    path = request["path"]
    gen = generators.get(path)
    if gen is None:
        gen = generators[path] = _Generator(path)
    objects = gen.listing(request.get("params") or {})
    if request["op"] == "update":
        return {"raws": gen.update(objects, request["indices"])}
    updatable = [i for i, obj in enumerate(objects) if _updatable(obj)]
    if request["op"] == "update_all":
        return {"raws": gen.update(objects, updatable), "indices": updatable}
    return {"raws": gen.raws(objects), "updatable": updatable}


def main(code_cache: str | None = None) -> None:
    """Serve requests until stdin closes. fd 0/1 become /dev/null and stderr before any generator runs.

    ``code_cache``: a folder for the generators' compiled code (None: no cache)."""
    global _code_cache
    _code_cache = code_cache
    requests_in = os.fdopen(os.dup(0), "rb")
    answers_out = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    # A reader thread takes requests as they come, so the parent never blocks writing them.
    pending: queue.Queue[bytes | None] = queue.Queue()

    def read() -> None:
        for line in requests_in:
            pending.put(line)
        pending.put(None)

    threading.Thread(target=read, daemon=True).start()
    generators: dict[str, _Generator] = {}
    failed: dict[str, dict[str, str]] = {}
    while True:
        line = pending.get()
        if line is None:
            break
        request = json.loads(line)
        path = request["path"]
        if path in failed:
            answer: dict[str, Any] = {"error": failed[path]}
        else:
            try:
                answer = _handle(request, generators)
            except _Failure as exc:
                answer = {"error": exc.payload}
                if path not in generators:
                    failed[path] = exc.payload  # an import that failed fails every later request alike
        answer["id"] = request["id"]
        try:
            data = json.dumps(answer, default=str)
        except (TypeError, ValueError) as exc:  # e.g. a circular structure in a model's fields
            data = json.dumps({"id": request["id"], "error": {
                "message": f"list_models() returned fields that are not JSON data ({exc})",
                "hint": "model fields are strings, numbers, booleans, lists and dicts", "example": "",
                "detail": ""}})
        answers_out.write(data.encode() + b"\n")
        answers_out.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown: the generators' atexit hooks are not ours to run


if __name__ == "__main__":
    main()
