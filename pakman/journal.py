"""The journal: the key each step last succeeded with, one line per run of a step.

`execute_step` appends to it; a build reads it to tell which steps are done
(their key is the journal's and their outputs exist) without doit.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pakman.fsutil import write_atomic
from pakman.layout import Layout

if TYPE_CHECKING:
    from pakman.graph import Step


def read_journal(layout: Layout) -> dict[str, str]:
    """The key each step last succeeded with (the journal execute_step appends to)."""
    keys: dict[str, str] = {}
    try:
        with (layout.state / "journal").open(encoding="utf-8") as journal:
            for line in journal:
                step_id, _, key = line.rstrip("\n").partition(" ")
                if key:
                    keys[step_id] = key
    except FileNotFoundError:
        pass
    return keys


def compact_journal(layout: Layout, keys: dict[str, str]) -> None:
    """Rewrite the journal with one line per step (it only grows otherwise)."""
    text = "".join(f"{step_id} {key}\n" for step_id, key in sorted(keys.items()))
    write_atomic(layout.state / "journal", text.encode(), durable=False)


def is_current(step: Step, journal: dict[str, str]) -> bool:
    """The step last succeeded with its current key and its outputs are all there."""
    return journal.get(step.id) == step.key and all(
        os.path.exists(output) for output in step.outputs
    )
