"""_engine: reference splitting, auth header, stream decoding, error mapping (fake engine, unix socket)."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import socket
import socketserver
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from ansible_collections.mad.engine.plugins.module_utils import _engine
from ansible_collections.mad.engine.plugins.module_utils._engine import (
    ENGINE_ARGS,
    EngineClient,
    EngineError,
    StreamDemuxer,
    WaitTimeout,
    encode_auth,
    iter_json_stream,
    registry_of,
    split_reference,
)

DIGEST = "sha256:" + "ab" * 32


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(payload)) + payload


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("img", ("img", "latest")),
        ("img:1.0", ("img", "1.0")),
        ("library/img:tag", ("library/img", "tag")),
        ("127.0.0.1:5000/a/b:tag", ("127.0.0.1:5000/a/b", "tag")),
        ("127.0.0.1:5000/a/b", ("127.0.0.1:5000/a/b", "latest")),
        ("localhost:5000/x", ("localhost:5000/x", "latest")),
        (f"img@{DIGEST}", ("img", DIGEST)),
        (f"127.0.0.1:5000/a/b@{DIGEST}", ("127.0.0.1:5000/a/b", DIGEST)),
        (f"127.0.0.1:5000/a/b:tag@{DIGEST}", ("127.0.0.1:5000/a/b", DIGEST)),
        ("  img:1  ", ("img", "1")),
    ],
)
def test_split_reference(ref: str, expected: tuple[str, str]) -> None:
    assert split_reference(ref) == expected


def test_split_reference_rejects_empty() -> None:
    with pytest.raises(EngineError) as exc:
        split_reference("  ")
    assert exc.value.reason == "invalid reference"


@pytest.mark.parametrize(
    ("ref", "registry"),
    [
        ("img", "docker.io"),
        ("library/img:1", "docker.io"),
        ("127.0.0.1:5000/a/b:tag", "127.0.0.1:5000"),
        ("localhost/x", "localhost"),
        ("ghcr.io/org/x@" + DIGEST, "ghcr.io"),
    ],
)
def test_registry_of(ref: str, registry: str) -> None:
    assert registry_of(ref) == registry


def test_encode_auth_is_padded_base64url_json_without_empty_fields() -> None:
    # "~~~" and "???" encode to '+' and '/' in standard base64: the header must use '-' and '_'.
    auth = {"username": "u", "password": "~~~???", "serveraddress": "127.0.0.1:5000", "email": None}
    header = encode_auth(auth)
    assert "+" not in header and "/" not in header
    assert len(header) % 4 == 0
    assert json.loads(base64.urlsafe_b64decode(header)) == {
        "username": "u",
        "password": "~~~???",
        "serveraddress": "127.0.0.1:5000",
    }


def test_demux_whole_frames_and_stream_names() -> None:
    data = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"") + frame(3, b"sys")
    demux = StreamDemuxer()
    expected = [("stdout", b"out\n"), ("stderr", b"err\n"), ("stdout", b""), ("stderr", b"sys")]
    assert demux.feed(data) == expected
    assert demux.pending == 0


def test_demux_frames_split_across_reads() -> None:
    data = frame(1, b"hello\n") + frame(2, b"x" * 70000) + frame(1, b"bye")
    for step in (1, 3, 7, 8, 9, 4096):
        demux = StreamDemuxer()
        got: list[tuple[str, bytes]] = []
        for i in range(0, len(data), step):
            got.extend(demux.feed(data[i : i + step]))
        assert got == [("stdout", b"hello\n"), ("stderr", b"x" * 70000), ("stdout", b"bye")], step
        assert demux.pending == 0


def test_demux_keeps_incomplete_frame() -> None:
    demux = StreamDemuxer()
    assert demux.feed(frame(1, b"abc")[:-1]) == []
    assert demux.pending == 10
    assert demux.feed(b"c") == [("stdout", b"abc")]


def test_json_stream_split_anywhere() -> None:
    text = '{"status":"Pulling"}\r\n{"status":"Downloading \u00e9t\u00e9","id":"x"}\n{"error":"boom"}'
    data = text.encode("utf-8")
    for step in (1, 2, 5, len(data)):
        chunks = [data[i : i + step] for i in range(0, len(data), step)]
        assert [m.get("status") or m.get("error") for m in iter_json_stream(chunks)] == [
            "Pulling",
            "Downloading \u00e9t\u00e9",
            "boom",
        ]


def test_json_stream_truncated_raises() -> None:
    with pytest.raises(EngineError):
        list(iter_json_stream([b'{"status": "ok"}{"status": ']))


# --------------------------------------------------------------------------- configuration


def test_engine_args_shape_and_docker_host_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ENGINE_ARGS["docker_host"]["default"] == "unix:///var/run/docker.sock"
    assert ENGINE_ARGS["api_timeout"] == {"type": "int", "default": 60}
    strategy, args = ENGINE_ARGS["docker_host"]["fallback"]
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert strategy(*args) == "tcp://127.0.0.1:2375"
    monkeypatch.delenv("DOCKER_HOST")
    assert strategy(*args) == "unix:///var/run/docker.sock"


def test_client_takes_host_from_argument_params_env_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert EngineClient().docker_host == "unix:///var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/other.sock")
    assert EngineClient().docker_host == "unix:///run/other.sock"
    client = EngineClient({"docker_host": "tcp://127.0.0.1:2375", "api_timeout": 5})
    assert (client.docker_host, client.timeout) == ("tcp://127.0.0.1:2375", 5.0)


def test_unsupported_docker_host() -> None:
    with pytest.raises(EngineError) as exc:
        EngineClient("ssh://user@host")
    assert exc.value.reason == "invalid docker_host"


# --------------------------------------------------------------------------- unreachable engine


def test_missing_socket_is_engine_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "no" / "docker.sock"
    with pytest.raises(EngineError) as exc:
        EngineClient(f"unix://{path}").ping()
    err = exc.value
    assert err.reason == "engine unreachable"
    assert err.status is None
    assert str(path) in str(err) and "does not exist" in str(err)
    assert "dockerd" in str(err) and "DOCKER_HOST" in str(err)
    assert "\n" not in str(err)


def test_refused_socket_is_engine_unreachable() -> None:
    tmp = tempfile.mkdtemp(prefix="mad-eng-")
    try:
        path = f"{tmp}/docker.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)  # bound but not listening: connect() is refused
        try:
            with pytest.raises(EngineError) as exc:
                EngineClient(f"unix://{path}").image_inspect("img")
        finally:
            sock.close()
        assert exc.value.reason == "engine unreachable"
        assert "nothing listens" in str(exc.value)
    finally:
        shutil.rmtree(tmp)


def test_refused_tcp_is_engine_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EngineError) as exc:
        EngineClient(f"tcp://127.0.0.1:{port}", timeout=2).ping()
    assert exc.value.reason == "engine unreachable"
    assert f"127.0.0.1:{port}" in str(exc.value)


# --------------------------------------------------------------------------- fake engine

Route = Callable[["_Handler", dict[str, list[str]], bytes], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: _FakeEngine

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, parts.path, dict(self.headers.items()), body))
        path = parts.path
        if path == "/version":
            return self.reply(200, {"ApiVersion": self.server.api_version, "Version": "fake"})
        prefix = f"/v{self.server.expected_api}"
        short = path[len(prefix) :] if path.startswith(prefix) else path
        route = self.server.routes.get((self.command, short))
        if route is None:
            return self.reply(404, {"message": f"page not found: {self.command} {path}"})
        route(self, parse_qs(parts.query), body)

    do_GET = do_POST = do_DELETE = _dispatch

    def reply(
        self, status: int, doc: Any = None, raw: bytes | None = None, ctype: str = "application/json"
    ) -> None:
        data = raw if raw is not None else (json.dumps(doc).encode() if doc is not None else b"")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class _FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str) -> None:
        super().__init__(path, _Handler)
        self.api_version = "1.41"
        self.expected_api = "1.41"
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.hang = False


@pytest.fixture
def fake() -> Iterator[tuple[_FakeEngine, EngineClient]]:
    tmp = tempfile.mkdtemp(prefix="mad-eng-")  # short: unix socket paths are limited to 107 bytes
    server = _FakeEngine(f"{tmp}/docker.sock")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, EngineClient(f"unix://{tmp}/docker.sock", timeout=5)
    server.shutdown()
    server.server_close()
    shutil.rmtree(tmp)


@pytest.mark.parametrize(("server", "used"), [("1.41", "1.41"), ("1.45", "1.43"), ("1.43", "1.43")])
def test_api_version_is_negotiated_once_and_capped(fake: Any, server: str, used: str) -> None:
    engine, client = fake
    engine.api_version = server
    engine.expected_api = used
    engine.routes[("GET", "/info")] = lambda h, q, b: h.reply(200, {"Name": "fake"})
    assert client.info() == {"Name": "fake"}
    assert client.info() == {"Name": "fake"}
    paths = [r[1] for r in engine.requests]
    assert paths == ["/version", f"/v{used}/info", f"/v{used}/info"]


def test_http_errors_carry_the_engines_message(fake: Any) -> None:
    engine, client = fake
    engine.routes[("POST", "/containers/abc/start")] = lambda h, q, b: h.reply(
        500, {"message": 'OCI runtime create failed:\n exec: "nope": not found'}
    )
    engine.routes[("POST", "/containers/create")] = lambda h, q, b: h.reply(
        404, {"message": "No such image: ghost:1"}
    )
    with pytest.raises(EngineError) as exc:
        client.container_start("abc")
    assert (exc.value.reason, exc.value.status) == ("container start failed", 500)
    assert str(exc.value) == 'OCI runtime create failed: exec: "nope": not found'
    with pytest.raises(EngineError) as exc:
        client.container_create({"Image": "ghost:1"}, name="n1")
    assert (exc.value.reason, exc.value.status) == ("image not found", 404)
    assert str(exc.value) == "No such image: ghost:1"
    create = [r for r in engine.requests if r[1].endswith("/containers/create")][0]
    assert json.loads(create[3]) == {"Image": "ghost:1"}


def test_not_found_is_none_or_ignored(fake: Any) -> None:
    engine, client = fake
    assert client.image_inspect("ghost:1") is None
    assert client.container_inspect("ghost") is None
    assert client.image_remove("ghost:1") == []
    client.container_remove("ghost")
    client.container_kill("ghost")


def test_pull_sends_reference_parts_and_auth_header(fake: Any) -> None:
    engine, client = fake
    ref = f"127.0.0.1:5000/a/b@{DIGEST}"
    stream = b'{"status":"Pulling from a/b"}\r\n{"status":"Digest: ' + DIGEST.encode() + b'"}\r\n'
    engine.routes[("POST", "/images/create")] = lambda h, q, b: h.reply(200, raw=stream)
    engine.routes[("GET", f"/images/{ref}/json")] = lambda h, q, b: h.reply(200, {"Id": "sha256:1"})
    assert client.image_pull(ref, auth={"username": "u", "password": "p"}) == {"Id": "sha256:1"}
    method, path, headers = engine.requests[1][:3]
    assert (method, path) == ("POST", "/v1.41/images/create")
    auth = json.loads(base64.urlsafe_b64decode(headers["X-Registry-Auth"]))
    assert auth == {"username": "u", "password": "p", "serveraddress": "127.0.0.1:5000"}


def test_pull_query_string(fake: Any) -> None:
    engine, client = fake
    seen: list[dict[str, list[str]]] = []

    def create(h: _Handler, q: dict[str, list[str]], b: bytes) -> None:
        seen.append(q)
        h.reply(200, raw=b'{"status":"ok"}')

    engine.routes[("POST", "/images/create")] = create
    engine.routes[("GET", "/images/127.0.0.1:5000/a/b:tag/json")] = lambda h, q, b: h.reply(200, {"Id": "x"})
    client.image_pull("127.0.0.1:5000/a/b:tag")
    assert seen == [{"fromImage": ["127.0.0.1:5000/a/b"], "tag": ["tag"]}]


def test_pull_stream_error_unauthorized_and_scrubbed(fake: Any) -> None:
    engine, client = fake
    stream = (
        b'{"status":"Pulling"}\n{"errorDetail":{"message":"unauthorized: bad password hunter2"},'
        b'"error":"unauthorized: bad password hunter2"}\n'
    )
    engine.routes[("POST", "/images/create")] = lambda h, q, b: h.reply(200, raw=stream)
    with pytest.raises(EngineError) as exc:
        client.image_pull("127.0.0.1:5000/a/b:1", auth={"username": "u", "password": "hunter2"})
    assert exc.value.reason == "registry auth failed"
    assert "hunter2" not in str(exc.value) and "127.0.0.1:5000/a/b:1" in str(exc.value)


def test_pull_http_error_refused_registry_is_one_line(fake: Any) -> None:
    engine, client = fake
    message = 'Get "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused'
    engine.routes[("POST", "/images/create")] = lambda h, q, b: h.reply(500, {"message": message})
    with pytest.raises(EngineError) as exc:
        client.image_pull("127.0.0.1:5999/x:y")
    assert exc.value.reason == "pull failed"
    assert str(exc.value) == (
        "pull of 127.0.0.1:5999/x:y failed: registry 127.0.0.1:5999 refused the connection (is it running?)"
    )


def test_registry_login_failure_never_shows_the_password(fake: Any) -> None:
    engine, client = fake
    engine.routes[("POST", "/auth")] = lambda h, q, b: h.reply(
        401, {"message": "login attempt failed with status: 401 Unauthorized (password pa55w0rd)"}
    )
    with pytest.raises(EngineError) as exc:
        client.registry_login("u", "pa55w0rd", "127.0.0.1:5000")
    assert exc.value.reason == "registry auth failed"
    assert "pa55w0rd" not in str(exc.value) and "pa55w0rd" not in repr(exc.value.args)
    sent = json.loads(engine.requests[-1][3])
    assert sent == {"username": "u", "password": "pa55w0rd", "serveraddress": "127.0.0.1:5000"}


def test_container_wait_timeout(fake: Any) -> None:
    engine, client = fake

    def slow_wait(h: _Handler, q: dict[str, list[str]], b: bytes) -> None:
        time.sleep(1.5)
        with contextlib.suppress(OSError):  # the client may have given up already
            h.reply(200, {"StatusCode": 0})

    engine.routes[("POST", "/containers/c1/wait")] = slow_wait
    t0 = time.monotonic()
    with pytest.raises(WaitTimeout):
        client.container_wait("c1", timeout=0.3)
    assert time.monotonic() - t0 < 1.2
    assert isinstance(WaitTimeout("x"), TimeoutError)
    assert client.container_wait("c1", timeout=5) == 0


def test_container_logs_demultiplexed_and_closable(fake: Any) -> None:
    engine, client = fake
    payload = frame(1, b"a\n") + frame(2, b"b\n") + frame(1, b"c")

    def logs(h: _Handler, q: dict[str, list[str]], b: bytes) -> None:
        assert q["follow"] == ["1"] and q["stdout"] == ["1"] and q["stderr"] == ["1"]
        h.send_response(200)
        h.send_header("Content-Type", "application/vnd.docker.raw-stream")
        h.end_headers()
        for i in range(0, len(payload), 5):  # frames split across writes
            h.wfile.write(payload[i : i + 5])
            h.wfile.flush()
            time.sleep(0.01)
        if engine.hang:
            time.sleep(3)

    engine.hang = False
    engine.routes[("GET", "/containers/c1/logs")] = logs
    expected = [("stdout", b"a\n"), ("stderr", b"b\n"), ("stdout", b"c")]
    assert list(client.container_logs("c1", tty=False)) == expected

    engine.hang = True
    stream = client.container_logs("c1", tty=False)
    got = [next(stream), next(stream), next(stream)]
    assert got[0] == ("stdout", b"a\n")
    timer = threading.Timer(0.2, stream.close)
    timer.start()
    t0 = time.monotonic()
    assert list(stream) == []  # would block for 3 s without close()
    assert time.monotonic() - t0 < 2
    timer.join()


def test_container_logs_tty_is_raw(fake: Any) -> None:
    engine, client = fake
    engine.routes[("GET", "/containers/c1/json")] = lambda h, q, b: h.reply(200, {"Config": {"Tty": True}})
    engine.routes[("GET", "/containers/c1/logs")] = lambda h, q, b: h.reply(200, raw=b"\x01raw", ctype="x")
    assert b"".join(chunk[1] for chunk in client.container_logs("c1")) == b"\x01raw"


def test_container_list_filters(fake: Any) -> None:
    engine, client = fake
    seen: list[dict[str, list[str]]] = []

    def listing(h: _Handler, q: dict[str, list[str]], b: bytes) -> None:
        seen.append(q)
        h.reply(200, [{"Id": "c1"}])

    engine.routes[("GET", "/containers/json")] = listing
    assert client.container_list({"name": "mad-", "label": ["a=b", "c"]}) == [{"Id": "c1"}]
    assert seen[0]["all"] == ["1"]
    assert json.loads(seen[0]["filters"][0]) == {"name": ["mad-"], "label": ["a=b", "c"]}


def test_module_imports_no_ansible() -> None:
    source = Path(_engine.__file__).read_text()
    assert not re.search(r"^\s*(from|import) ansible(\.|\s|$)", source, re.M)
