"""A real nginx on 127.0.0.1 serving a remote cache (WebDAV PUT), for the remote cache tests.

Debian's `nginx` (scripts/test installs it). Everything it writes (the
cache, its pid, logs and temporary bodies) stays in one folder of the test;
it runs in the foreground as a child of the test and is killed at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pakman.workspace.remote_http import Exchange, HttpCache, RemoteError

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

# The default: a cache that keeps what is PUT and serves it back.
DAV = """
    location / {
      dav_methods PUT;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
    }
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Nginx:
    folder: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def root(self) -> Path:
        """The folder the cache's files are in: ac/ and cas/."""
        return self.folder / "cache"

    def access_log(self) -> str:
        path = self.folder / "access.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGKILL the master; its worker ends with it (it watches its parent).
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.folder / "nginx.pid").read_text())
            os.kill(pid, signal.SIGKILL)


def _config(folder: Path, port: int, locations: str) -> str:
    temp = folder / "temp"
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log {folder}/access.log;
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  client_max_body_size 0;
  keepalive_requests 100000;
  server {{
    listen 127.0.0.1:{port};
    root {folder}/cache;
{locations}
  }}
}}
"""


@contextlib.contextmanager
def running_nginx(folder: Path, locations: str = DAV) -> Iterator[Nginx]:
    """nginx serving `folder/cache` on a free loopback port until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cache").mkdir(exist_ok=True)
    (folder / "temp").mkdir(exist_ok=True)
    port = free_port()
    config = folder / "nginx.conf"
    config.write_text(_config(folder, port, locations))
    process = subprocess.Popen(
        [NGINX, "-p", str(folder), "-c", str(config), "-e", str(folder / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = Nginx(folder, port, process)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                log = (folder / "error.log").read_text() if (folder / "error.log").exists() else ""
                raise RuntimeError(f"nginx ended: {log}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not start listening")
            time.sleep(0.02)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port that takes connections and never answers (a server hung)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        yield int(listener.getsockname()[1])


def request(
    cache: HttpCache,
    method: str,
    path: str,
    body: bytes | Path | None = None,
    sink: Callable[[bytes], None] | None = None,
) -> Exchange:
    """One request through the remote cache's client; RemoteError when it failed."""
    exchange = Exchange(method, path, body, sink)
    for done in cache.run(deque([exchange])):
        if done.error:
            raise RemoteError(done.error)
    return exchange
