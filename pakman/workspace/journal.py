"""The journal: the key each step last succeeded with, one line per run of a step.

`execute_step` appends to it; a build reads it to tell which steps are done
without doit: their key is the journal's, and their outputs are as the step
left them. That is one stat per output: a file or folder's inode, size and
mtime, so a deleted output, or a file deleted from or added to an output
folder (the folder's mtime moves), makes the step run again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pakman.fileio import write_atomic
from pakman.workspace.layout import Layout


def output_signature(outputs: Iterable[str]) -> str:
    """The state of a step's outputs as left behind: inode, size and mtime of each ("" if one is missing).

    An output that is a link is followed: the repository's folders are links
    to their publication (pakman.workspace.publication), whose entries coming and going
    must count. (Steps write no other links as outputs.)
    """
    parts = []
    for output in outputs:
        try:
            st = os.stat(output)
        except OSError:
            return ""
        parts.append(f"{st.st_ino:x}.{st.st_size:x}.{st.st_mtime_ns:x}")
    return ",".join(parts)


def changed_outputs(
    journal: Mapping[str, str], step_id: str, key: str, outputs: Iterable[str]
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


def parked_line(step_id: str, key: str) -> str:
    """The journal line of a step done with this key whose outputs are not in place (parked).

    A build root no step that runs needs is left unmade, and a step the
    remote cache sent that no step about to run reads stays in the local
    store: each is done for this key while its outputs are missing (their
    signature is ""), and not done once they appear otherwise. When a step
    that needs it runs, the build puts it in place first
    (pakman.doit.tasks.run_build).
    """
    return f"{step_id} {key} \n"


def is_parked(journal: Mapping[str, str], step_id: str, key: str) -> bool:
    """The step is done with this key, its outputs not in place (see `parked_line`)."""
    return journal.get(step_id) == f"{key} "


@dataclass
class _Reading:
    """The journal as this process last read it: which file, how far, what it said."""

    path: Path
    file: tuple[int, int, bytes]  # (device, inode, first bytes): compacting replaces the file
    offset: int  # bytes read, up to the end of the last whole line
    stamp: tuple[int, int, int, int]  # (device, inode, size, mtime) when read: unchanged since?
    done: dict[str, str]
    lines: int


_last: _Reading | None = None


def read_journal(layout: Layout) -> Mapping[str, str]:
    """For each step, `<key> <outputs' signature>` as it last succeeded (not to be changed).

    A process reads the journal once, then only the lines appended since:
    steps only ever append to it, and compacting replaces it by rename.
    """
    global _last
    path = layout.state / "journal"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        _last = None
        return {}
    # Plain doit asks once per task (3,000 at 200 apps): a stat when nothing was appended.
    if _last is not None and _last.path == path and _last.stamp == _stamp(st):
        return _last.done
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        _last = None
        return {}
    with handle:
        st = os.fstat(handle.fileno())
        # The first bytes too: a file deleted and made again may get the same inode.
        file = (st.st_dev, st.st_ino, os.pread(handle.fileno(), 64, 0))
        reading = _last
        # Another file, or one not only appended to: read it from the start.
        if reading is None or (reading.path, reading.file) != (path, file):
            reading = _Reading(path, file, 0, _stamp(st), {}, 0)
        if st.st_size < reading.offset:
            reading = _Reading(path, file, 0, _stamp(st), {}, 0)
        handle.seek(reading.offset)
        data = handle.read()
    reading.stamp = _stamp(st)
    end = data.rfind(b"\n") + 1  # a line still being written is read next time
    for line in data[:end].decode("utf-8", errors="replace").splitlines():
        step_id, _, state = line.partition(" ")
        reading.lines += 1
        if state:
            reading.done[step_id] = state
    reading.offset += end
    _last = reading
    return reading.done


def journal_position() -> list[int | str] | None:
    """Where the last `read_journal` stopped: [device, inode, first bytes (hex), offset].

    Kept with the watcher's token: a journal that still starts there (the same
    file, only appended to) says of every step at least what it said then.
    """
    if _last is None:
        return None
    device, inode, head = _last.file
    return [device, inode, head.hex(), _last.offset]


def journal_continues(position: object) -> bool:
    """The journal last read is the file at `position`, and only appended to since."""
    now = journal_position()
    return (
        now is not None
        and isinstance(position, list)
        and len(position) == 4
        and position[:3] == now[:3]
        and isinstance(position[3], int)
        and isinstance(now[3], int)
        and position[3] <= now[3]
    )


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def is_done(journal: Mapping[str, str], step_id: str, key: str, outputs: Iterable[str]) -> bool:
    """The step last succeeded with this key and its outputs are as it left them."""
    state = journal.get(step_id)
    return state is not None and state == f"{key} {output_signature(outputs)}"


def compact_journal(layout: Layout) -> None:
    """Rewrite the journal with one line per step once a fifth of it is superseded lines.

    It only grows otherwise (a line per run of a step). Rewriting it after
    every build would cost more than reading the few lines a build adds.
    """
    global _last
    done = read_journal(layout)
    if _last is None or _last.lines <= len(done) + len(done) // 4 + 100:
        return
    text = "".join(f"{step_id} {state}\n" for step_id, state in sorted(done.items()))
    write_atomic(layout.state / "journal", text.encode(), durable=False)
    _last = None
