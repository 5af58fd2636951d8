"""Model discovery: read a MAD package in place and select its models by tag.

Three sources, in this discovery order:

1. ``models.json`` at the MAD root (source "root");
2. ``scripts/<dir>/models.json`` (source "dir"), found anywhere under ``scripts/`` (nested folders:
   ``scripts/MAD-private/inference/models.json`` is dir ``MAD-private/inference``), depth first, sorted;
3. ``scripts/<dir>/get_models_json.py`` (source "dynamic"): run in worker processes
   (:mod:`madengine.discover_worker`, forked, one per CPU up to four) with a timeout, its
   ``list_models()`` called there.

Parsed ``models.json`` files are memoised by content (:mod:`madengine.discovery_cache`).

Names from a scripts dir become ``<dir>/<name>`` and their relative ``dockerfile`` and ``scripts`` paths
are resolved against ``scripts/<dir>/`` (``dockercontext`` stays relative to the MAD root). See
:mod:`madengine.tags` for the tag grammar.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from madengine.discovery_cache import DiscoveryCache, generator_code_cache
from madengine.errors import InvalidInputError
from madengine.jsonfile import loads
from madengine.model import Model, as_list, model_from_raw, unknown_keys, validate_raw, warn_keys
from madengine.tags import ALL, TagSpec, matches, parse_tags, split_tags, suggest

log = logging.getLogger(__name__)

MODELS_JSON = "models.json"
SCRIPTS_DIR = "scripts"
DYNAMIC_SCRIPT = "get_models_json.py"
#: Seconds one generator request may take before discovery gives up on it (exit 4 naming the file).
GENERATOR_TIMEOUT_ENV = "MADENGINE_GENERATOR_TIMEOUT"
DEFAULT_GENERATOR_TIMEOUT = 60.0
#: Most generator workers one discovery forks (one per CPU up to this).
MAX_WORKERS = 4

_MAD_HINT = ("point --mad-dir (or the MAD_DIR environment variable) at a MAD package: "
             "the folder holding models.json and scripts/")
_MAD_EXAMPLE = "madengine discover --mad-dir examples/MAD\nMAD_DIR=/path/to/MAD madengine discover"


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
def _read(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{where}: cannot be read: {exc.strerror or exc}") from None


def _parse_json(data: bytes, where: str) -> Any:
    try:
        return loads(data)
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


def _parse_model_list(text: bytes, where: str) -> list[Any]:
    data = _parse_json(text, where)
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
    def __init__(self, path: Path, where: str, dir_: str | None, warned: set[str], cache: DiscoveryCache) -> None:
        self.path, self.where, self.dir, self.warned, self.cache = path, where, dir_, warned, cache
        self.source = "root" if dir_ is None else "dir"
        self._entries: list[_Entry] | None = None

    def entries(self, params: Mapping[str, str]) -> list[_Entry]:
        if self._entries is None:
            where, source, dir_, warned = self.where, self.source, self.dir, self.warned
            data = _read(self.path, where)
            key = self.cache.key(data)
            hit = self.cache.get(where, key)
            if hit is not None:
                models, keys = hit
                warn_keys(where, keys, warned)  # the warnings the file gives, as if it were read again
            else:
                raws = _parse_model_list(data, where)
                models = [model_from_raw(raw, where=where, index=i, source=source, dir=dir_, warned=warned,
                                         relocate=True) for i, raw in enumerate(raws)]
                self.cache.put(where, key, models, unknown_keys(raws))
            self._entries = [_Entry(model) for model in models]
        return self._entries


def _generator_timeout() -> float:
    """Seconds a generator may take per request: ``MADENGINE_GENERATOR_TIMEOUT``, default 60."""
    value = os.environ.get(GENERATOR_TIMEOUT_ENV, "")
    try:
        seconds = float(value) if value.strip() else DEFAULT_GENERATOR_TIMEOUT
    except ValueError:
        raise InvalidInputError(f"{GENERATOR_TIMEOUT_ENV}={value!r} is not a number of seconds",
                                example=f"{GENERATOR_TIMEOUT_ENV}=120 madengine discover") from None
    return seconds if seconds > 0 else DEFAULT_GENERATOR_TIMEOUT


def _can_fork() -> bool:
    """Whether a worker may be a fork: on Linux, while this process runs one thread, native ones
    included (a fork copies the locks other threads may hold, locked; macOS frameworks are not
    fork-safe), and without ``-O`` (the exec'd worker runs the generators' asserts)."""
    if not sys.platform.startswith("linux") or sys.flags.optimize or threading.active_count() != 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _become_worker(requests_r: int, answers_w: int) -> None:
    """In the forked child: what a fresh ``python -S -B`` worker would be, as far as a generator can
    tell. The parent's modules other than the standard library and madengine leave ``sys.modules`` (a
    generator's own ``helpers.py`` must not be shadowed by the caller's ``helpers``), its logging
    handlers are dropped (a generator's warning goes to stderr), and every descriptor but the pipes and
    stderr is pointed at /dev/null rather than closed: an object of the parent still holding one (a log
    file, a socket) then writes nowhere, and the worker's own descriptors never take those numbers."""
    os.setsid()
    os.dup2(requests_r, 0)
    os.dup2(answers_w, 1)
    null = os.open(os.devnull, os.O_RDWR)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd != null:
            with contextlib.suppress(OSError):
                os.dup2(null, fd)
    sys.argv = ["-c"]
    sys.dont_write_bytecode = True  # as -B: the MAD tree is read, never written
    keep = sys.stdlib_module_names
    for module in list(sys.modules):
        top = module.partition(".")[0]
        if top not in keep and top != "madengine" and module != "__main__":
            del sys.modules[module]
    for logger in [logging.root, *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            logger.handlers = []
            logger.propagate, logger.disabled = True, False
            logger.setLevel(logging.NOTSET)
    logging.root.setLevel(logging.WARNING)
    # The collector skips what the parent made: a pass over it would copy every page of it.
    gc.freeze()
    gc.enable()
    # Streams of their own (this process's may wrap other fds, or hold buffered input).
    sys.stdin = sys.__stdin__ = open(os.devnull, encoding="utf-8")  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(2, "w", errors="backslashreplace", closefd=False)  # noqa: SIM115


class _ForkedWorker:
    """The worker as a fork of this process: no interpreter start-up (~0.1 s of a discovery).

    Only when :func:`_can_fork`. The child is its own session (killed as a group, like the exec'd
    worker), is made to look like a fresh worker (:func:`_become_worker`) and ends with ``os._exit``,
    so none of this process's buffers, atexit hooks or locks act twice. The parts of
    :class:`subprocess.Popen` that :class:`_Worker` uses.
    """

    def __init__(self, code_cache: str | None) -> None:
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()  # else the child would write this process's pending output again
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: coverage does not follow it
            try:
                _become_worker(requests_r, answers_w)
                from madengine.discover_worker import main

                main(code_cache)
            finally:
                os._exit(1)
        os.close(requests_r)
        os.close(answers_w)
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = os.fdopen(requests_w, "wb")
        self.stdout = os.fdopen(answers_r, "rb")

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else (a SIGCHLD handler): gone, as Popen says
                self.returncode = 0
                return 0
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None and self.returncode is None:
            try:
                self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            except ChildProcessError:
                self.returncode = 0
        deadline = time.monotonic() + (timeout or 0)
        while self.poll() is None:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired("discover worker", timeout or 0)
            time.sleep(0.002)
        assert self.returncode is not None
        return self.returncode


class _Worker:
    """The generator worker (:mod:`madengine.discover_worker`): requests pipelined, answers by id.

    Started on the first request. When a generator ends the worker (``os._exit``, a crash) or does not
    answer within the timeout, that request gets an error naming its file, the worker is replaced and
    the requests still pending are sent again (a generator that failed that way fails at once after).
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | _ForkedWorker | None = None
        self.ids = itertools.count()
        self.pending: dict[int, dict[str, Any]] = {}  # sent, not answered, in send order
        self.answers: dict[int, dict[str, Any]] = {}
        self.broken: dict[str, dict[str, str]] = {}  # generator path -> the error that ended it
        self.buffer = b""
        self.since = 0.0  # when the oldest pending request started to wait

    def _start(self) -> subprocess.Popen[bytes] | _ForkedWorker:
        code_cache = generator_code_cache()
        if _can_fork():
            self.proc = _ForkedWorker(code_cache)
        else:  # see _can_fork (other threads, -O, not Linux): a fresh interpreter
            import madengine

            paths = [str(Path(madengine.__file__).resolve().parent.parent)] + [p for p in sys.path if p]
            boot = (f"import sys; sys.path[:0] = {paths!r}; "
                    f"from madengine.discover_worker import main; main({code_cache!r})")
            self.proc = subprocess.Popen([sys.executable, "-S", "-B", "-c", boot], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, start_new_session=True)
        self.buffer = b""
        self.since = time.monotonic()
        return self.proc

    def submit(self, op: str, path: str, params: Mapping[str, str], indices: list[int] | None = None) -> int:
        request_id = next(self.ids)
        request: dict[str, Any] = {"id": request_id, "op": op, "path": path, "params": dict(params)}
        if indices is not None:
            request["indices"] = indices
        if path in self.broken:
            self.answers[request_id] = {"error": self.broken[path]}
            return request_id
        if not self.pending:
            self.since = time.monotonic()
        self.pending[request_id] = request
        self._send(request)
        return request_id

    def _send(self, request: dict[str, Any]) -> None:
        proc = self.proc if self.proc is not None and self.proc.poll() is None else self._start()
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass  # the worker died: result() finds out and names the generator

    def result(self, request_id: int) -> dict[str, Any]:
        while request_id not in self.answers:
            self._read_one()
        return self.answers.pop(request_id)

    def _read_one(self) -> None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = self.since + self.timeout - time.monotonic()
            # Past the deadline too, an answer already there is taken: with several workers, this one's
            # generator ran while this process waited on another's.
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            if not ready:
                self._fail_head(f"did not finish within {self.timeout:g} s (it hangs, or needs longer: "
                                f"set {GENERATOR_TIMEOUT_ENV})", killed=True)
                return
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                code = proc.wait()
                self._fail_head(f"ended the discovery process (exit code {code}; os._exit() or a crash) "
                                "instead of returning its models", killed=False)
                return
            self.buffer += chunk
            self.since = time.monotonic()  # an answer on its way: the generator is done, not hung
        line, _, self.buffer = self.buffer.partition(b"\n")
        answer = loads(line)
        self.pending.pop(answer["id"], None)
        self.answers[answer["id"]] = answer
        self.since = time.monotonic()

    def _fail_head(self, why: str, *, killed: bool) -> None:
        head_id, head = next(iter(self.pending.items()))
        error = {"message": why, "hint": f"fix {DYNAMIC_SCRIPT}: list_models() must return its models",
                 "example": "", "detail": ""}
        self.broken[head["path"]] = error
        self._stop(kill=killed)
        rest = [r for i, r in self.pending.items() if i != head_id]
        self.pending.clear()
        self.answers[head_id] = {"error": error}
        self.since = time.monotonic()
        for request in rest:  # to a fresh worker, except those of a generator now known broken
            if request["path"] in self.broken:
                self.answers[request["id"]] = {"error": self.broken[request["path"]]}
            else:
                self.pending[request["id"]] = request
                self._send(request)

    def _stop(self, *, kill: bool) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if kill and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            if proc.stdin:
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout:
            proc.stdout.close()

    def close(self) -> None:
        self._stop(kill=bool(self.pending))


#: One request sent to the pool: the worker it went to and its id there.
_Handle = tuple["_Worker", int]


class _WorkerPool:
    """The generators spread over forked workers, one per CPU up to :data:`MAX_WORKERS`; each
    generator stays in the worker that imported it. While other threads run (no fork), one exec'd
    worker: a second would cost a second interpreter start."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.workers: list[_Worker] = []
        self.home: dict[str, _Worker] = {}

    def submit(self, op: str, path: str, params: Mapping[str, str], indices: list[int] | None = None) -> _Handle:
        worker = self.home.get(path)
        if worker is None:
            worker = self.home[path] = self._worker_for_next()
        return worker, worker.submit(op, path, params, indices)

    def _worker_for_next(self) -> _Worker:
        size = min(MAX_WORKERS, os.cpu_count() or 1) if _can_fork() else 1
        if len(self.workers) < size:
            self.workers.append(_Worker(self.timeout))
            return self.workers[-1]
        return self.workers[len(self.home) % len(self.workers)]

    @staticmethod
    def result(handle: _Handle) -> dict[str, Any]:
        worker, request_id = handle
        return worker.result(request_id)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


class _DynamicGroup(_Group):
    """``scripts/<dir>/get_models_json.py``: run in the worker, ``list_models`` once per params set."""

    source = "dynamic"

    def __init__(self, path: Path, where: str, dir_: str, warned: set[str], worker: _WorkerPool) -> None:
        self.path, self.where, self.dir, self.warned = path, where, dir_, warned
        self.worker = worker
        self._requests: dict[frozenset[tuple[str, str]], _Handle] = {}
        self._eager: dict[frozenset[tuple[str, str]], _Handle] = {}  # "update_all" requests
        self._listings: dict[frozenset[tuple[str, str]], list[_Entry]] = {}
        self._updatable: dict[frozenset[tuple[str, str]], frozenset[int]] = {}
        self._updated: dict[tuple[frozenset[tuple[str, str]], int], Model] = {}

    def _error(self, error: Mapping[str, str]) -> InvalidInputError:
        return InvalidInputError(f"{self.where}: {error.get('message')}", hint=error.get("hint") or None,
                                 example=error.get("example") or None, detail=error.get("detail") or None)

    def prefetch(self, params: Mapping[str, str], *, update_all: bool = False) -> None:
        """Ask the worker for this listing now; :meth:`entries` collects it. ``update_all``: every
        model of it is selected, so their ``update_model()`` calls are asked for at once too."""
        key = frozenset(params.items())
        if key not in self._listings and key not in self._requests:
            self._requests[key] = self.worker.submit("list", str(self.path), params)
            if update_all:  # its own request: listing and updates each get the whole timeout
                self._eager[key] = self.worker.submit("update_all", str(self.path), params)

    def entries(self, params: Mapping[str, str]) -> list[_Entry]:
        key = frozenset(params.items())
        cached = self._listings.get(key)
        if cached is not None:
            return cached
        self.prefetch(params)
        answer = self.worker.result(self._requests.pop(key))
        if "error" in answer:
            raise self._error(answer["error"])
        where, dir_, warned = self.where, self.dir, self.warned
        raws = answer["raws"]
        self._updatable[key] = frozenset(answer.get("updatable") or ())
        updated: dict[int, Any] = {}
        eager = self._eager.pop(key, None)
        if eager is not None:
            done = self.worker.result(eager)
            # A failed update_model() is left to the update request that needs it: the worker says the
            # same failure again then, where selection reports it.
            if "error" not in done:
                updated = dict(zip(done["indices"], done["raws"], strict=True))
        if updated:
            # Every listed model is selected and already updated: each becomes one Model, from its fields
            # after update_model(). The listed fields are checked and warned about first all the same,
            # as the listing alone would be.
            for i, raw in enumerate(raws):
                validate_raw(raw, where=where, index=i)
            warn_keys(where, unknown_keys(raws), warned)
        entries = []
        for i, raw in enumerate(raws):
            if i in updated:
                model = self._updated_model(i, updated[i], raw["name"], as_list(raw.get("tags")))
                self._updated[(key, i)] = model
            else:
                model = model_from_raw(raw, where=where, index=i, source="dynamic", dir=dir_, warned=warned,
                                       relocate=True)
            entries.append(_Entry(model, (key, i)))
        self._listings[key] = entries
        return entries

    def _is_updatable(self, entry: _Entry) -> bool:
        key, index = entry.obj
        return index in self._updatable.get(key, frozenset())

    def submit_update(self, entries: list[_Entry]) -> list[tuple[frozenset[tuple[str, str]], list[int], _Handle]]:
        """Ask for ``update_model()`` of the selected entries not updated yet (once each)."""
        todo: dict[frozenset[tuple[str, str]], list[int]] = {}
        for entry in entries:
            key, index = entry.obj
            if self._is_updatable(entry) and (key, index) not in self._updated:
                indices = todo.setdefault(key, [])
                if index not in indices:
                    indices.append(index)
        return [(key, indices, self.worker.submit("update", str(self.path), dict(key), indices))
                for key, indices in todo.items()]

    def collect_update(self, handles: list[tuple[frozenset[tuple[str, str]], list[int], _Handle]]) -> None:
        for key, indices, handle in handles:
            answer = self.worker.result(handle)
            if "error" in answer:
                raise self._error(answer["error"])
            self._store_updated(key, indices, answer["raws"])

    def _store_updated(self, key: frozenset[tuple[str, str]], indices: list[int], raws: list[Any]) -> None:
        base = self._listings[key]
        for index, raw in zip(indices, raws, strict=True):
            listed = base[index].model
            self._updated[(key, index)] = self._updated_model(index, raw, listed.short_name, list(listed.tags))

    def _updated_model(self, index: int, raw: Any, name: str, tags: list[str]) -> Model:
        """The model from its fields after ``update_model()``. Name and tags stay as listed: they
        were used for selection, so changing them there has no effect."""
        if isinstance(raw, dict):
            raw = dict(raw)
            raw["name"] = name
            raw["tags"] = tags
        return model_from_raw(raw, where=self.where, index=index, source="dynamic", dir=self.dir,
                              warned=self.warned, relocate=True)

    def finalise(self, entry: _Entry) -> Model:
        """The model as returned: re-read after ``update_model()`` when the object has one."""
        if self._is_updatable(entry):
            if entry.obj not in self._updated:
                self.collect_update(self.submit_update([entry]))
            return self._updated[entry.obj]
        return entry.model


# ------------------------------------------------------------------------------------------ catalogue
def _walk_scripts(scripts: Path) -> Iterator[tuple[str, set[str]]]:
    """Every folder under ``scripts/`` (relative posix path, file names), depth first, sorted by name.

    Hidden folders and ``__pycache__`` are skipped; so are folders that cannot be listed.
    """
    stack = [("", str(scripts))]
    while stack:
        rel, folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue
        files = set()
        subdirs = []
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name == "__pycache__":
                continue
            try:
                if entry.is_dir():
                    subdirs.append(name)
                else:
                    files.add(name)
            except OSError:
                continue
        if rel:
            yield rel, files
        for name in sorted(subdirs, reverse=True):
            stack.append((f"{rel}/{name}" if rel else name, f"{folder}/{name}"))


class _Catalogue:
    """Every source of one MAD package, loaded lazily, in discovery order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.groups: list[_Group] = []
        self.dirs: dict[str, _Group] = {}
        self.worker = _WorkerPool(_generator_timeout())
        self.cache = DiscoveryCache(root)
        self._names: dict[str, str] = {}
        self._checked: set[int] = set()
        warned: set[str] = set()  # one warning per unknown key, whichever file has it first
        if (root / MODELS_JSON).is_file():
            self.groups.append(_JsonGroup(root / MODELS_JSON, MODELS_JSON, None, warned, self.cache))
        scripts = root / SCRIPTS_DIR
        if not scripts.is_dir():
            return
        for rel, files in _walk_scripts(scripts):
            has_json, has_py = MODELS_JSON in files, DYNAMIC_SCRIPT in files
            if has_json and has_py:
                raise InvalidInputError(
                    f"{SCRIPTS_DIR}/{rel} has both {MODELS_JSON} and {DYNAMIC_SCRIPT}",
                    hint=f"keep one: a scripts dir lists its models either statically ({MODELS_JSON}) "
                         f"or dynamically ({DYNAMIC_SCRIPT})",
                )
            folder = scripts / rel
            group: _Group
            if has_json:
                group = _JsonGroup(folder / MODELS_JSON, f"{SCRIPTS_DIR}/{rel}/{MODELS_JSON}", rel, warned,
                                   self.cache)
            elif has_py:
                group = _DynamicGroup(folder / DYNAMIC_SCRIPT, f"{SCRIPTS_DIR}/{rel}/{DYNAMIC_SCRIPT}", rel,
                                      warned, self.worker)
            else:
                continue
            self.groups.append(group)
            self.dirs[rel] = group

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
        models = []
        for group in self.groups:
            try:
                models += [e.model for e in self.entries(group, {})]
            except InvalidInputError:
                if not isinstance(group, _DynamicGroup):
                    raise  # a broken generator leaves only its own models out of the suggestions
        return models

    def finalise(self, group: _Group, entry: _Entry) -> Model:
        if isinstance(group, _DynamicGroup):
            return group.finalise(entry)
        return entry.model

    def close(self) -> None:
        self.worker.close()
        self.cache.save()


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


def _groups_for(spec: TagSpec, cat: _Catalogue) -> list[_Group]:
    if spec.kind == "dir" and spec.dir is not None:
        return [cat.dirs[spec.dir]]
    return cat.groups


def _short_name_matches(spec: TagSpec, cat: _Catalogue, broken: list[InvalidInputError]
                        ) -> list[tuple[_Group, _Entry]]:
    """Cards of scripts dirs whose short name is ``spec.name`` (MAD: "select it by its short name")."""
    matched = []
    for group in cat.groups:
        if group.dir is None:
            continue
        try:
            entries = cat.entries(group, spec.params)
        except InvalidInputError as exc:
            if not isinstance(group, _DynamicGroup):
                raise
            broken.append(exc)
            continue
        matched += [(group, e) for e in entries if e.model.short_name == spec.name]
    dirs = sorted({g.dir for g, _ in matched if g.dir})
    if len(dirs) > 1:
        log.warning("tag %r is the short name of cards in %d scripts dirs (%s): all of them are selected; "
                    "write DIR/%s to select one", spec.raw, len(dirs), ", ".join(f"{d}/{spec.name}" for d in dirs),
                    spec.name)
    return matched


def discover_models(mad_dir: Path | str, tags: list[str] | None = None) -> list[Model]:
    """The models of the MAD package at ``mad_dir`` that ``tags`` select, in order, without duplicates.

    No tags (or an empty list) selects every model, like ``all``. Order: tag order first, then
    discovery order. A model selected twice with the same final args is returned once, with a warning.
    A simple tag that matches no card name or tag selects the scripts-dir cards whose short name it is.
    Generators run in worker processes (:mod:`madengine.discover_worker`); a broken one fails the tags
    that need it (``all``, its own dir) and is skipped with a warning for a simple tag matched elsewhere.
    """
    root = Path(mad_dir).absolute()
    _check_mad_dir(root, "--mad-dir")
    with _no_cyclic_gc():
        cat = _Catalogue(root)
        try:
            return _select(cat, tags)
        finally:
            cat.close()


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Thousands of cards make tens of thousands of objects and no reference cycle: without the cyclic
    collector's passes over the growing heap a large package is discovered ~15 % faster."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _select(cat: _Catalogue, tags: list[str] | None) -> list[Model]:
    """The models ``tags`` select from the catalogue (see :func:`discover_models`)."""
    specs = parse_tags(split_tags(tags), cat.dirs)
    needed: dict[int, _Group] = {}
    for spec in specs:  # every generator listing the tags need, asked for at once
        for group in _groups_for(spec, cat):
            needed[id(group)] = group
            if isinstance(group, _DynamicGroup):
                group.prefetch(spec.params, update_all=spec.kind == "all" or spec.name == ALL)
    for group in needed.values():  # read the files while the worker runs the generators
        if isinstance(group, _JsonGroup):
            group.entries({})
    selected: list[Model] = []
    seen: dict[tuple[str, str], str] = {}
    for spec in specs:
        matched: list[tuple[_Group, _Entry]] = []
        broken: list[InvalidInputError] = []
        # A generator's update_model() calls are asked for as soon as its selected models are known,
        # so the worker runs them while this process reads the next files; answers are read after.
        updates: list[tuple[_DynamicGroup, list[Any]]] = []
        for group in _groups_for(spec, cat):
            try:
                entries = cat.entries(group, spec.params)
            except InvalidInputError as exc:
                if spec.kind != "simple" or not isinstance(group, _DynamicGroup):
                    raise
                broken.append(exc)
                continue
            if spec.kind == "all":
                hits = [(group, e) for e in entries]
            else:
                hits = [(group, e) for e in entries if matches(spec, e.model.name, e.model.tags, e.model.dir)]
            if hits and isinstance(group, _DynamicGroup):
                updates.append((group, group.submit_update([e for _, e in hits])))
            matched += hits
        if not matched and spec.kind == "simple":
            matched = _short_name_matches(spec, cat, broken)
            by_group: dict[int, tuple[_DynamicGroup, list[_Entry]]] = {}
            for group, entry in matched:
                if isinstance(group, _DynamicGroup):
                    by_group.setdefault(id(group), (group, []))[1].append(entry)
            updates = [(dynamic, dynamic.submit_update(entries)) for dynamic, entries in by_group.values()]
        if not matched:
            if broken:
                raise broken[0]  # the broken generator may be the one that has it
            raise _unknown_tag(spec, cat)
        for exc in broken:
            log.warning("tag %r: skipped %s", spec.raw, exc.message)
        extra_args = spec.extra_args
        for dynamic, handle in updates:
            dynamic.collect_update(handle)
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


__all__ = ["discover_models", "resolve_mad_dir"]
