"""Pausing Python's cyclic garbage collector while a command loads, then freezing what it loaded.

A build loads its plan, project and step graph once, and then runs steps.
At 200 apps that is hundreds of thousands of objects that live until the
command ends and make no garbage cycles. Left alone, the collector scans
them again and again, both while they are made and while the steps run,
which is a large share of a one-file build's time.

So a command runs with the collector paused (`collector_paused`). Once its project
is loaded, `loaded` freezes what exists (`gc.freeze`: the collector no
longer looks at it) and lets the collector run on what comes after, which
is what the steps allocate. When the command ends, the frozen objects are
handed back to the collector, so that a library caller running many
commands in one process does not keep them.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_enabled_before: list[bool] = []  # one per command running (commands may nest in tests)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Run a command with the collector paused until `loaded`, and as it was after."""
    _enabled_before.append(gc.isenabled())
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if _enabled_before.pop():
            gc.enable()


def loaded() -> None:
    """What the command loaded is kept to the end: freeze it, and collect from here on."""
    gc.freeze()
    if not _enabled_before or _enabled_before[-1]:
        gc.enable()


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """For a process that loads a project once and keeps it (plain doit's dodo.py)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
