"""The plan: the small part of a prepared project's snapshot, and checking it.

`pakman build` starts here: the plan (plain data, read with marshal) holds
the signature of every path the project was prepared from, the steps' ids,
keys and outputs, and the warnings to repeat. Checking it costs one lstat per
watched path and reading the journal, with none of the heavier modules
imported, which keeps a build with nothing to do fast.

Each app's watched paths (most of the plan's bytes: a path and a signature
per source file) are kept apart, in a file named after the digest of its
content under `watched/`, and the plan names that file. So a build that
changed one app writes one small file and a plan without the others' paths,
and a build told by `pakman watch` which apps changed reads only theirs. A
name never stands for other content, so a plan is never paired with the
paths of another; a file that is missing counts as a change.
"""

from __future__ import annotations

import hashlib
import marshal
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pakman import __version__
from pakman.fingerprint import Packed, unchanged
from pakman.fsutil import write_atomic
from pakman.journal import is_done, journal_continues, journal_position, read_journal
from pakman.layout import Layout
from pakman.settings import Settings, inputs_digest
from pakman.watch import Token, ask

PLAN_FORMAT = 4
TOKEN_FILE = "watch.token"  # the watcher's token for the plan (see pakman.watch)

# The plan: the small part of the snapshot, plain data (read with marshal,
# several times faster than unpickling objects), enough to tell that nothing
# changed and to stand in for the apps that did not.
Plan = dict[str, Any]


def snapshot_dir(layout: Layout) -> Path:
    return layout.state / "cache" / "project"


def watched_dir(layout: Layout) -> Path:
    return snapshot_dir(layout) / "watched"


def write_watched(folder: Path, packed: Packed) -> str:
    """Keep an app's watched paths in `folder`, in a file named after their digest; its name."""
    data = marshal.dumps(packed)
    name = hashlib.sha256(data).hexdigest()[:32]
    # Written even when it is there: it may be why the app is prepared again (damaged).
    write_atomic(folder / name, data, durable=False)
    return name


def read_watched(folder: Path, name: str) -> Packed | None:
    """The watched paths kept under `name`; None when they are not there (or not readable)."""
    try:
        packed = marshal.loads((folder / name).read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if (
        not isinstance(packed, tuple)
        or len(packed) != 2
        or not isinstance(packed[0], str)
        or not isinstance(packed[1], bytes)
    ):
        return None
    return packed[0], packed[1]


def prune_watched(folder: Path, keep: set[str]) -> None:
    """Remove the kept watched lists not in `keep`, once they outnumber those twice over.

    Another process may be about to name one of them in its plan: the build
    that reads that plan finds the file missing and prepares that app again.
    """
    try:
        with os.scandir(folder) as found:
            names = [e.name for e in found if not e.name.startswith(".")]
    except OSError:
        return
    if len(names) <= 2 * len(keep) + 64:
        return
    for name in names:
        if name not in keep:
            (folder / name).unlink(missing_ok=True)


def plan_signature(st: os.stat_result) -> list[int]:
    """Which plan file this is: a new one is written beside and renamed over the old."""
    return [st.st_ino, st.st_size, st.st_mtime_ns]


@dataclass(frozen=True)
class Kept:
    """What a build kept with the watcher's token for a plan (see pakman.watch)."""

    token: Token
    done: frozenset[int] = frozenset()  # apps found with every step done, after the token
    journal: object = None  # the journal's position then (see journal_position)


def read_token(layout: Layout, plan: list[int]) -> Kept | None:
    """The watcher's token kept for the plan with this signature, and what came with it."""
    import json

    try:
        kept = json.loads((snapshot_dir(layout) / TOKEN_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or kept.get("plan") != plan:
        return None
    token, done = kept.get("token"), kept.get("done")
    if not isinstance(token, list):
        return None
    if not isinstance(done, list) or not all(isinstance(i, int) for i in done):
        done = []
    return Kept(token, frozenset(done), kept.get("journal"))


def write_token(
    layout: Layout,
    plan: list[int],
    token: Token,
    done: Iterable[int] = (),
    journal: object = None,
) -> None:
    """Keep a token for the plan with this signature: what it lists was read after it.

    `done`: the apps found with every step done after the token, when the
    journal was at `journal`.
    """
    import json

    record = {"plan": plan, "token": token, "done": sorted(done), "journal": journal}
    write_atomic(snapshot_dir(layout) / TOKEN_FILE, json.dumps(record).encode(), durable=False)


def read_plan(layout: Layout, inputs: str) -> tuple[Plan | None, list[int] | None]:
    """The plan when this pakman made it with these inputs, and its file's signature.

    Nothing it lists is looked at yet: `inspect` asks the watcher first.
    """
    try:
        with (snapshot_dir(layout) / "plan.marshal").open("rb") as handle:
            signature = plan_signature(os.fstat(handle.fileno()))
            plan = marshal.loads(handle.read())
    except (OSError, EOFError, ValueError, TypeError):
        return None, None
    if (
        not isinstance(plan, dict)
        or plan.get("format") != PLAN_FORMAT
        or plan.get("version") != __version__
        or plan.get("inputs") != inputs
    ):
        return None, None
    return plan, signature


def all_done(steps: Sequence[Sequence[Any]], journal: Mapping[str, str]) -> bool:
    return all(is_done(journal, step_id, key, outputs) for step_id, _, _, key, outputs in steps)


# ---------------------------------------------------------------------------
# Preparing from scratch


@dataclass
class Inspection:
    """The snapshot's plan checked against the workspace (one lstat per watched path)."""

    layout: Layout
    inputs: str
    plan: Plan | None  # None: nothing usable, prepare from scratch
    changed: list[int] = field(default_factory=list)  # apps whose files changed
    done: set[int] = field(default_factory=set)  # unchanged apps whose steps are all done
    repository_done: bool = False
    token: Token | None = None  # the watcher's, for the plan written next
    checked: int = 0  # apps whose files were looked at (fewer with a watcher)
    journal: object = None  # the journal's position when `done` was found

    @property
    def nothing_to_do(self) -> bool:
        """Nothing changed and every step is done with its current key."""
        return (
            self.plan is not None
            and not self.changed
            and len(self.done) == len(self.plan["apps"])
            and self.repository_done
        )

    def step_ids(self) -> list[str]:
        assert self.plan is not None
        steps = [s for app in self.plan["apps"] for s in app["steps"]] + self.plan["repository"]
        return [s[0] for s in steps]

    def warnings(self) -> list[str]:
        assert self.plan is not None
        return [w for app in self.plan["apps"] for w in app["warnings"]]


def inspect(settings: Settings) -> Inspection:
    """Read the small plan and check it: what changed, what is done.

    Reads no config, no source and no step objects: the plan, the journal,
    an lstat per watched path and whether each output exists. With
    `pakman watch` running, only the apps it names are looked at.
    """

    layout = Layout.at(Path(settings.root), Path(settings.repo) if settings.repo else None)
    inputs = inputs_digest(settings, layout)
    plan, signature = read_plan(layout, inputs)
    # Asked before anything is looked at: all that is read from now on is
    # newer than the token, which the plan written next keeps.
    kept = read_token(layout, signature) if signature else None
    answer = ask(layout, signature, kept.token if kept else None)
    token = answer.token if answer else None
    if plan is None or signature is None or not unchanged(plan["watched"]):
        return Inspection(layout, inputs, None, token=token)
    dirty = answer.dirty if answer else None
    journal = read_journal(layout)
    position = journal_position()
    # Found done after the kept token, and no event since in the app's folders
    # or its outputs' folders, with the same journal only appended to: still done.
    continues = kept is not None and journal_continues(kept.journal)
    trusted: frozenset[int] = frozenset()
    if kept is not None and answer is not None and answer.touched is not None and continues:
        trusted = kept.done - answer.touched
    folder = watched_dir(layout)
    changed: list[int] = []
    done: set[int] = set()
    checked = 0
    for index, app in enumerate(plan["apps"]):
        if dirty is None or index in dirty:
            checked += 1
            watched = read_watched(folder, app["watched"])
            if watched is None or not unchanged(watched):
                changed.append(index)
                continue
        elif index in trusted:
            done.add(index)
            continue
        if all_done(app["steps"], journal):
            done.add(index)
    repository_done = not changed and all_done(plan["repository"], journal)
    renew = dirty is None or bool(dirty) or kept is None or kept.done != done or not continues
    if answer is not None and not changed and renew:
        # Every app was found as the plan says, after the token: keep it, so
        # that the next build asks from here (the plan is not written again).
        write_token(layout, signature, answer.token, done, position)
    return Inspection(
        layout, inputs, plan, changed, done, repository_done, token, checked, position
    )
