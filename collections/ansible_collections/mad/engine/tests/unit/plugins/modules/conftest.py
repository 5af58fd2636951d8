# Copyright: (c) 2026, madengine developers
# Apache License 2.0 (see LICENSE)
"""Module tests run each module's main() in-process: a fake engine on a unix socket, real arguments."""

from __future__ import annotations

import json
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import pytest
from ansible.module_utils.testing import patch_module_args


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: FakeEngine

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/v1."):
            path = "/" + path.split("/", 2)[2]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, path, dict(self.headers.items()), body))
        status, payload = self.server.routes.get((self.command, path), (404, {"message": f"no route {path}"}))
        if callable(payload):
            status, payload = payload()
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _dispatch

    def log_message(self, *args: Any) -> None:
        pass


class FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """routes: {(method, unversioned path): (status, JSON-able body, bytes, or a callable giving both)}."""

    daemon_threads = True

    def __init__(self, path: str) -> None:
        super().__init__(path, _Handler)
        self.url = f"unix://{path}"
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.routes: dict[tuple[str, str], tuple[int, Any]] = {
            ("GET", "/version"): (200, {"Version": "20.10.24", "ApiVersion": "1.41"}),
        }


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    tmp = tempfile.mkdtemp(prefix="mad-mod-")  # short: unix socket paths are limited to 107 bytes
    server = FakeEngine(f"{tmp}/docker.sock")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    shutil.rmtree(tmp)


@pytest.fixture
def run_module(capsys: pytest.CaptureFixture[str]) -> Callable[..., dict[str, Any]]:
    """Run a module's main() with `args` (and `_ansible_check_mode` etc.); returns its JSON result."""

    def run(main: Callable[[], None], args: dict[str, Any]) -> dict[str, Any]:
        with patch_module_args(args), pytest.raises(SystemExit):
            main()
        return json.loads(capsys.readouterr().out)

    return run
