"""A local Instellar platform: the publishing endpoints as the original PAKman's client uses them.

It serves, on 127.0.0.1, the endpoints upmaru/pakman's lib/pakman/instellar.ex
calls (see pakman.ship.instellar's docstring), with its methods, paths, JSON
bodies and headers, and the statuses that client expects: 201 or 404 for
the auth callback, 200 or 404 for a commit's deployment, 200 for the
storage credential, 201 (new) or 200 (existed) for a deployment, and 201,
200 or 422 for a configuration. Where the original shows nothing, this
server chooses: 401 for a wrong session or package token, 422 for a
configuration payload without kits. Every request is recorded.
`fail[path] = status` makes a path answer that status, echoing the tokens
it was sent in the body (a client must not print them); `hang` holds every
answer until the server stops.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

AUTH_TOKEN = "auth-tok-4f1c9d2e7a"
PACKAGE_TOKEN = "pkg-tok-8b3e5a0c61"
SESSION_TOKEN = "session-tok-2d7f0b9e44"


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None


@dataclass
class Platform:
    """The platform's state and what the server answers."""

    storage: dict[str, Any] = field(default_factory=dict)
    # commit -> the deployment made for it (attributes as the platform answers them)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    configurations: dict[str, Any] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    redirect: dict[str, str] = field(default_factory=dict)  # path -> where a 302 sends it
    hang: threading.Event | None = None
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self) -> list[tuple[str, str]]:
        """Method and path of every request, in order."""
        return [(r.method, r.path) for r in self.requests]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        platform = self.server.platform
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with platform.lock:
            platform.requests.append(
                Recorded(method, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
        if platform.hang is not None:
            platform.hang.wait(30)
            return
        if self.path in platform.redirect:
            self.send_response(302)
            self.send_header("location", platform.redirect[self.path])
            self.send_header("content-length", "0")
            self.end_headers()
            return
        if self.path in platform.fail:
            # Echoing what it was sent, as careless servers do: a client must not print it.
            echo = {k: self.headers.get(k) for k in ("authorization", "x-instellar-package-token")}
            self._answer(
                platform.fail[self.path],
                {"errors": {"detail": "failed on purpose", "sent": echo, "body": body}},
            )
            return
        status, data = self._route(method, body)
        self._answer(status, data)

    def _route(self, method: str, body: Any) -> tuple[int, Any]:
        platform = self.server.platform
        path = self.path
        if method == "POST" and path == "/publish/automation/callback":
            if body != {"auth_token": AUTH_TOKEN}:
                return 404, {"errors": {"detail": "not_found"}}
            return 201, {"token": SESSION_TOKEN}
        if (
            self.headers.get("authorization") != f"Bearer {SESSION_TOKEN}"
            or self.headers.get("x-instellar-package-token") != PACKAGE_TOKEN
        ):
            return 401, {"errors": {"detail": "unauthorized"}}
        parts = path.strip("/").split("/")
        if method == "GET" and path == "/publish/storage":
            return 200, {"attributes": platform.storage}
        if method == "GET" and parts[:2] == ["publish", "deployments"] and len(parts) == 3:
            found = platform.deployments.get(parts[2])
            if found is None:
                return 404, {"errors": {"detail": "not_found"}}
            return 200, {"attributes": found}
        if method == "POST" and path == "/publish/deployments":
            deployment = body["deployment"]
            found = platform.deployments.get(deployment["hash"])
            if found is not None and found["archive_path"] == deployment["archive_path"]:
                return 200, {"attributes": found}
            found = {"id": len(platform.deployments) + 1, **deployment}
            platform.deployments[deployment["hash"]] = found
            return 201, {"attributes": found}
        if method == "POST" and len(parts) == 4 and parts[3] == "configurations":
            payload = body["configuration"]["payload"]
            if not isinstance(payload.get("kits"), list):
                return 422, {"errors": {"kits": ["can't be blank"]}}
            existed = parts[2] in platform.configurations
            platform.configurations[parts[2]] = payload
            return (200 if existed else 201), {"id": parts[2]}
        return 404, {"errors": {"detail": "no such route"}}

    def _answer(self, status: int, data: Any) -> None:
        raw = json.dumps({"data": data}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    platform: Platform


@contextmanager
def serve(platform: Platform) -> Iterator[str]:
    """Run the platform on 127.0.0.1 on a free port; yields its address."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.platform = platform
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        if platform.hang is not None:
            platform.hang.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
