"""Where a build writes: the workspace, its .pakman/ folder and the repository."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

# Files under .pakman/cache/ that every build reads (a FIFO there would block it).
BOOKKEEPING = ("epoch", "project/plan.json", "project/watch.token")

REPOSITORY = "repo"  # the name of the shared steps' namespace (index, sign)


def find_workspace(start: Path | None = None) -> Path:
    """The workspace, found as git finds a repository: the nearest folder from `start`
    (default: the current folder) upwards that holds `.pakman/`, else `start` itself.

    So a build inside `mono/app/` uses `mono/.pakman/` (its key, its store)
    instead of making a second workspace. Like git, the search stops where
    another file system is mounted; unlike git, it never takes `/` from
    below (a stray `/.pakman` would capture every build on the machine).
    Two stats per parent folder.
    """
    here = Path.cwd() if start is None else start.absolute()
    device = os.stat(here).st_dev
    for folder in (here, *here.parents):
        if folder == folder.parent:
            break
        try:
            if os.stat(folder).st_dev != device:
                break
        except OSError:
            break
        if os.path.isdir(folder / ".pakman"):
            return folder
    return here


@dataclass(frozen=True)
class Layout:
    """Where a build writes; every path is inside the workspace."""

    root: Path  # the workspace (absolute)
    state: Path  # .pakman
    repo: Path  # the repository, default .pakman/repo

    @classmethod
    def at(cls, root: Path, repo: Path | None = None) -> Layout:
        root = root.resolve()
        state = root / ".pakman"
        return cls(root, state, (repo or state / "repo").resolve() if repo else state / "repo")

    def refuse_links(self) -> None:
        """Refuse a `.pakman` that is, or holds, a symbolic link or a special file.

        A checkout (or a CI cache restored into it) may hold `.pakman/build` as
        a link to any folder; a build would then write (and delete) there. A
        FIFO or a device where pakman reads its bookkeeping (the journal, a
        lock, the plan) would block a build or never end. One listing of
        `.pakman` and an lstat of each bookkeeping file below it.
        """
        from pakman.fileio import refuse_links

        refuse_links(self.root, self.state)
        try:
            with os.scandir(self.state) as entries:
                found = {e.name: e for e in entries}
        except (FileNotFoundError, NotADirectoryError):
            return
        linked = [e.path for e in found.values() if e.is_symlink()]
        if linked:
            refuse_links(self.state, Path(sorted(linked)[0]))
        # The watcher's socket (watch.sock) is one of ours; a FIFO or a device is not.
        special = [
            e.path
            for e in found.values()
            if not (e.is_dir(follow_symlinks=False) or e.is_file(follow_symlinks=False))
            and _blocks(e.stat(follow_symlinks=False).st_mode)
        ]
        if "cache" in found:
            for name in BOOKKEEPING:
                path = self.state / "cache" / name
                try:
                    mode = os.lstat(path).st_mode
                except OSError:
                    continue
                if _blocks(mode):
                    special.append(str(path))
        if special:
            from pakman.errors import ConfigError, Diagnostic
            from pakman.fileio import file_kind

            first = sorted(special)[0]
            kind = file_kind(os.lstat(first).st_mode)
            raise ConfigError(
                Diagnostic(
                    first, 0, 0, "", f"{kind}, not a regular file: pakman reads it; remove it"
                )
            )

    def work(self, app: str | None) -> Path:
        return self.state / "build" / (app or f"_{REPOSITORY}")

    def manifest(self, step_id: str) -> Path:
        """The record a step leaves when it succeeds (its key and outputs)."""
        return self.state / "steps" / (step_id.replace(":", "/") + ".json")

    def relative(self, path: Path) -> str:
        """A path as seen from the workspace (absolute when outside it)."""
        if path.is_relative_to(self.root):
            return path.relative_to(self.root).as_posix()
        return str(path)

    def relative_str(self, path: str) -> str:
        """`relative` for an output path, keeping a trailing / that marks a folder."""
        return self.relative(Path(path)) + ("/" if path.endswith("/") else "")


def _blocks(mode: int) -> bool:
    """A file whose reading could block or never end: a FIFO or a device."""
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
