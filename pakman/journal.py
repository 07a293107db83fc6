"""The journal: the key each step last succeeded with, one line per run of a step.

`execute_step` appends to it; a build reads it to tell which steps are done
without doit: their key is the journal's, and their outputs are as the step
left them. That is one lstat per output: a file or folder's inode, size and
mtime, so a deleted output, or a file deleted from or added to an output
folder (the folder's mtime moves), makes the step run again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pakman.fsutil import write_atomic
from pakman.layout import Layout

if TYPE_CHECKING:
    from pakman.graph import Step


def output_signature(outputs: Iterable[str]) -> str:
    """The state of a step's outputs as left behind: inode, size and mtime of each ("" if one is missing)."""
    parts = []
    for output in outputs:
        try:
            st = os.lstat(output.rstrip("/"))
        except OSError:
            return ""
        parts.append(f"{st.st_ino:x}.{st.st_size:x}.{st.st_mtime_ns:x}")
    return ",".join(parts)


def changed_outputs(
    journal: dict[str, str], step_id: str, key: str, outputs: Iterable[str]
) -> list[str] | None:
    """The outputs no longer as the step left them; None when the journal has no run with this key."""
    state = journal.get(step_id, "")
    recorded_key, _, recorded = state.partition(" ")
    if recorded_key != key:
        return None
    before = recorded.split(",")
    outputs = list(outputs)
    if len(before) != len(outputs):
        return outputs
    return [o for o, sig in zip(outputs, before, strict=True) if output_signature([o]) != sig]


def journal_line(step_id: str, key: str, outputs: Iterable[str]) -> str:
    return f"{step_id} {key} {output_signature(outputs)}\n"


def read_journal(layout: Layout) -> dict[str, str]:
    """For each step, `<key> <outputs' signature>` as it last succeeded."""
    done: dict[str, str] = {}
    try:
        with (layout.state / "journal").open(encoding="utf-8", errors="replace") as journal:
            for line in journal:
                step_id, _, state = line.rstrip("\n").partition(" ")
                if state:
                    done[step_id] = state
    except FileNotFoundError:
        pass
    return done


def is_done(journal: dict[str, str], step_id: str, key: str, outputs: Iterable[str]) -> bool:
    """The step last succeeded with this key and its outputs are as it left them."""
    state = journal.get(step_id)
    return state is not None and state == f"{key} {output_signature(outputs)}"


def compact_journal(layout: Layout, done: dict[str, str]) -> None:
    """Rewrite the journal with one line per step (it only grows otherwise)."""
    text = "".join(f"{step_id} {state}\n" for step_id, state in sorted(done.items()))
    write_atomic(layout.state / "journal", text.encode(), durable=False)


def is_current(step: Step, journal: dict[str, str]) -> bool:
    """The step last succeeded with its current key and its outputs are as it left them."""
    return is_done(journal, step.id, step.key, step.outputs)
