"""Publishing a repository folder whole: a new folder each time, then one atomic switch.

`REPO/<arch>` is a symbolic link to `.publications/<arch>.<id>/<arch>`, a
folder holding exactly the packages of one index and that index. A
publication is written into a new folder that nobody sees yet, then
`REPO/<arch>` is switched to it by renaming a new link over the old one, so
at every instant `REPO/<arch>` is one whole publication. The previous one is
kept until the next publication (a reader that resolved the link just
before the switch still finds every file it lists); older ones, and folders
or links a killed build left, go then.

The inner folder is named after the architecture, so that a tool taking the
architecture from the folder's real name (`pakman verify`, `pakman index`,
`realpath`) finds it. An `REPO/<arch>` that is a real folder (made by an older
pakman) is exchanged for the link atomically where the system can
(`renameat2`'s RENAME_EXCHANGE, Linux), else moved aside just before the
link takes its place, and kept as the previous publication.
"""

from __future__ import annotations

import ctypes
import errno
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PUBLICATIONS = ".publications"


@dataclass(frozen=True)
class Repository:
    """The repository's folder, whose architecture folders are published whole."""

    root: Path
    discard: Callable[[Path], None]  # removes a folder, file or link (in the background)

    def holds(self, output: Path) -> bool:
        """`output` is one of the repository's published folders (REPO/<arch>)."""
        return output.parent == self.root

    @contextmanager
    def publish(self, output: Path) -> Iterator[Path]:
        """A new, empty folder to fill; once the block succeeds, `output` is switched to it.

        When the block fails (or the process is killed), `output` stays as it
        was and the new folder is removed by the next publication.
        """
        arch = output.name
        container = self.root / PUBLICATIONS / f"{arch}.{uuid.uuid4().hex[:16]}"
        folder = container / arch
        folder.mkdir(parents=True)
        yield folder
        previous = _switch(output, folder)
        self._sweep(arch, keep={container.name, previous})

    def _sweep(self, arch: str, keep: set[str | None]) -> None:
        """Remove the publications of `arch` but the current and previous ones."""
        with os.scandir(self.root / PUBLICATIONS) as found:
            stale = [e.path for e in found if e.name.startswith(f"{arch}.") and e.name not in keep]
        for path in stale:
            self.discard(Path(path))


def _container(output: Path) -> str | None:
    """The name of the publication `output` links to (None when it is no link of ours)."""
    try:
        target = os.readlink(output)
    except OSError:
        return None
    parts = Path(target).parts
    if len(parts) == 3 and parts[0] == PUBLICATIONS:
        return parts[1]
    return None


def _switch(output: Path, folder: Path) -> str | None:
    """Point `output` at `folder` by one rename; returns the publication it pointed to before."""
    previous = _container(output)
    publications = output.parent / PUBLICATIONS
    link = publications / f"{folder.parent.name}.link"
    os.symlink(os.path.relpath(folder, output.parent), link)
    try:
        os.rename(link, output)  # atomic over a link, or where nothing is
    except IsADirectoryError:
        # An older pakman's real folder: it is kept as the previous publication.
        aside = publications / f"{output.name}.{uuid.uuid4().hex[:16]}"
        aside.mkdir()
        if _exchange(link, output):
            os.rename(link, aside / output.name)
        else:
            os.rename(output, aside / output.name)
            os.rename(link, output)
        previous = aside.name
    return previous


_RENAME_EXCHANGE = 2


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux's renameat2); False when the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_cwd = -100
    result = renameat2(
        at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), ctypes.c_uint(_RENAME_EXCHANGE)
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(second))
