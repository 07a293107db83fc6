"""Fixtures for the step tests: keys, a fixture Alpine mirror, loopback servers, projects."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mirror_support import BUILD_BASE, Keys, MirrorServer, ProjectLoader, build_mirror
from pakman.alpine import host_arch
from pakman.apk import SigningKey, generate_key
from pakman.compile.settings import Settings
from pakman.project import Project, load_project


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("keys")
    private, public = generate_key(folder / "mirror", "test", bits=2048)
    trusted = folder / "trusted"
    trusted.mkdir()
    (trusted / public.name).write_bytes(public.read_bytes())
    other, _ = generate_key(folder / "other", "other", bits=2048)
    return Keys(SigningKey.from_file(private), private, trusted, SigningKey.from_file(other))


@pytest.fixture(scope="session")
def mirror_root(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Path:
    """The fixture mirror, built once; tests that change it work on a copy."""
    arches = tuple(sorted({"x86_64", host_arch()}))
    return build_mirror(tmp_path_factory.mktemp("mirror") / "alpine", keys.mirror, arches)


@pytest.fixture
def serve() -> Iterator[Callable[[Path], MirrorServer]]:
    """Start a loopback server for a folder; every server started stops after the test."""
    servers: list[MirrorServer] = []

    def start(root: Path) -> MirrorServer:
        server = MirrorServer(root).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def mirror(serve: Callable[[Path], MirrorServer], mirror_root: Path) -> MirrorServer:
    """The fixture mirror served on 127.0.0.1."""
    return serve(mirror_root)


@pytest.fixture
def load(tmp_path: Path, keys: Keys) -> ProjectLoader:
    """Load the apps under tmp_path/apps as a build in tmp_path, signed with the test key."""

    def load_apps(mirror: str | None, **settings: object) -> Project:
        options: dict[str, object] = {
            "paths": (str(tmp_path / "apps"),),
            "root": str(tmp_path),
            "mirror": mirror,
            "key_file": str(keys.mirror_private),
            "version": "1.0.0",
            "build_base": BUILD_BASE,
            # the lock's rules on the host; on alpine (the default) an index is required
            "build_on": "host",
            **settings,
        }
        return load_project(Settings(**options))  # type: ignore[arg-type]

    return load_apps
