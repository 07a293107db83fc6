"""A commit's tree written into a folder, as data: no checkout, so nothing of the repository runs.

`pakman affected` compiles the graph of a git revision from its tree. A
checkout would apply the repository's filters and attributes and run its
hooks (and the repository may be a stranger's); instead the tree is listed
with `git ls-tree -r -z` and each blob read with `git cat-file --batch`
(no filters, no textconv), through the hardened git of
pakman.config.gitmeta. Files get git's modes (0644, or 0755 when
executable), symbolic links their target; a submodule is an empty folder, as
in a clone that did not initialise it. Paths git would refuse to check out
(`..`, `.git`, empty parts) are left out, and nothing is written through a
symbolic link the tree made.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from pakman.config.gitmeta import SAFE_GIT, run_git, safe_git_environment
from pakman.errors import PakmanError, UsageError

_ID = re.compile(rb"[0-9a-f]{40}(?:[0-9a-f]{24})?\Z")
_REF_LIMIT = 1024


def resolve_commit(top: Path, ref: str) -> str:
    """The full id of the commit `ref` names in the repository at `top`; UsageError if none."""
    if not ref or len(ref) > _REF_LIMIT or any(ord(c) < 32 or ord(c) == 127 for c in ref):
        raise UsageError(f"--since {ref!r}: not a git revision")
    try:
        done = run_git(
            top, "rev-parse", "--verify", "--quiet", "--end-of-options", ref + "^{commit}"
        )
    except OSError as exc:
        raise UsageError(f"--since {ref}: git cannot run: {exc}") from None
    commit = done.stdout.strip()
    if done.returncode != 0 or not _ID.match(commit):
        raise UsageError(
            f"--since {ref}: no such commit in {top} (a branch, tag or commit id, "
            "e.g. HEAD, HEAD~1, origin/main)"
        )
    return commit.decode("ascii")


def write_tree(top: Path, commit: str, folder: Path) -> int:
    """Write the tree of `commit` (of the repository at `top`) into `folder`; the files written.

    `folder` must be empty. Raises PakmanError when git fails.
    """
    listed = run_git(top, "ls-tree", "-r", "-z", "--full-tree", commit)
    if listed.returncode != 0:
        message = listed.stderr.decode("utf-8", "replace").strip()
        raise PakmanError(f"git ls-tree {commit}: {message or 'failed'}")
    entries: list[tuple[int, bytes, str]] = []  # (mode, object id, path)
    made: set[str] = set()  # folders made
    for record in listed.stdout.split(b"\0"):
        if not record:
            continue
        info, _, name = record.partition(b"\t")
        parts = info.split(b" ")
        if len(parts) != 3 or not _ID.match(parts[2]):
            continue
        path = _checked_path(name)
        if path is None:
            continue
        mode = int(parts[0], 8)
        if parts[1] == b"commit":
            _make_folders(folder, path, made, with_last=True)
        elif parts[1] == b"blob":
            entries.append((mode, parts[2], path))
    _write_blobs(top, folder, entries, made)
    return len(entries)


def _checked_path(name: bytes) -> str | None:
    """The path as a relative path of this system, or None when git would not check it out."""
    parts = name.split(b"/")
    if any(p in (b"", b".", b"..") or p.lower() == b".git" for p in parts):
        return None
    return os.fsdecode(name)


def _make_folders(
    root: Path, path: str, made: set[str] | None = None, *, with_last: bool = False
) -> None:
    """Make the folders on the way to `path` under `root`, refusing any that is not a real folder.

    `made`: the folders made so far (relative paths), not asked again; they
    stay real folders, since nothing is ever written over an existing name.
    """
    parts = path.split("/")
    wanted = parts if with_last else parts[:-1]
    for depth in range(1, len(wanted) + 1):
        relative = "/".join(wanted[:depth])
        if made is not None and relative in made:
            continue
        current = root / relative
        try:
            os.mkdir(current, 0o755)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(current).st_mode):  # a link the tree made: not followed
                raise PakmanError(f"{path}: a folder of the commit's tree is also a file") from None
        if made is not None:
            made.add(relative)


def _write_blobs(
    top: Path, folder: Path, entries: list[tuple[int, bytes, str]], made: set[str]
) -> None:
    process = subprocess.Popen(
        [*SAFE_GIT, "cat-file", "--batch"],
        cwd=top,
        env=safe_git_environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdin is not None and process.stdout is not None
    feeder = threading.Thread(target=_feed, args=(process.stdin, (e[1] for e in entries)))
    feeder.start()
    try:
        for mode, oid, path in entries:
            data = _read_object(process.stdout, oid)
            _make_folders(folder, path, made)
            target = folder / path
            if stat.S_ISLNK(mode):
                os.symlink(os.fsdecode(data), target)
                continue
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            handle = os.open(target, flags, 0o755 if mode & 0o111 else 0o644)
            with open(handle, "wb") as out:
                out.write(data)
    except FileExistsError as exc:
        raise PakmanError(f"{exc.filename}: twice in the commit's tree") from None
    finally:
        process.kill()  # done (it has ended), or stopped after an error
        process.stdout.close()
        feeder.join()
        process.wait()


def _feed(stdin: IO[bytes], oids: Iterable[bytes]) -> None:
    try:
        for oid in oids:
            stdin.write(oid + b"\n")
        stdin.close()
    except OSError:  # cat-file ended (killed after an error): the reader says why
        pass


def _read_object(out: IO[bytes], oid: bytes) -> bytes:
    header = out.readline().split()
    if len(header) != 3 or header[0] != oid or header[1] != b"blob" or not header[2].isdigit():
        shown = b" ".join(header).decode("utf-8", "replace")
        raise PakmanError(f"git cat-file: {oid.decode()} is not a blob ({shown or 'no answer'})")
    size = int(header[2])
    data = out.read(size)
    if len(data) != size or out.read(1) != b"\n":
        raise PakmanError(f"git cat-file: {oid.decode()} ended early")
    return data
