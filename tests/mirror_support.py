"""A fixture Alpine mirror and a loopback HTTP server for it, plus app helpers for fetch-deps.

Used by tests/apk/test_mirror.py (pakman.apk.mirror) and the step tests
(tests/steps/, whose fixtures live in tests/steps/conftest.py). A module of its
own in tests/ (not a conftest.py) so that `import mirror_support` works from
every test folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pakman.apk import PackageInfo, SigningKey, read_index_entry, write_index, write_package
from pakman.apk.index import index_bytes
from pakman.apk.reader import read_index_file
from pakman.project import Project
from support import gzip_members

EPOCH = 1_700_000_000
BRANCH = "v3.20"

# (repository, name, version, provides): a few packages shaped like Alpine 3.20's.
PACKAGES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("main", "musl", "1.2.5", ("so:libc.musl-x86_64.so.1=1",)),
    ("main", "busybox", "1.36.1", ("cmd:sh=1.36.1-r0", "cmd:busybox=1.36.1-r0")),
    ("main", "bash", "5.2.26", ("cmd:bash=5.2",)),
    ("main", "curl", "8.9.0", ("cmd:curl=8.9.0-r0",)),
    ("main", "nodejs", "20.15.1", ("cmd:node=20.15.1-r0",)),
    ("main", "nginx", "1.26.1", ("cmd:nginx=1.26.1-r0",)),
    ("community", "nodejs-current", "22.4.1", ("cmd:node=22.4.1-r0",)),
    ("community", "jq", "1.7.1", ("cmd:jq=1.7.1-r0",)),
    ("community", "broken-tool", "1.0", ()),  # needs a library no package provides
    # provides an older `bash`: apk takes the highest version of the name asked for, bash's own
    ("community", "bash-compat", "5.0.0", ("bash=5.0.0-r0",)),
)

# What fixture packages depend on (`D:`), so that a closure has depth.
DEPENDS: dict[str, tuple[str, ...]] = {
    "busybox": ("so:libc.musl-x86_64.so.1",),
    "bash": ("so:libc.musl-x86_64.so.1", "cmd:sh"),
    "curl": ("so:libc.musl-x86_64.so.1",),
    "nodejs": ("so:libc.musl-x86_64.so.1",),
    "jq": ("so:libc.musl-x86_64.so.1",),
    "broken-tool": ("so:libc.musl-x86_64.so.1", "so:libgone.so.3"),
}
# The build base set the step tests use (--build-base-packages): what the fixture mirror has.
BUILD_BASE = "busybox"

Mode = Literal["ok", "error", "close"]


@dataclass(frozen=True)
class Keys:
    """The mirror's key (and a folder holding only its public half), and a stranger's key."""

    mirror: SigningKey
    mirror_private: Path
    trusted_dir: Path  # like /etc/apk/keys, with the mirror's public key
    other: SigningKey


# load(mirror_url_or_None, **Settings fields) -> Project (the `load` fixture)
ProjectLoader = Callable[..., Project]


def build_mirror(root: Path, key: SigningKey, arches: tuple[str, ...]) -> Path:
    """`<root>/v3.20/{main,community}/<arch>/` with the PACKAGES and a signed APKINDEX.tar.gz each."""
    trees = root.parent / f"{root.name}-trees"
    for arch in arches:
        for repository, name, version, provides in PACKAGES:
            tree = trees / arch / name
            (tree / "usr/share" / name).mkdir(parents=True, exist_ok=True)
            (tree / "usr/share" / name / "README").write_text(f"{name} {version} for {arch}\n")
            info = PackageInfo(
                name,
                version,
                arch,
                provides=provides,
                depends=DEPENDS.get(name, ()),
                description=name,
                builddate=EPOCH,
            )
            write_package(tree, info, root / BRANCH / repository / arch, key)
        for repository in ("main", "community"):
            write_index(root / BRANCH / repository / arch, key, builddate=EPOCH)
    shutil.rmtree(trees)
    return root


def index_path(root: Path, repository: str, arch: str) -> Path:
    return root / BRANCH / repository / arch / "APKINDEX.tar.gz"


def identity_of(root: Path, repository: str, arch: str, name: str, version: str) -> str:
    """The `C:` of a fixture package, read from its .apk file."""
    return read_index_entry(root / BRANCH / repository / arch / f"{name}-{version}.apk").identity


def tamper_index(path: Path, key: SigningKey) -> None:
    """Keep the index's signature but replace the index it signs (a package renamed)."""
    signature, _ = gzip_members(path.read_bytes())
    with path.open("rb") as handle:
        text = read_index_file(handle).text
    forged = index_bytes(text.replace("P:jq\n", "P:jq-evil\n"), key, EPOCH)
    _, member = gzip_members(forged)
    path.write_bytes(signature + member)


def copy_mirror(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


@dataclass
class Served:
    """One request the server answered."""

    path: str
    status: int  # 0 when the connection was dropped
    body_bytes: int
    headers: dict[str, str] = field(default_factory=dict)


class MirrorServer:
    """Serves a folder on 127.0.0.1 (a random port) in a thread, like a mirror; records requests.

    `mode`: ok, error (HTTP 500 for everything) or close (drop the connection).
    `fail` lists path fragments that get a 500 even when the mode is ok.
    `etag` / `last_modified` choose which validators the server sends and honours.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mode: Mode = "ok"
        self.fail: tuple[str, ...] = ()
        self.etag = True
        self.last_modified = True
        self.requests: list[Served] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.mirror = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> MirrorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def statuses(self) -> list[int]:
        return [r.status for r in self.requests]

    def downloaded(self) -> int:
        """Bytes of response bodies sent."""
        return sum(r.body_bytes for r in self.requests)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    mirror: MirrorServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        mirror = self.server.mirror
        served = Served(self.path, 0, 0, {k: v for k, v in self.headers.items()})
        mirror.requests.append(served)
        if mirror.mode == "close":
            self.close_connection = True
            return
        if mirror.mode == "error" or any(part in self.path for part in mirror.fail):
            served.status = 500
            self.send_error(500, "mirror broken for the test")
            return
        path = mirror.root / unquote(urlsplit(self.path).path).lstrip("/")
        if ".." in Path(self.path).parts or not path.is_file():
            served.status = 404
            self.send_error(404)
            return
        data = path.read_bytes()
        etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'
        mtime = int(os.stat(path).st_mtime)
        if self._not_modified(etag, mtime):
            served.status = 304
            self.send_response(304)
            self.end_headers()
            return
        served.status, served.body_bytes = 200, len(data)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        if mirror.etag:
            self.send_header("ETag", etag)
        if mirror.last_modified:
            self.send_header("Last-Modified", formatdate(mtime, usegmt=True))
        self.end_headers()
        self.wfile.write(data)

    def _not_modified(self, etag: str, mtime: int) -> bool:
        mirror = self.server.mirror
        if mirror.etag and "If-None-Match" in self.headers:
            return self.headers["If-None-Match"] == etag
        since = self.headers.get("If-Modified-Since")
        if mirror.last_modified and since:
            return int(parsedate_to_datetime(since).timestamp()) >= mtime
        return False


def write_app(apps: Path, name: str, config: str, files: dict[str, str] | None = None) -> Path:
    """An app folder `apps/<name>/` with its instellar.yml (and other files)."""
    folder = apps / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "instellar.yml").write_text(config)
    for relative, text in (files or {}).items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    return folder


def custom_app(
    build: list[str], runtime: list[str], arches: tuple[str, ...] = ("x86_64",), stack: str = "3.20"
) -> str:
    """The instellar.yml of a `type: custom` app with these dependencies."""
    return (
        f"stack: alpine/{stack}\n"
        "type: custom\n"
        f"architectures: [{', '.join(arches)}]\n"
        "dependencies:\n"
        f"  build: [{', '.join(repr(d) for d in build)}]\n"
        f"  runtime: [{', '.join(repr(d) for d in runtime)}]\n"
        "build:\n"
        "  command: 'true'\n"
        "package: |\n"
        '  mkdir -p "$pkgdir"/usr/share/tool\n'
    )
