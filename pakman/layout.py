"""Where a build writes: the workspace, its .pakman/ folder and the repository."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = "repo"  # the name of the shared steps' namespace (index, sign)


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
        """Refuse a `.pakman` that is, or holds, a symbolic link: pakman writes there.

        A checkout may commit `.pakman/build` as a link to any folder; a
        build would then write (and delete) there. One lstat and one listing.
        """
        from pakman.fsutil import refuse_links

        refuse_links(self.root, self.state)
        try:
            with os.scandir(self.state) as entries:
                linked = [e.path for e in entries if e.is_symlink()]
        except (FileNotFoundError, NotADirectoryError):
            return
        if linked:
            refuse_links(self.state, Path(sorted(linked)[0]))

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
