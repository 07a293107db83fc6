"""fileio.remove_tree: rm -rf for build roots (read-only folders, links that lead anywhere)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pakman.fileio import remove_tree


@pytest.fixture
def place() -> Iterator[Path]:
    """A folder removed afterwards whatever the test left in it."""
    folder = Path(tempfile.mkdtemp(prefix="pakman-remove-tree-"))
    yield folder
    remove_tree(folder)


def _root_like_tree(top: Path, outside: Path) -> None:
    """Read-only folders (one not even readable), files, a hard link, links out of the tree."""
    (top / "usr/lib/deep").mkdir(parents=True)
    (top / "usr/lib/deep/file").write_text("x")
    (top / "usr/lib/hard").hardlink_to(top / "usr/lib/deep/file")
    (top / "usr/lib/out").symlink_to(outside)  # a folder outside: must not be emptied
    (top / "usr/lib/out-file").symlink_to(outside / "keep")
    (top / "locked").mkdir()
    (top / "locked/secret").write_text("s")
    for folder, mode in (("usr/lib/deep", 0o555), ("usr/lib", 0o555), ("usr", 0o500)):
        (top / folder).chmod(mode)
    (top / "locked").chmod(0o000)


def test_remove_tree_removes_read_only_folders_and_never_follows_links(place: Path) -> None:
    outside = place / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    top = place / "root"
    top.mkdir()
    _root_like_tree(top, outside)
    prefix = []
    if os.geteuid() == 0:
        # root may remove anything: run without capabilities, as pakman run without root is
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("needs util-linux's setpriv to drop root's capabilities")
        prefix = [setpriv, "--bounding-set=-all"]
    code = f"from pakman.fileio import remove_tree; remove_tree({str(top)!r})"
    subprocess.run([*prefix, sys.executable, "-c", code], check=True)
    assert not top.exists()
    assert (outside / "keep").read_text() == "keep"


def test_remove_tree_removes_a_link_not_what_it_leads_to(place: Path) -> None:
    (place / "folder").mkdir()
    (place / "folder/keep").write_text("keep")
    (place / "link").symlink_to(place / "folder")
    remove_tree(place / "link")
    assert not (place / "link").is_symlink()
    assert (place / "folder/keep").exists()
    remove_tree(place / "missing")  # nothing there: nothing to do
