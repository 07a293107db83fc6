"""pakman/config/gitmeta.py: the git metadata read as data, and the build's own repository."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pakman.config.gitmeta import GitMetadataError, read_git_metadata, write_build_repository

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "t")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "t@example.com")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    from pakman.config.gitmeta import clear_cache

    clear_cache()


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def repository(root: Path, *init: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", *init)
    (root / "app").mkdir()
    (root / "app" / "file").write_text("one\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    git(root, "tag", "-a", "-m", "release", "v1.0.0")
    (root / "app" / "file").write_text("two\n")
    git(root, "commit", "-q", "-am", "second")
    return root


def test_git_in_the_build_repository_sees_what_the_real_one_says(tmp_path: Path) -> None:
    real = repository(tmp_path / "real")
    meta = read_git_metadata(real / "app")
    assert meta.commit == git(real, "rev-parse", "HEAD")
    assert [name for name, _ in meta.tags] == ["v1.0.0"]
    copy = tmp_path / "copy"
    copy.mkdir()
    write_build_repository(copy, meta, meta.objects)
    assert git(copy, "rev-parse", "HEAD") == meta.commit
    assert git(copy, "describe", "--tags") == git(real, "describe", "--tags")
    assert git(copy, "log", "--format=%s") == "second\nfirst"
    git(copy, "config", "core.hooksPath", ".husky")
    assert "hookspath" not in git(real, "config", "--list", "--local").lower()


def test_a_worktree_with_packed_refs_and_a_sha256_repository(tmp_path: Path) -> None:
    real = repository(tmp_path / "real")
    git(real, "worktree", "add", "-q", "-b", "feature", str(tmp_path / "wt"))
    (tmp_path / "wt" / "app" / "file").write_text("three\n")
    git(tmp_path / "wt", "commit", "-q", "-am", "third")
    git(real, "pack-refs", "--all")  # the branch and the tag only in packed-refs now
    assert not (real / ".git/refs/heads/feature").exists()
    meta = read_git_metadata(tmp_path / "wt" / "app")
    assert meta.commit == git(tmp_path / "wt", "rev-parse", "HEAD")
    assert [name for name, _ in meta.tags] == ["v1.0.0"]
    assert meta.objects == str((real / ".git/objects").resolve())

    try:
        sha256 = repository(tmp_path / "sha256", "--object-format=sha256")
    except subprocess.CalledProcessError:
        pytest.skip("this git has no sha256 repositories")
    meta = read_git_metadata(sha256)
    assert len(meta.commit) == 64
    copy = tmp_path / "copy"
    copy.mkdir()
    write_build_repository(copy, meta, meta.objects)
    assert git(copy, "describe", "--tags") == git(sha256, "describe", "--tags")


def test_what_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GitMetadataError, match="not in a git repository"):
        read_git_metadata(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(GitMetadataError, match="has no commit yet"):
        read_git_metadata(empty)
    real = repository(tmp_path / "real")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / ".git").symlink_to(real / ".git")
    with pytest.raises(GitMetadataError, match="symbolic link"):
        read_git_metadata(linked)
    # a HEAD that is a FIFO is not opened (that would block)
    head = real / ".git/HEAD"
    head.unlink()
    os.mkfifo(head)
    with pytest.raises(GitMetadataError, match="not a regular file"):
        read_git_metadata(real)
