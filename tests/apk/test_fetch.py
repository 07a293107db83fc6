"""Fetching a closure's packages from a repository served on 127.0.0.1 (with Range), verified."""

from __future__ import annotations

import io
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from apk_support import KeyPair
from pakman.apk import PackageInfo, SigningKey, generate_key, write_package
from pakman.apk.fetch import (
    ALPINE_KEYS,
    LockedPackage,
    PackageFetchError,
    TerminalProgress,
    cache_path,
    fetch_packages,
    trusted_package_keys,
)
from pakman.apk.index import read_index_entry
from pakman.apk.reader import identity_digest
from pakman.errors import ConfigError

BRANCH = "v3.20"
ARCH = "x86_64"
# (repository, name, version, size of its one file): big enough to be cut mid-body
PACKAGES = (
    ("main", "musl", "1.2.5-r0", 20_000),
    ("main", "busybox", "1.36.1-r0", 150_000),
    ("community", "jq", "1.7.1-r0", 5_000),
)


@dataclass
class Request:
    path: str
    range: str | None
    status: int = 0
    sent: int = 0


@dataclass
class Repository:
    """A folder served on loopback; `cut` answers the next request of a file with that many bytes."""

    root: Path
    packages: list[LockedPackage] = field(default_factory=list)  # as a lock lists them
    requests: list[Request] = field(default_factory=list)
    cut: dict[str, int] = field(default_factory=dict)
    url: str = ""

    def fetched(self) -> list[str]:
        return [r.path.rsplit("/", 1)[-1] for r in self.requests]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    repository: Repository


class _Handler(BaseHTTPRequestHandler):
    """GET with `Range: bytes=N-` (206), which http.server's own handler lacks."""

    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        repository = self.server.repository
        request = Request(self.path, self.headers.get("Range"))
        repository.requests.append(request)
        path = repository.root / self.path.lstrip("/")
        if ".." in self.path or not path.is_file():
            request.status = 404
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if request.range:
            start = int(request.range.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                request.status = 416
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        request.status = 206 if request.range else 200
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = repository.cut.pop(path.name, None)
        if cut is not None:
            body = body[:cut]  # then the connection closes: an interrupted download
            self.close_connection = True
        self.wfile.write(body)
        request.sent = len(body)


@pytest.fixture
def repository(tmp_path: Path, key_pair: KeyPair) -> Iterator[Repository]:
    root = tmp_path / "mirror"
    for repo, name, version, size in PACKAGES:
        tree = tmp_path / "trees" / name
        (tree / "usr/share" / name).mkdir(parents=True)
        # incompressible, so the .apk is about this size
        (tree / "usr/share" / name / "blob").write_bytes(random.Random(name).randbytes(size))
        upstream, _, release = version.rpartition("-r")
        info = PackageInfo(name, upstream, ARCH, release=int(release), builddate=1)
        write_package(tree, info, root / BRANCH / repo / ARCH, key_pair.key)
    served = Repository(root)
    for repo, name, version, _ in PACKAGES:
        entry = read_index_entry(root / BRANCH / repo / ARCH / f"{name}-{version}.apk")
        served.packages.append(LockedPackage(name, version, entry.identity, repo, entry.size))
    server = _Server(("127.0.0.1", 0), _Handler)
    server.repository = served
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield served
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def trusted(key_pair: KeyPair) -> dict[str, object]:
    return {key_pair.key.keyname: key_pair.key.public_key}


def locked(repository: Repository) -> list[LockedPackage]:
    """The closure as the lock records it (from the index entries of the served files)."""
    return list(repository.packages)


def fetch(
    repository: Repository, cache: Path, keys: dict[str, object], **options: object
) -> dict[str, Path]:
    return fetch_packages(
        locked(repository),
        mirror=repository.url,
        branch=BRANCH,
        arch=ARCH,
        cache_dir=cache,
        keys=keys,  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )


def served_file(repository: Repository, name: str) -> Path:
    repo, _, version, _ = next(p for p in PACKAGES if p[1] == name)
    return repository.root / BRANCH / repo / ARCH / f"{name}-{version}.apk"


def test_the_closure_is_fetched_once_into_a_cache_by_identity(
    repository: Repository, tmp_path: Path, trusted: dict[str, object]
) -> None:
    cache = tmp_path / "cache"
    paths = fetch(repository, cache, trusted, jobs=3)
    for package in locked(repository):
        path = paths[package.identity]
        assert (
            path == cache / f"{identity_digest(package.identity)}.apk" == cache_path(cache, package)
        )
        assert path.read_bytes() == served_file(repository, package.name).read_bytes()
    assert sorted(repository.fetched()) == [
        "busybox-1.36.1-r0.apk",
        "jq-1.7.1-r0.apk",
        "musl-1.2.5-r0.apk",
    ]
    assert {r.path.split("/")[2] for r in repository.requests} == {"main", "community"}
    assert not list(cache.glob("*.part"))
    assert fetch(repository, cache, trusted) == paths
    assert len(repository.requests) == 3  # cached: nothing fetched again


def test_a_package_whose_data_was_tampered_with_is_refused(
    repository: Repository, tmp_path: Path, trusted: dict[str, object]
) -> None:
    path = served_file(repository, "jq")
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # in the data member: the signature over the control still holds
    path.write_bytes(bytes(data))
    with pytest.raises(PackageFetchError) as caught:
        fetch(repository, tmp_path / "cache", trusted)
    (problem,) = caught.value.problems
    assert problem.startswith(f"jq 1.7.1-r0 (community): {repository.url}/{BRANCH}/community/")
    assert problem.endswith(
        "its data does not match the signed datahash (damaged or tampered with)"
    )
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        f"{identity_digest(p.identity)}.apk" for p in locked(repository) if p.name != "jq"
    )


def test_a_package_signed_by_a_key_not_trusted_is_refused(
    repository: Repository, tmp_path: Path, key_pair: KeyPair
) -> None:
    directory = tmp_path / "stranger"
    private, _ = generate_key(directory, "stranger", bits=2048)
    stranger = SigningKey.from_file(private)
    with pytest.raises(PackageFetchError) as caught:
        fetch(repository, tmp_path / "cache", {stranger.keyname: stranger.public_key})
    assert len(caught.value.problems) == 3
    assert all(
        p.endswith(f"signed by {key_pair.key.keyname}, which is not a trusted key")
        for p in caught.value.problems
    )


def test_a_package_signed_by_an_impostor_under_the_trusted_name_is_refused(
    repository: Repository, tmp_path: Path, impostor_key: KeyPair, key_pair: KeyPair
) -> None:
    impostor = {impostor_key.key.keyname: impostor_key.key.public_key}
    with pytest.raises(PackageFetchError) as caught:
        fetch(repository, tmp_path / "cache", impostor)
    assert f"BAD signature by {key_pair.key.keyname}" in caught.value.problems[0]


def test_a_package_that_is_not_the_one_the_index_lists_is_refused(
    repository: Repository, tmp_path: Path, trusted: dict[str, object]
) -> None:
    musl, busybox = locked(repository)[:2]
    wrong = LockedPackage(musl.name, musl.version, busybox.identity, musl.repository, musl.size)
    with pytest.raises(PackageFetchError) as caught:
        fetch_packages(
            [wrong],
            mirror=repository.url,
            branch=BRANCH,
            arch=ARCH,
            cache_dir=tmp_path / "cache",
            keys=trusted,  # type: ignore[arg-type]
        )
    (problem,) = caught.value.problems
    assert problem.startswith("musl 1.2.5-r0 (main): ")
    assert f"is not the index's C:{busybox.identity}" in problem
    # fetched once more from the start (a stale partial file could have been the cause)
    assert [r.range for r in repository.requests] == [None, None]


def test_an_interrupted_download_resumes_where_it_stopped(
    repository: Repository, tmp_path: Path, trusted: dict[str, object]
) -> None:
    size = served_file(repository, "busybox").stat().st_size
    repository.cut["busybox-1.36.1-r0.apk"] = 40_000
    paths = fetch(repository, tmp_path / "cache", trusted)
    busybox = [r for r in repository.requests if "busybox" in r.path]
    assert [(r.status, r.range, r.sent) for r in busybox] == [
        (200, None, 40_000),
        (206, "bytes=40000-", size - 40_000),
    ]
    assert len(paths) == 3


def test_a_partial_download_left_by_an_earlier_run_is_resumed(
    repository: Repository, tmp_path: Path, trusted: dict[str, object]
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    busybox = next(p for p in locked(repository) if p.name == "busybox")
    data = served_file(repository, "busybox").read_bytes()
    part = cache_path(cache, busybox).with_suffix(".apk.part")
    part.write_bytes(data[:12_345])
    fetch(repository, cache, trusted)
    (request,) = [r for r in repository.requests if "busybox" in r.path]
    assert (request.range, request.sent) == ("bytes=12345-", len(data) - 12_345)
    assert cache_path(cache, busybox).read_bytes() == data and not part.exists()


def test_a_stale_partial_download_is_fetched_again_from_the_start(
    repository: Repository, tmp_path: Path, trusted: dict[str, object]
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    jq = next(p for p in locked(repository) if p.name == "jq")
    part = cache_path(cache, jq).with_suffix(".apk.part")
    part.write_bytes(b"\0" * 1000)  # not the start of this file
    fetch(repository, cache, trusted)
    assert [r.range for r in repository.requests if "jq" in r.path] == ["bytes=1000-", None]
    assert cache_path(cache, jq).read_bytes() == served_file(repository, "jq").read_bytes()


def test_a_damaged_file_in_the_cache_is_fetched_again(
    repository: Repository, tmp_path: Path, trusted: dict[str, object]
) -> None:
    cache = tmp_path / "cache"
    paths = fetch(repository, cache, trusted)
    musl = next(p for p in locked(repository) if p.name == "musl")
    damaged = paths[musl.identity]
    damaged.write_bytes(damaged.read_bytes()[:-10])
    fetch(repository, cache, trusted)
    assert repository.fetched()[3:] == ["musl-1.2.5-r0.apk"]
    assert damaged.read_bytes() == served_file(repository, "musl").read_bytes()


def test_a_package_the_mirror_lacks_is_named(
    repository: Repository, tmp_path: Path, trusted: dict[str, object]
) -> None:
    served_file(repository, "jq").unlink()
    with pytest.raises(PackageFetchError) as caught:
        fetch(repository, tmp_path / "cache", trusted)
    (problem,) = caught.value.problems
    assert problem.startswith("jq 1.7.1-r0 (community): ") and "not found (HTTP 404)" in problem


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_shown_on_a_terminal_only(
    repository: Repository, tmp_path: Path, trusted: dict[str, object]
) -> None:
    terminal = _Terminal()
    fetch(repository, tmp_path / "cache", trusted, progress=TerminalProgress(terminal))
    total = sum(p.size for p in locked(repository))
    assert terminal.getvalue().endswith(
        f"\rfetching packages: 3/3 {total / 1e6:.1f}/{total / 1e6:.1f} MB\x1b[K\n"
    )
    pipe = io.StringIO()
    fetch(repository, tmp_path / "cache2", trusted, progress=TerminalProgress(pipe))
    assert pipe.getvalue() == ""


def test_alpines_public_keys_ship_with_pakman() -> None:
    keys = trusted_package_keys()
    assert len(keys) == len(list(ALPINE_KEYS.glob("*.rsa.pub"))) >= 16
    assert "alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub" in keys  # x86_64, 3.15 and later


def test_alpine_keys_given_replace_the_shipped_ones(tmp_path: Path, key_pair: KeyPair) -> None:
    folder = tmp_path / "keys"
    folder.mkdir()
    (folder / key_pair.public_path.name).write_bytes(key_pair.public_path.read_bytes())
    assert list(trusted_package_keys(str(folder))) == [key_pair.public_path.name]
    with pytest.raises(ConfigError, match="not a folder"):
        trusted_package_keys(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"no \*\.pub keys"):
        trusted_package_keys(str(tmp_path))


@pytest.mark.parametrize("identity", ["", "Q2abc", "Q1!!", "Q1" + "A" * 8])
def test_what_is_not_an_identity_is_refused(identity: str) -> None:
    with pytest.raises(ValueError):
        identity_digest(identity)
