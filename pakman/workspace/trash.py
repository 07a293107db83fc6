"""Folders to delete: moved out of the way at once, deleted by a background thread.

A step that replaces its output deletes the old one: hundreds of files for a
build folder. Deleting files that were last touched long ago is slow (their
inodes are read back from disk first), and at 200 apps the app a build
changes is rarely the one built last. So the old folder is renamed into
`.pakman/trash/` (one rename, on the same file system) and a thread deletes
it (in `rm`) while the build goes on; the command waits for that thread before it
ends (`wait_all`, also at interpreter exit), so no build leaves work behind.

What a killed build left in the trash is deleted by the next one that uses
it. A folder that cannot be renamed there (another file system) is deleted
on the spot, as is anything that is not a folder.
"""

from __future__ import annotations

import atexit
import os
import queue
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

from pakman.workspace.layout import Layout

_lock = threading.Lock()
_trashes: dict[str, Trash] = {}


class Trash:
    """One trash folder, and the thread that empties it (per process)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._pid = 0
        self._queue: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def discard(self, path: Path) -> None:
        """Remove `path` (a folder, a file or nothing) from where it is, now."""
        if not os.path.isdir(path) or os.path.islink(path):
            if os.path.lexists(path):
                os.unlink(path)
            return
        target = self.folder / uuid.uuid4().hex
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            os.rename(path, target)
        except OSError:  # another file system, say: delete it here
            shutil.rmtree(path)
            return
        self._start()
        self._queue.put(target)

    def _start(self) -> None:
        with _lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            # First use in this process (or in a child forked with a thread
            # that did not follow): what earlier processes left goes first.
            self._pid = os.getpid()
            self._queue = queue.SimpleQueue()
            for name in os.listdir(self.folder):
                self._queue.put(self.folder / name)
            self._thread = threading.Thread(target=self._empty, name="pakman-trash", daemon=True)
            self._thread.start()

    def _empty(self) -> None:
        while True:
            batch = [self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get())
            paths = [str(path) for path in batch if path is not None]
            if paths:
                _delete(paths)
            if None in batch:
                return

    def delete_leftovers(self) -> None:
        """Start deleting what earlier processes left here (`wait` waits for it)."""
        self._start()

    def empty(self) -> None:
        """Delete what earlier processes left here, and wait until it is done."""
        if self.folder.is_dir() and any(self.folder.iterdir()):
            self._start()
        self.wait()

    def wait(self) -> None:
        """Return once everything discarded so far is deleted."""
        with _lock:
            thread, self._thread = self._thread, None
            if thread is None or self._pid != os.getpid():
                return
            self._queue.put(None)
        thread.join()


def _delete(paths: list[str]) -> None:
    """Delete these folders, in `rm`.

    Deleting them with shutil in this process's thread would take the
    interpreter's lock from the build for every file.
    """
    try:
        done = subprocess.run(
            ["rm", "-rf", "--", *paths],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        if done.returncode == 0:
            return
    except OSError:  # no rm here
        pass
    for path in paths:
        # Another process may be deleting the same leftover: what is gone is gone.
        shutil.rmtree(path, ignore_errors=True)


def trash(folder: Path) -> Trash:
    """The trash kept in `folder` (one object per folder and process)."""
    key = os.path.abspath(folder)
    with _lock:
        found = _trashes.get(key)
        if found is None:
            found = _trashes[key] = Trash(Path(key))
        return found


def workspace_trash(layout: Layout) -> Trash:
    """The workspace's trash: `.pakman/trash/`."""
    return trash(layout.state / "trash")


def wait_all() -> None:
    """Wait until every folder discarded by this process is deleted."""
    for found in list(_trashes.values()):
        found.wait()


atexit.register(wait_all)
