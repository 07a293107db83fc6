"""File helpers every layer uses: atomic writes, reading only regular files, staying inside a folder.

- writing: `write_atomic`, `open_atomic` (a temporary file beside the target,
  renamed into place), `write_if_changed`;
- reading what an app gives: `read_regular`, `open_regular` (FIFOs, devices
  and the like refused), `file_kind`;
- confinement: `leads_outside`, `confined` (links that lead out of an app),
  `refuse_links` (links on the way to where a step writes);
- trees: `remove_tree` (rm -rf for read-only build roots, links never
  followed), `tree_size`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from pakman.errors import ConfigError, Diagnostic


def write_atomic(path: str | Path, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Write `data` to a temporary file beside `path`, then rename it into place.

    A killed run leaves either the old file or the new one, never half of one.
    `durable` also flushes it to disk first (for what a build publishes; caches
    and records that can be made again skip that cost).
    """
    with open_atomic(path, mode, durable=durable) as handle:
        handle.write(data)


def write_if_changed(path: str | Path, data: bytes, mode: int = 0o644) -> bool:
    """Write atomically unless the file already holds exactly `data` (and mode); True if written."""
    path = Path(path)
    try:
        stat = path.lstat()  # a symbolic link there is replaced, never read or written through
        if (
            stat.st_size == len(data)
            and (stat.st_mode & 0o7777) == mode
            and path.read_bytes() == data
        ):
            return False
    except FileNotFoundError:
        pass
    write_atomic(path, data, mode)
    return True


@contextmanager
def open_atomic(path: str | Path, mode: int = 0o644, *, durable: bool = True) -> Iterator[BinaryIO]:
    """Stream into a temporary file beside `path`; rename it into place when the block succeeds.

    The streaming form of `write_atomic`: on an exception the temporary file
    is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # a write or close (a full disk): say which file
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, in words ("a FIFO")."""
    return next((name for test, name in _FILE_KINDS if test(mode)), "an unknown kind of file")


def read_regular(path: str | Path, limit: int) -> bytes:
    """At most `limit` + 1 bytes of a regular file (symbolic links followed), else OSError.

    A checkout extracted from an archive can hold a FIFO or, extracted as
    root, a device where pakman reads a file: reading it would block or never
    end (see `open_regular`). A folder raises IsADirectoryError; other kinds
    an OSError whose `strerror` says "not a regular file (a FIFO)".
    """
    with open_regular(path) as handle:
        return handle.read(limit + 1)


def open_regular(
    path: str | os.PathLike[str], refuse: Callable[[int, str], Exception] | None = None
) -> BinaryIO:
    """Open a regular file (symbolic links followed) for reading; else raise `refuse(mode, path)`.

    The type is checked before the path is opened, so a FIFO is never opened
    (which would block, or wake a writer waiting for a reader), and again on
    the open file, opened non-blocking, in case the path was replaced between.
    """
    refuse = refuse or _not_regular
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise refuse(mode, os.fspath(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise refuse(mode, os.fspath(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _not_regular(mode: int, path: str) -> OSError:
    if stat.S_ISDIR(mode):
        return IsADirectoryError(21, "is a directory", path)
    return OSError(22, f"not a regular file ({file_kind(mode)})", path)


def leads_outside(path: str | Path, root: str | Path) -> Path | None:
    """Where `path` really leads (symbolic links followed) when that is outside `root`, else None."""
    real = Path(os.path.realpath(path))
    base = Path(os.path.realpath(root))
    return None if real == base or real.is_relative_to(base) else real


def confined(path: Path, root: Path, what: str) -> None:
    """Refuse a file read from an app (`root`) that is a symbolic link leading out of it."""
    if path.is_symlink():
        real = leads_outside(path, root)
        if real is not None:
            raise ConfigError(
                Diagnostic(
                    str(path),
                    0,
                    0,
                    "",
                    f"{what} is a symbolic link to {real}, outside {root}; "
                    "pakman reads nothing outside the app",
                )
            )


def refuse_links(base: Path, target: Path) -> None:
    """Refuse to write into `target` when a folder from `base` (excluded) down to it is a symbolic link.

    A checkout may commit `.apk` as a link to any folder: nothing is written through it.
    """
    folder = base
    for part in target.relative_to(base).parts:
        folder = folder / part
        if folder.is_symlink():
            raise ConfigError(
                Diagnostic(
                    str(folder),
                    0,
                    0,
                    "",
                    f"a symbolic link (to {os.readlink(folder)}); pakman does not write "
                    "through links: remove it",
                )
            )


def remove_tree(path: str | Path) -> None:
    """`rm -rf path`: symbolic links are removed, never followed; folders without u+rwx get it first.

    For build roots: their folders may be read-only (0555) and their files
    owned by other users, and links in them may point anywhere. Nothing may
    change the tree meanwhile (callers hold the lock that guards it).
    """
    path = os.fspath(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)
        return
    if info.st_mode & 0o700 != 0o700:
        os.chmod(path, stat.S_IMODE(info.st_mode) | 0o700)  # a folder (lstat): no link followed
    with os.scandir(path) as entries:
        children = [(entry.path, entry.is_dir(follow_symlinks=False)) for entry in entries]
    for child, is_folder in children:
        if is_folder:
            remove_tree(child)
        else:
            os.unlink(child)
    os.rmdir(path)


def tree_size(path: str | Path) -> int:
    """The bytes of the regular files under `path` (links not followed)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(folder, name))
                if stat.S_ISREG(info.st_mode):
                    total += info.st_size
    return total
