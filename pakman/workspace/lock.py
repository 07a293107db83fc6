"""The workspace lock, `.pakman/lock`: one build at a time, or any number of run-steps.

A light module (no doit), so that each `pakman run-step` that make or ninja
starts pays little for it.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from pakman.errors import PakmanError
from pakman.workspace.layout import Layout


class LockBusy(PakmanError):
    """Another build holds the workspace."""


@contextmanager
def run_lock(
    layout: Layout, *, wait: bool = True, out: IO[str] | None = None, shared: bool = False
) -> Iterator[None]:
    """Hold `.pakman/lock` for the duration of a run; a second build waits (or fails).

    A build holds it alone. `shared` is for `pakman run-step`: the steps that
    make or ninja run at once share it, and a build waits for all of them.
    """
    handle = _acquire(layout, wait=wait, out=out, shared=shared)
    try:
        yield
    finally:
        if not shared:
            handle.truncate(0)  # an empty file: no build holds it
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def hold_lock_until_exit(layout: Layout) -> None:
    """For plain `doit`: take the lock and keep it until the process ends."""
    global _held
    if _held is None:
        _held = _acquire(layout, wait=True, out=sys.stderr)


_held: IO[str] | None = None


def _acquire(layout: Layout, *, wait: bool, out: IO[str] | None, shared: bool = False) -> IO[str]:
    layout.state.mkdir(parents=True, exist_ok=True)
    path = layout.state / "lock"
    handle = path.open("a+")
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(path)
        if not wait:
            handle.close()
            raise LockBusy(
                f"another build is running in {layout.root} ({holder}); wait for it or drop --no-wait"
            ) from None
        if out is not None:
            print(f"waiting for another build in {layout.root} ({holder}) to finish...", file=out)
        started = time.monotonic()
        fcntl.flock(handle, mode)
        if out is not None:
            print(f"...it finished after {time.monotonic() - started:.1f}s", file=out)
    if not shared:  # the holder, for whoever waits (steps sharing the lock write nothing)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
    return handle


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    # Only builds write their pid; steps run by make or ninja share the lock silently.
    return text or "steps run by `pakman run-step`, from make or ninja"
