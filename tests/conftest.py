"""Shared test fixtures: golden files, a signing key, a fixture Alpine mirror, an S3 server (helpers: support.py, alpine_fixture.py, s3_support.py)."""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from alpine_fixture import AlpineRepository, LoopbackMirror, build_alpine_repository
from nginx_support import Nginx, running_nginx
from s3_support import FaultProxy, S3Server
from support import TEST_EPOCH, updating_goldens


def pytest_configure(config: pytest.Config) -> None:
    os.environ["SOURCE_DATE_EPOCH"] = TEST_EPOCH  # see support.TEST_EPOCH
    # `pakman index` keeps its cache under XDG_CACHE_HOME: the suite's own, not the user's.
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pakman-tests-cache-")
    # Builds run on the host unless a test says otherwise: the default (--build-on alpine)
    # needs an Alpine mirror for every build, and most tests build with --offline to test
    # things the sandbox does not change. The tests of the default build on the fixture
    # mirror and remove this variable (tests/test_build_on.py, tests/test_examples_alpine.py).
    os.environ["PAKMAN_BUILD_ON"] = "host"
    # One switch for every golden test, including those that read the variable.
    if config.getoption("--update-goldens"):
        os.environ["PAKMAN_UPDATE_GOLDENS"] = "1"


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.environ["XDG_CACHE_HOME"], ignore_errors=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        help="rewrite golden files from the current output instead of comparing",
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[Path, str], None]:
    """Compare text with a golden file (a unified diff on mismatch), or rewrite it."""
    update = updating_goldens(request.config)

    def check(path: Path, actual: str) -> None:
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual, encoding="utf-8")
            return
        if not path.exists():
            pytest.fail(f"golden file {path} is missing; run with --update-goldens to create it")
        expected = path.read_text(encoding="utf-8")
        if actual != expected:
            diff = "".join(
                difflib.unified_diff(
                    expected.splitlines(keepends=True),
                    actual.splitlines(keepends=True),
                    fromfile=f"{path} (golden)",
                    tofile="actual",
                )
            )
            pytest.fail(f"output differs from {path}:\n{diff}\n(--update-goldens rewrites it)")

    return check


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2048-bit private key for builds (`--key`); its folder is a `--keys-dir` for verify."""
    from pakman.apk import generate_key

    private, _ = generate_key(tmp_path_factory.mktemp("signing-key"), "test", bits=2048)
    return private


@pytest.fixture(scope="session")
def alpine_repository(tmp_path_factory: pytest.TempPathFactory) -> AlpineRepository:
    """A small Alpine mirror made from Debian's busybox and musl (see alpine_fixture.py)."""
    return build_alpine_repository(tmp_path_factory.mktemp("alpine-repository"))


@pytest.fixture(scope="session")
def alpine_mirror(alpine_repository: AlpineRepository) -> Iterator[LoopbackMirror]:
    """The fixture mirror served on 127.0.0.1 (`alpine_mirror.url`), stopped after the session."""
    mirror = LoopbackMirror(alpine_repository.root).start()
    yield mirror
    mirror.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS) on 127.0.0.1 for the session (see s3_support.py)."""
    server = S3Server(tmp_path_factory.mktemp("s3-server")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket of `s3_server`, for one test."""
    return s3_server.new_bucket()


@pytest.fixture
def s3_proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    """A recording, fault-injecting proxy to `s3_server` (set `.rule`), stopped after the test."""
    proxy = FaultProxy(s3_server.endpoint).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    """A real nginx on 127.0.0.1 with WebDAV PUT: an empty remote cache, stopped after the test."""
    with running_nginx(tmp_path / "nginx") as server:
        yield server
