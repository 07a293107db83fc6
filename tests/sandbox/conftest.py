"""Fixtures for the sandbox tests: one root made from the fixture mirror, shared by the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from alpine_fixture import AlpineRepository
from pakman.sandbox import RootSpec, ensure_root


@pytest.fixture(scope="session")
def alpine_root(
    tmp_path_factory: pytest.TempPathFactory, alpine_repository: AlpineRepository
) -> Path:
    """A root with every fixture package installed (read-only by convention: do not change it)."""
    spec = RootSpec(
        alpine_repository.packages(),
        alpine_repository.arch,
        world=("alpine-release", "hello-setup"),
        repositories=alpine_repository.repositories("http://127.0.0.1:9"),
        keys=(alpine_repository.public_key,),
    )
    return ensure_root(tmp_path_factory.mktemp("roots"), "fixture", spec)
