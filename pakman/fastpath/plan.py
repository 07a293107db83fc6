"""The plan: the small part of a prepared project's snapshot, and checking it.

`pakman build` starts here: the plan (plain data, JSON) holds
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

import base64
import hashlib
import itertools
import json
import os
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pakman import __version__
from pakman.compile.settings import Settings, inputs_digest
from pakman.fastpath.protocol import Token, ask
from pakman.fileio import write_atomic
from pakman.workspace.fingerprint import Packed, unchanged
from pakman.workspace.journal import is_done, journal_continues, journal_position, read_journal
from pakman.workspace.layout import Layout

PLAN_FORMAT = 5  # 5: JSON (4 was marshal)
PLAN_FILE = "plan.json"
TOKEN_FILE = "watch.token"  # the watcher's token for the plan (see pakman.fastpath.protocol)

# The plan: the small part of the snapshot, plain data (JSON: .pakman/ may
# come from a cache restored from elsewhere, so nothing read back from it may
# run code, as unpickling can), enough to tell that nothing changed and to
# stand in for the apps that did not. Checked for its shape when read.
Plan = dict[str, Any]
# A watched list on disk: a magic, the length of the NUL-joined paths (UTF-8,
# surrogates kept for names that are not), the paths, then five int64s a path.
_WATCHED_MAGIC = b"PKW1"
_WATCHED_HEAD = struct.Struct("<4sQ")
_WATCHED_NAME = re.compile(r"[0-9a-f]{32}\Z")


def snapshot_dir(layout: Layout) -> Path:
    return layout.state / "cache" / "project"


def watched_dir(layout: Layout) -> Path:
    return snapshot_dir(layout) / "watched"


def _pack_watched(packed: Packed) -> bytes:
    names = packed[0].encode("utf-8", "surrogatepass")
    return _WATCHED_HEAD.pack(_WATCHED_MAGIC, len(names)) + names + packed[1]


def _unpack_watched(data: bytes) -> Packed | None:
    try:
        magic, length = _WATCHED_HEAD.unpack_from(data)
        names = data[_WATCHED_HEAD.size : _WATCHED_HEAD.size + length].decode(
            "utf-8", "surrogatepass"
        )
    except (struct.error, UnicodeDecodeError):
        return None
    values = data[_WATCHED_HEAD.size + length :]
    count = names.count("\0") + 1 if values else 0
    if magic != _WATCHED_MAGIC or len(values) != 40 * count:
        return None
    return names, values


def write_watched(folder: Path, packed: Packed) -> str:
    """Keep an app's watched paths in `folder`, in a file named after their digest; its name."""
    data = _pack_watched(packed)
    name = hashlib.sha256(data).hexdigest()[:32]
    # Written even when it is there: it may be why the app is prepared again (damaged).
    write_atomic(folder / name, data, durable=False)
    return name


def read_watched(folder: Path, name: str) -> Packed | None:
    """The watched paths kept under `name`; None when they are not there (or not readable)."""
    try:
        data = (folder / name).read_bytes()
    except OSError:
        return None
    return _unpack_watched(data)


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
    """What a build kept with the watcher's token for a plan (see pakman.fastpath.protocol)."""

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
    plan, signature = load_plan(snapshot_dir(layout) / PLAN_FILE, layout)
    if plan is None or plan["version"] != __version__ or plan["inputs"] != inputs:
        return None, None
    return plan, signature


def dump_plan(plan: Plan) -> bytes:
    """The plan's bytes (its `watched` paths' signatures as base64)."""
    names, values = plan["watched"]
    plain = {**plan, "watched": [names, base64.b64encode(values).decode("ascii")]}
    return json.dumps(plain, separators=(",", ":"), check_circular=False).encode()


def load_plan(path: Path, layout: Layout | None = None) -> tuple[Plan | None, list[int] | None]:
    """A plan file and its signature; (None, None) when it is missing or not a plan of this format.

    With `layout`, every output the plan lists must lie in the workspace's
    `.pakman/` or the repository (a plan names what a build may remove).
    """
    try:
        with path.open("rb") as handle:
            signature = plan_signature(os.fstat(handle.fileno()))
            plan = json.loads(handle.read())
        if not _plan_shape(plan, layout):
            return None, None
        names, values = plan["watched"]
        plan["watched"] = (names, base64.b64decode(values, validate=True))
    except (OSError, ValueError, RecursionError):  # a JSON or base64 error is a ValueError
        return None, None
    if len(plan["watched"][1]) != (40 * (names.count("\0") + 1) if plan["watched"][1] else 0):
        return None, None
    return plan, signature


def _strings(value: object) -> bool:
    return type(value) is list and set(map(type, value)) <= {str}


def _steps_shape(steps: list[Any], within: tuple[str, ...]) -> bool:
    """Every step summary is [id, stage, arch or null, key, [output, ...]].

    Checked over columns with builtins (3,000 steps at 200 apps, read by every
    build): joining raises TypeError for anything that is not text.
    """
    if not steps:
        return True
    if set(map(type, steps)) != {list} or set(map(len, steps)) != {5}:
        return False
    ids, stages, arches, keys, outputs = zip(*steps, strict=True)
    if set(map(type, arches)) - {str, type(None)} or set(map(type, outputs)) != {list}:
        return False
    paths = list(itertools.chain.from_iterable(outputs))
    try:
        "".join(ids + stages + keys)
        joined = "\0" + "\0".join(paths)
    except TypeError:
        return False
    if not within:
        return True
    # Each output starts right after a NUL (none holds one): count those that
    # start in the workspace's .pakman/ or the repository.
    if joined.count("\0") != len(paths):
        return False
    state, repo = within
    inside = joined.count("\0" + state)
    if not repo.startswith(state):
        inside += joined.count("\0" + repo)
    return inside == len(paths)


def _plan_shape(plan: object, layout: Layout | None) -> bool:
    """True when decoded JSON has exactly the plan's shape (what `inspect` and others rely on)."""
    within = (f"{layout.state}/", f"{layout.repo}/") if layout is not None else ()
    if type(plan) is not dict or plan.get("format") != PLAN_FORMAT:
        return False
    watched, key, apps, repository = (
        plan.get("watched"),
        plan.get("key"),
        plan.get("apps"),
        plan.get("repository"),
    )
    if not (
        type(plan.get("version")) is str
        and type(plan.get("inputs")) is str
        and type(watched) is list
        and len(watched) == 2
        and _strings(watched)
        and type(key) is list
        and len(key) == 3
        and _strings(key)
        and type(apps) is list
        and type(repository) is list
    ):
        return False
    steps = list(repository)
    for app in apps:
        if not (
            type(app) is dict
            and type(app.get("config")) is str
            and type(app.get("watched")) is str
            and _WATCHED_NAME.match(app["watched"])
            and type(app.get("name")) is str
            and _strings(app.get("packages"))
            and _strings(app.get("architectures"))
            and _strings(app.get("warnings"))
            and type(app.get("steps")) is list
        ):
            return False
        steps += app["steps"]
    return _steps_shape(steps, within)


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
    layout.refuse_links()
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
