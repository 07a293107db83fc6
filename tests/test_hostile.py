"""A hostile checkout: what the error corpus (tests/errors/) cannot express.

The corpus holds most cases as data; these need a umask, a full file system
or a look at files a build leaves behind.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pakman.cli import main

BASE_APP = Path(__file__).resolve().parent / "errors" / "key-dev-zero" / "tree"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A workspace holding one small app (`app/`), as the current folder."""
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "PAKMAN_", "ABUILD_")) or name == "SOURCE_DATE_EPOCH":
            monkeypatch.delenv(name)
    ws = tmp_path / "ws"
    shutil.copytree(BASE_APP, ws, symlinks=True)
    monkeypatch.chdir(ws)
    yield ws


def test_the_workspace_keys_folder_is_private_whatever_the_umask(workspace: Path) -> None:
    previous = os.umask(0)
    try:
        assert main(["build", "--offline"]) == 0
    finally:
        os.umask(previous)
    assert (workspace / ".pakman" / "keys").stat().st_mode & 0o777 == 0o700
