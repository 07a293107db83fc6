"""Folders discarded at once and deleted in the background, all gone when the command ends."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from build_support import KeyPair, build, make_key, make_workspace
from pakman.workspace import trash as trash_module
from pakman.workspace.trash import Trash


def a_tree(root: Path, files: int = 50) -> Path:
    for i in range(files):
        folder = root / f"d{i % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}").write_text(str(i))
    os.symlink("d0", root / "link")
    return root


def test_a_folder_is_gone_at_once_and_deleted_by_the_time_of_waiting(tmp_path: Path) -> None:
    bin_ = Trash(tmp_path / "trash")
    old = a_tree(tmp_path / "old")
    bin_.discard(old)
    assert not old.exists()
    old.mkdir()  # the place is free for what replaces it
    bin_.wait()
    assert list((tmp_path / "trash").iterdir()) == []
    assert old.is_dir()


def test_files_links_and_nothing_are_removed_on_the_spot(tmp_path: Path) -> None:
    bin_ = Trash(tmp_path / "trash")
    (tmp_path / "file").write_text("x")
    os.symlink(tmp_path / "elsewhere", tmp_path / "dangling")
    a_tree(tmp_path / "target")
    os.symlink(tmp_path / "target", tmp_path / "to-a-folder")
    for name in ("file", "dangling", "to-a-folder", "missing"):
        bin_.discard(tmp_path / name)
        assert not os.path.lexists(tmp_path / name)
    assert (tmp_path / "target" / "d0").is_dir()  # a link's target is not touched
    assert not (tmp_path / "trash").exists()  # nothing was moved there


def test_what_an_earlier_process_left_is_deleted_first(tmp_path: Path) -> None:
    left = a_tree(tmp_path / "trash" / "left-by-a-killed-build")
    bin_ = Trash(tmp_path / "trash")
    bin_.discard(a_tree(tmp_path / "old"))
    bin_.wait()
    assert not left.exists() and list((tmp_path / "trash").iterdir()) == []


def test_a_folder_that_cannot_be_moved_there_is_deleted_on_the_spot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cross_device(source: object, target: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "rename", cross_device)
    old = a_tree(tmp_path / "old")
    Trash(tmp_path / "trash").discard(old)
    assert not old.exists()


def test_without_rm_the_thread_deletes_them_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rm(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "rm")

    monkeypatch.setattr(subprocess, "run", no_rm)
    bin_ = Trash(tmp_path / "trash")
    bin_.discard(a_tree(tmp_path / "old"))
    bin_.wait()
    assert list((tmp_path / "trash").iterdir()) == []


def test_one_trash_per_folder_and_a_second_use_after_waiting(tmp_path: Path) -> None:
    assert trash_module.trash(tmp_path / "t") is trash_module.trash(tmp_path / "x" / ".." / "t")
    bin_ = trash_module.trash(tmp_path / "t")
    for round_ in range(2):
        bin_.discard(a_tree(tmp_path / f"old{round_}"))
        trash_module.wait_all()
        assert list((tmp_path / "t").iterdir()) == []


def test_a_build_leaves_nothing_in_the_trash(tmp_path: Path) -> None:
    key: KeyPair = make_key(tmp_path / "key")
    workspace = make_workspace(tmp_path / "ws", ["heartbeat"])
    assert build(workspace, key).code == 0
    script = workspace / "apps/heartbeat/bin/heartbeat"
    script.write_text(script.read_text() + "# changed\n")
    run = build(workspace, key)
    assert run.code == 0 and "heartbeat:build:x86_64" in run.ran
    assert list((workspace / ".pakman/trash").iterdir()) == []  # used, and emptied
    built = workspace / ".pakman/build/heartbeat"
    assert not [p for p in built.iterdir() if p.name.endswith((".old", ".tmp"))]


def test_a_no_op_build_empties_what_a_killed_build_left(tmp_path: Path) -> None:
    key: KeyPair = make_key(tmp_path / "key")
    workspace = make_workspace(tmp_path / "ws", ["heartbeat"])
    assert build(workspace, key).code == 0
    left = workspace / ".pakman/trash" / "0123abcd"  # as a build killed while deleting leaves it
    (left / "build-x86_64/bin").mkdir(parents=True)
    (left / "build-x86_64/bin/heartbeat").write_text("old\n")
    run = build(workspace, key)
    assert run.code == 0 and run.ran == set()
    assert list((workspace / ".pakman/trash").iterdir()) == []
