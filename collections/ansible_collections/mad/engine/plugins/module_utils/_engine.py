# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Client layer: the Docker Engine HTTP API over its unix socket (or tcp://), with typed errors.

Runs on target hosts that have only Python 3 and a Docker engine: standard library only, no Ansible.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import struct
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlsplit

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
DEFAULT_TIMEOUT = 60
# Newest API this client speaks; older engines (Debian's 20.10 speaks 1.41) are used at their own version.
MAX_API_VERSION = "1.43"
DOCKER_HUB_AUTH_ADDRESS = "https://index.docker.io/v1/"
#: EngineError reasons that mean the engine itself is gone (not one request's fault): the host failed.
ENGINE_DOWN_REASONS = ("engine unreachable", "engine connection lost", "engine timeout")

_AUTH_FAILURE_MARKERS = ("unauthorized", "authentication required", "no basic auth credentials", "denied: ")
_STREAM_NAMES = {0: "stdin", 1: "stdout", 2: "stderr", 3: "stderr"}
_UNSET: Any = object()
# socket.timeout became an alias of TimeoutError only in Python 3.10; targets may run 3.8.
_SOCKET_TIMEOUT = socket.timeout  # noqa: UP041


def _docker_host_fallback() -> str:
    """Ansible argspec fallback: DOCKER_HOST from the module's environment, else the default socket.

    Ansible's own env_fallback would need an Ansible import; returning the default keeps the result identical.
    """
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


# Shared options of every mad.engine module (documented once in plugins/doc_fragments/engine.py).
ENGINE_ARGS: dict[str, dict[str, Any]] = {
    "docker_host": {"type": "str", "default": DEFAULT_DOCKER_HOST, "fallback": (_docker_host_fallback, [])},
    "api_timeout": {"type": "int", "default": DEFAULT_TIMEOUT},
}


class EngineError(Exception):
    """A failed engine call. `reason` is short and stable (e.g. "image not found"); str() is the detail."""

    def __init__(self, reason: str, message: str | None = None, status: int | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.status = status

    @property
    def message(self) -> str:
        return str(self)


class _EngineTimeout(EngineError):
    """A request got no answer within its socket timeout."""


class WaitTimeout(TimeoutError):
    """`container_wait` reached its deadline; the container is still running."""


# --------------------------------------------------------------------------- pure helpers


def split_reference(ref: str) -> tuple[str, str]:
    """Split an image reference into (repository, tag or digest) as `POST /images/create` wants them.

    `127.0.0.1:5000/a/b:tag` -> (`127.0.0.1:5000/a/b`, `tag`); `img@sha256:…` -> (`img`, `sha256:…`);
    `img` -> (`img`, `latest`). A tag next to a digest is dropped: the digest decides.
    """
    ref = ref.strip()
    if not ref:
        raise EngineError("invalid reference", "empty image reference")
    if "@" in ref:
        name, digest = ref.split("@", 1)
        return _split_tag(name)[0], digest
    repo, tag = _split_tag(ref)
    return repo, tag or "latest"


def _split_tag(name: str) -> tuple[str, str | None]:
    # A colon before the last slash belongs to a registry port, not a tag.
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[:colon], name[colon + 1 :]
    return name, None


def registry_of(ref: str) -> str:
    """The registry host of a reference (`127.0.0.1:5000`, `ghcr.io`), or `docker.io`."""
    first, sep = ref.partition("/")[:2]
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def encode_auth(auth: Mapping[str, Any]) -> str:
    """The X-Registry-Auth header value: base64url (padded) JSON of the non-empty auth fields."""
    data = {k: v for k, v in auth.items() if v not in (None, "")}
    return base64.urlsafe_b64encode(json.dumps(data).encode("utf-8")).decode("ascii")


def iter_json_stream(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """Decode the concatenated JSON objects of a progress stream (pull, load), however chunks split them."""
    decoder = json.JSONDecoder()
    buf = ""
    pending = b""
    for chunk in chunks:
        pending += chunk
        try:
            buf += pending.decode("utf-8")
            pending = b""
        except UnicodeDecodeError:
            continue  # a multi-byte character split across chunks: wait for the rest
        while True:
            buf = buf.lstrip()
            if not buf:
                break
            try:
                obj, end = decoder.raw_decode(buf)
            except ValueError:
                break  # incomplete object: wait for more
            buf = buf[end:]
            if isinstance(obj, dict):
                yield obj
    buf = buf.strip()
    if buf:
        raise EngineError("engine error", f"truncated JSON stream from the engine: {buf[:200]}")


class StreamDemuxer:
    """Splits the engine's multiplexed stream (non-TTY logs/attach) into (stream, payload) frames.

    Each frame is an 8-byte header (stream type byte, 3 zero bytes, big-endian uint32 size) and the
    payload. Frames may arrive split across reads; `feed` returns only whole ones.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        self._buf += data
        frames = []
        while len(self._buf) >= 8:
            (size,) = struct.unpack(">I", bytes(self._buf[4:8]))
            if len(self._buf) < 8 + size:
                break
            frames.append((_STREAM_NAMES.get(self._buf[0], "stdout"), bytes(self._buf[8 : 8 + size])))
            del self._buf[: 8 + size]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered."""
        return len(self._buf)


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _scrub(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _is_auth_failure(message: str, status: int | None = None) -> bool:
    low = message.lower()
    return status == 401 or any(m in low for m in _AUTH_FAILURE_MARKERS)


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (0,)


# --------------------------------------------------------------------------- transport


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTPConnection whose connect() opens the engine's unix socket."""

    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout, blocksize=1 << 16)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class LogStream:
    """Iterator of (stream, bytes) from a logs request; `close()` from another thread ends it (EOF)."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, tty: bool) -> None:
        self._conn = conn
        self._resp = resp
        self._demux = None if tty else StreamDemuxer()
        self._frames: deque[tuple[str, bytes]] = deque()
        self._closed = False
        self._eof = False

    def __iter__(self) -> LogStream:
        return self

    def __next__(self) -> tuple[str, bytes]:
        while not self._frames:
            if self._eof or self._closed:
                self._finish()
                raise StopIteration
            try:
                data = self._resp.read1(1 << 16)
            except (OSError, ValueError, http.client.HTTPException) as e:
                if self._closed:
                    data = b""
                else:
                    self._finish()
                    raise EngineError("log stream failed", f"reading container logs failed: {e}") from e
            if not data:
                self._eof = True
            elif self._demux is None:
                self._frames.append(("stdout", data))
            else:
                self._frames.extend(self._demux.feed(data))
        return self._frames.popleft()

    def close(self) -> None:
        """End the stream, also while another thread is blocked reading it."""
        self._closed = True
        sock = getattr(self._conn, "raw_sock", None) or self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _finish(self) -> None:
        self._resp.close()
        self._conn.close()


class EngineClient:
    """Docker Engine API client: one short-lived connection per request, so it is safe across threads.

    `docker_host` is `unix:///path`, `tcp://host:port` (or `http://`), or None for $DOCKER_HOST or the
    default socket. A mapping with `docker_host`/`api_timeout` (an Ansible module's params) also works.
    Every method raises EngineError; `timeout` is the socket timeout of a request, in seconds.
    """

    def __init__(
        self, docker_host: str | Mapping[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        if isinstance(docker_host, Mapping):
            timeout = docker_host.get("api_timeout") or timeout
            docker_host = docker_host.get("docker_host")
        self.docker_host = docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
        self.timeout = float(timeout)
        parts = urlsplit(self.docker_host)
        if parts.scheme == "unix":
            self._socket_path: str | None = parts.path or "/var/run/docker.sock"
            self._tcp: tuple[str, int] | None = None
        elif parts.scheme in ("tcp", "http") and parts.hostname:
            self._socket_path = None
            self._tcp = (parts.hostname, parts.port or 2375)
        else:
            raise EngineError(
                "invalid docker_host",
                f"unsupported docker_host {self.docker_host!r}: use unix:///path/to/docker.sock or tcp://host:port",
            )
        self._api_version: str | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- plumbing

    @property
    def api_version(self) -> str:
        """The API version in use: the engine's own, capped at MAX_API_VERSION (negotiated once)."""
        with self._lock:
            if self._api_version is None:
                server = str(self._call("GET", "/version", versioned=False).get("ApiVersion") or "")
                if not server or _version_tuple(server) > _version_tuple(MAX_API_VERSION):
                    server = MAX_API_VERSION
                self._api_version = server
            return self._api_version

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._tcp is None:
            return _UnixHTTPConnection(str(self._socket_path), timeout)
        return http.client.HTTPConnection(self._tcp[0], self._tcp[1], timeout=timeout, blocksize=1 << 16)

    def _unreachable(self, exc: OSError) -> EngineError:
        if self._socket_path is not None:
            if isinstance(exc, FileNotFoundError):
                what = f"socket {self._socket_path} does not exist"
            elif isinstance(exc, PermissionError):
                what = f"permission denied on {self._socket_path}"
            elif isinstance(exc, ConnectionRefusedError):
                what = f"nothing listens on {self._socket_path}"
            else:
                what = f"{self._socket_path}: {exc.strerror or exc}"
        else:
            what = f"{self._tcp[0]}:{self._tcp[1]}: {exc.strerror or exc}"  # type: ignore[index]
        return EngineError(
            "engine unreachable",
            f"cannot connect to the Docker engine at {self.docker_host} ({what}); "
            "start dockerd there, or point docker_host (DOCKER_HOST) at a running engine",
        )

    def _open(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: Any = _UNSET,
        versioned: bool = True,
        reason: str = "engine error",
        not_found: str | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send a request, return the open connection and response; raises EngineError on HTTP >= 400."""
        url = (f"/v{self.api_version}{path}") if versioned else path
        if query:
            params = {
                k: ("1" if v else "0") if isinstance(v, bool) else v
                for k, v in query.items()
                if v is not None
            }
            if params:
                url += "?" + urlencode(params)
        hdrs = dict(headers or {})
        data = body
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        conn = self._connection(self.timeout if timeout is _UNSET else timeout)
        try:
            conn.connect()
            # Kept for LogStream.close(): getresponse() may drop conn.sock while the response still reads it.
            conn.raw_sock = conn.sock  # type: ignore[attr-defined]
        except _SOCKET_TIMEOUT as e:
            conn.close()
            raise EngineError("engine unreachable", f"connecting to {self.docker_host} timed out") from e
        except OSError as e:
            conn.close()
            raise self._unreachable(e) from e
        try:
            conn.request(method, url, body=data, headers=hdrs)
            resp = conn.getresponse()
        except _SOCKET_TIMEOUT as e:
            conn.close()
            raise _EngineTimeout(
                "engine timeout", f"{method} {path}: no answer from the engine in time"
            ) from e
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise EngineError("engine connection lost", f"{method} {path}: {e}") from e
        if resp.status >= 400:
            try:
                raw = resp.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                conn.close()
            try:
                message = str(json.loads(raw.decode("utf-8", "replace")).get("message") or "")
            except (ValueError, AttributeError):
                message = raw.decode("utf-8", "replace").strip()
            message = _one_line(message or f"HTTP {resp.status} from {method} {path}")
            raise EngineError(not_found if resp.status == 404 and not_found else reason, message, resp.status)
        return conn, resp

    @staticmethod
    def _read(conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> bytes:
        try:
            return resp.read()
        except _SOCKET_TIMEOUT as e:
            raise _EngineTimeout("engine timeout", "the engine stopped answering mid-response") from e
        except (OSError, http.client.HTTPException) as e:
            raise EngineError("engine connection lost", f"reading the engine's answer failed: {e}") from e
        finally:
            conn.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request whose answer is one JSON document (or empty: None; or plain text: str)."""
        conn, resp = self._open(method, path, **kwargs)
        raw = self._read(conn, resp)
        if not raw.strip():
            return None
        if "json" in (resp.getheader("Content-Type") or ""):
            return json.loads(raw.decode("utf-8"))
        return raw.decode("utf-8", "replace")

    def _stream_chunks(
        self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse
    ) -> Iterator[bytes]:
        try:
            while True:
                try:
                    chunk = resp.read1(1 << 16)
                except _SOCKET_TIMEOUT as e:
                    raise _EngineTimeout("engine timeout", "the engine stopped sending progress") from e
                except (OSError, http.client.HTTPException) as e:
                    raise EngineError(
                        "engine connection lost", f"reading the engine's stream failed: {e}"
                    ) from e
                if not chunk:
                    return
                yield chunk
        finally:
            conn.close()

    # ----------------------------------------------------------------- system

    def version(self) -> dict[str, Any]:
        return self._call("GET", "/version", versioned=False)

    def info(self) -> dict[str, Any]:
        return self._call("GET", "/info")

    def ping(self) -> bool:
        """True if the engine answers `/_ping`; raises EngineError("engine unreachable") otherwise."""
        return str(self._call("GET", "/_ping", versioned=False)).strip() == "OK"

    # ----------------------------------------------------------------- images

    def image_inspect(self, ref: str) -> dict[str, Any] | None:
        """The image's inspect document, or None if the engine has no such image."""
        try:
            return self._call("GET", f"/images/{_quote(ref)}/json", not_found="image not found")
        except EngineError as e:
            if e.status == 404:
                return None
            raise

    def image_pull(self, ref: str, auth: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Pull `ref` (by tag or digest) and return its inspect document.

        `auth` is {username, password[, serveraddress]}; the registry is taken from `ref` if absent.
        Raises EngineError "registry auth failed" (credentials refused) or "pull failed" (anything else).
        """
        repo, tag = split_reference(ref)
        headers = {}
        secrets: list[str | None] = []
        if auth:
            auth = dict(auth)
            if not auth.get("serveraddress"):
                registry = registry_of(ref)
                auth["serveraddress"] = DOCKER_HUB_AUTH_ADDRESS if registry == "docker.io" else registry
            headers["X-Registry-Auth"] = encode_auth(auth)
            secrets = [auth.get("password"), auth.get("identitytoken")]
        try:
            conn, resp = self._open(
                "POST",
                "/images/create",
                query={"fromImage": repo, "tag": tag},
                headers=headers,
                reason="pull failed",
            )
            for msg in iter_json_stream(self._stream_chunks(conn, resp)):
                if msg.get("error") or msg.get("errorDetail"):
                    detail = msg.get("errorDetail") or {}
                    raise EngineError(
                        "pull failed",
                        str(msg.get("error") or detail.get("message") or msg),
                        detail.get("code"),
                    )
        except EngineError as e:
            if e.reason in ("engine unreachable", "invalid reference"):
                raise
            raise self._pull_error(ref, e, secrets) from None
        image = self.image_inspect(ref)
        if image is None:
            raise EngineError("pull failed", f"pull of {ref} finished but the engine has no such image")
        return image

    @staticmethod
    def _pull_error(ref: str, e: EngineError, secrets: list[str | None]) -> EngineError:
        message = _scrub(str(e), secrets)
        registry = registry_of(ref)
        if "connection refused" in message.lower():
            text = f"pull of {ref} failed: registry {registry} refused the connection (is it running?)"
            return EngineError("pull failed", text, e.status)
        if _is_auth_failure(message, e.status):
            return EngineError(
                "registry auth failed", f"pull of {ref} failed: {_one_line(message)}", e.status
            )
        return EngineError("pull failed", f"pull of {ref} failed: {_one_line(message)}", e.status)

    def registry_login(self, username: str, password: str, serveraddress: str) -> None:
        """Check credentials with the registry through the engine (`POST /auth`); stores nothing.

        Raises EngineError "registry auth failed" if refused, "registry login failed" otherwise.
        Secrets never appear in the error.
        """
        body = {"username": username, "password": password, "serveraddress": serveraddress}
        try:
            self._call("POST", "/auth", body=body, reason="registry login failed")
        except EngineError as e:
            if e.reason == "engine unreachable":
                raise
            message = _one_line(_scrub(str(e), [password]))
            if "connection refused" in message.lower():
                message = f"registry {serveraddress} refused the connection (is it running?)"
            reason = (
                "registry auth failed" if _is_auth_failure(message, e.status) else "registry login failed"
            )
            raise EngineError(reason, f"login to {serveraddress} failed: {message}", e.status) from None

    def image_load(self, tar_path: str) -> list[str]:
        """Load a `docker save` tarball (streamed from disk); returns the loaded names (or image ids)."""
        try:
            size = os.path.getsize(tar_path)
            fh: BinaryIO = open(tar_path, "rb")  # noqa: SIM115 - closed below, after the upload
        except OSError as e:
            raise EngineError("image load failed", f"cannot read {tar_path}: {e.strerror or e}") from e
        with fh:
            conn, resp = self._open(
                "POST",
                "/images/load",
                query={"quiet": True},
                body=fh,
                headers={"Content-Type": "application/x-tar", "Content-Length": str(size)},
                reason="image load failed",
            )
            loaded = []
            for msg in iter_json_stream(self._stream_chunks(conn, resp)):
                if msg.get("error") or msg.get("errorDetail"):
                    detail = msg.get("errorDetail") or {}
                    raise EngineError(
                        "image load failed", _one_line(str(msg.get("error") or detail.get("message")))
                    )
                text = str(msg.get("stream") or "").strip()
                for prefix in ("Loaded image: ", "Loaded image ID: "):
                    if text.startswith(prefix):
                        loaded.append(text[len(prefix) :].strip())
        return loaded

    def image_remove(self, ref: str, force: bool = False) -> list[dict[str, Any]]:
        """Remove an image; returns the engine's Untagged/Deleted list ([] if there was no such image)."""
        try:
            return (
                self._call(
                    "DELETE", f"/images/{_quote(ref)}", query={"force": force}, reason="image remove failed"
                )
                or []
            )
        except EngineError as e:
            if e.status == 404:
                return []
            raise

    # ----------------------------------------------------------------- containers

    def container_create(self, body: Mapping[str, Any], name: str | None = None) -> str:
        """Create a container from the engine's create JSON; returns its id."""
        result = self._call(
            "POST",
            "/containers/create",
            query={"name": name} if name else None,
            body=dict(body),
            reason="container create failed",
            not_found="image not found",
        )
        return str(result["Id"])

    def container_start(self, container_id: str) -> None:
        self._call("POST", f"/containers/{_quote(container_id)}/start", reason="container start failed")

    def container_wait(self, container_id: str, timeout: float | None = None) -> int:
        """Block until the container stops; return its exit status.

        `timeout` (seconds; None waits forever) is the socket timeout of the wait request: when it passes
        WaitTimeout is raised and the container is left as it is.
        """
        if timeout is not None:
            timeout = max(timeout, 0.001)  # 0 would make the socket non-blocking
        try:
            result = self._call(
                "POST",
                f"/containers/{_quote(container_id)}/wait",
                timeout=timeout,
                reason="container wait failed",
                not_found="container not found",
            )
        except _EngineTimeout as e:
            raise WaitTimeout(f"container {container_id[:12]} still running after {timeout}s") from e
        error = (result or {}).get("Error") or {}
        if error.get("Message"):
            raise EngineError("container wait failed", _one_line(str(error["Message"])))
        return int(result["StatusCode"])

    def container_kill(self, container_id: str, signal: str = "SIGKILL") -> None:
        """Send `signal`; a container that is gone or no longer running is not an error."""
        try:
            self._call(
                "POST",
                f"/containers/{_quote(container_id)}/kill",
                query={"signal": signal},
                reason="container kill failed",
            )
        except EngineError as e:
            if e.status not in (404, 409):
                raise

    def container_remove(self, container_id: str, force: bool = True, volumes: bool = True) -> None:
        """Remove the container (and its anonymous volumes); a missing container is not an error."""
        try:
            self._call(
                "DELETE",
                f"/containers/{_quote(container_id)}",
                query={"force": force, "v": volumes},
                reason="container remove failed",
            )
        except EngineError as e:
            # 409 here means a removal is already in progress.
            if e.status not in (404, 409):
                raise

    def container_inspect(self, container_id: str) -> dict[str, Any] | None:
        try:
            return self._call(
                "GET", f"/containers/{_quote(container_id)}/json", not_found="container not found"
            )
        except EngineError as e:
            if e.status == 404:
                return None
            raise

    def container_logs(self, container_id: str, follow: bool = True, tty: bool | None = None) -> LogStream:
        """Stream stdout and stderr as (stream, bytes) pairs; with `follow`, until the container stops.

        `tty` says whether the container has a TTY (a raw, unmultiplexed stream, all "stdout");
        None looks it up. The stream has no socket timeout; `close()` it to stop early.
        """
        if tty is None:
            info = self.container_inspect(container_id)
            if info is None:
                raise EngineError("container not found", f"no such container: {container_id}", 404)
            tty = bool((info.get("Config") or {}).get("Tty"))
        conn, resp = self._open(
            "GET",
            f"/containers/{_quote(container_id)}/logs",
            query={"stdout": True, "stderr": True, "follow": follow},
            timeout=None,
            reason="log stream failed",
            not_found="container not found",
        )
        return LogStream(conn, resp, tty)

    def container_list(
        self, filters: Mapping[str, Any] | None = None, include_stopped: bool = True
    ) -> list[dict[str, Any]]:
        """`GET /containers/json`; filter values may be a string or a list (e.g. {"name": ["x"]})."""
        query: dict[str, Any] = {"all": include_stopped}
        if filters:
            query["filters"] = json.dumps(
                {k: [v] if isinstance(v, str) else list(v) for k, v in filters.items()}
            )
        return self._call("GET", "/containers/json", query=query) or []


def _quote(part: str) -> str:
    return quote(part, safe="/:@")
