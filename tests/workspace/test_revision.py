"""A commit's tree written as data (pakman.workspace.revision): git's modes and links, nothing outside."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pakman.errors import PakmanError, UsageError
from pakman.workspace.revision import resolve_commit, write_tree


def git(folder: Path, *args: str, data: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.org",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.org",
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_CONFIG_NOSYSTEM="1",
    )
    done = subprocess.run(
        ["git", *args], cwd=folder, env=env, input=data, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    return root


def commit_tree(repo: Path, listing: str) -> str:
    """A commit of the tree `git mktree` makes of `listing` (which may hold what git refuses)."""
    tree = git(repo, "mktree", "--missing", data=listing)
    return git(repo, "commit-tree", tree, "-m", "crafted")


def blob(repo: Path, text: str) -> str:
    return git(repo, "hash-object", "-w", "--stdin", data=text)


def test_files_links_modes_and_submodules_as_git_stores_them(repo: Path, tmp_path: Path) -> None:
    (repo / "app/bin").mkdir(parents=True)
    (repo / "app/bin/run").write_text("#!/bin/sh\n")
    (repo / "app/bin/run").chmod(0o755)
    (repo / "app/data.txt").write_text("crlf\r\n")
    os.symlink("data.txt", repo / "app/link")
    # An attribute that would change the bytes on checkout: the tree keeps git's.
    (repo / ".gitattributes").write_text("*.txt eol=lf\n")
    git(repo, "add", "-A")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},app/sub")
    git(repo, "commit", "-qm", "one")
    commit = resolve_commit(repo, "HEAD")
    out = tmp_path / "out"
    out.mkdir()
    assert write_tree(repo, commit, out) == 4
    assert (out / "app/bin/run").stat().st_mode & 0o111
    assert not (out / "app/data.txt").stat().st_mode & 0o111
    assert (out / "app/data.txt").read_bytes() == b"crlf\n"  # as stored (add made it LF)
    assert os.readlink(out / "app/link") == "data.txt"
    assert (out / "app/sub").is_dir() and not list((out / "app/sub").iterdir())
    assert not (out / ".git").exists()


def test_paths_git_would_not_check_out_are_left_out(repo: Path, tmp_path: Path) -> None:
    data = blob(repo, "x\n")
    commit = commit_tree(
        repo,
        f"100644 blob {data}\t..\n100644 blob {data}\t.git\n100644 blob {data}\t.GIT\n"
        f"100644 blob {data}\tok\n",
    )
    out = tmp_path / "out"
    out.mkdir()
    assert write_tree(repo, commit, out) == 1
    assert sorted(p.name for p in out.iterdir()) == ["ok"]
    assert not (tmp_path / "x").exists()


def test_nothing_is_written_through_a_link_the_tree_made(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    data = blob(repo, "planted\n")
    link = blob(repo, str(outside))
    inner = git(repo, "mktree", data=f"100644 blob {data}\tplanted\n")
    # `a` twice: a link out, and a folder with a file (git's fsck refuses this; mktree makes it).
    commit = commit_tree(repo, f"120000 blob {link}\ta\n040000 tree {inner}\ta\n")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(PakmanError, match="also a file"):
        write_tree(repo, commit, out)
    assert list(outside.iterdir()) == []


def test_a_ref_that_names_no_commit(repo: Path) -> None:
    (repo / "f").write_text("x\n")
    git(repo, "add", "f")
    git(repo, "commit", "-qm", "one")
    tree = git(repo, "rev-parse", "HEAD^{tree}")
    for ref in ("nope", tree, "HEAD~1", "--all", "a\nb"):
        with pytest.raises(UsageError, match="--since"):
            resolve_commit(repo, ref)
    assert resolve_commit(repo, "HEAD") == git(repo, "rev-parse", "HEAD")
