"""The process behind `pakman watch` (see pakman.fastpath.protocol for what it promises).

It keeps one inotify watch per folder the plan's apps were prepared from
and per folder of their steps' outputs, and for each folder the clock of its
last event. Its clock moves on after every answer, so an event read after an
answer is newer than the token that answer gave. A folder it does not watch
counts as changed at every clock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import selectors
import socket
import stat
import uuid
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, TextIO

from inotify_simple import INotify, flags

from pakman.errors import PakmanError
from pakman.fastpath.plan import PLAN_FILE, load_plan, read_watched, snapshot_dir, watched_dir
from pakman.fastpath.protocol import PROTOCOL, SOCKET, read_line, socket_address
from pakman.workspace.fingerprint import Packed, unpack
from pakman.workspace.layout import Layout

# Whatever may change what a build reads: content, metadata, entries coming
# and going, and the folder itself going or moving.
MASK = (
    flags.MODIFY
    | flags.ATTRIB
    | flags.CLOSE_WRITE
    | flags.MOVED_FROM
    | flags.MOVED_TO
    | flags.CREATE
    | flags.DELETE
    | flags.DELETE_SELF
    | flags.MOVE_SELF
    | flags.DONT_FOLLOW
    | flags.EXCL_UNLINK
    | flags.ONLYDIR
)
GONE = flags.IGNORED | flags.DELETE_SELF | flags.MOVE_SELF
NEVER = 1 << 62  # the clock of a folder that is not watched: newer than any token


def folders_of(packed: Packed) -> list[str]:
    """The folders to watch for one app: each watched folder, and each file's folder."""
    folders: set[str] = set()
    for path, known in unpack(packed):
        if known is not None and stat.S_ISDIR(known[0]):
            folders.add(path)
        else:
            folders.add(os.path.dirname(path))
    return sorted(folders)


def output_folders(outputs: Iterable[str]) -> tuple[list[str], bool]:
    """The folders to watch for a step's outputs: each one's folder, and each output folder.

    An output's signature (see pakman.workspace.journal) is its own stat: an output
    replaced, removed, written or touched is an event in its folder, and an
    output folder's entries coming and going are events in it. Also says
    whether every output exists (otherwise whether it is a folder is not
    known yet).
    """
    folders: set[str] = set()
    complete = True
    for output in outputs:
        folders.add(os.path.dirname(output))
        try:
            if stat.S_ISDIR(os.stat(output).st_mode):
                folders.add(output)
        except OSError:
            complete = False
    return sorted(folders), complete


class Watcher:
    """inotify watches on the folders of the plan's apps, and a socket that builds ask."""

    def __init__(self, layout: Layout, out: TextIO, *, verbose: bool = False) -> None:
        self.layout = layout
        self.out = out
        self.verbose = verbose
        self.instance = uuid.uuid4().hex
        self.clock = 1
        self.overflowed_at = 0  # events before this clock may have been lost
        self.wds: dict[str, int] = {}  # watched folder -> its watch
        self.folders_by_wd: dict[int, list[str]] = {}  # one inode may be reached by two paths
        self.changed_at: dict[str, int] = {}  # folder -> clock of its last event (or its watch)
        self.apps: list[list[str] | None] = []  # the loaded plan's apps: their folders
        self.outputs: list[list[str]] = []  # and the folders of their steps' outputs
        self.names: list[str] = []  # and their names, for -v
        self.plan: list[int] | None = None  # the signature of the loaded plan
        self.known: dict[str, list[str] | None] = {}  # folders of each app, by its watched file
        self.known_outputs: dict[tuple[str, ...], list[str]] = {}  # by an app's outputs
        self.warned_limit = False
        self.plan_folder = snapshot_dir(layout)
        self.plan_folder.mkdir(parents=True, exist_ok=True)
        self.lock_file = (layout.state / "watch.lock").open("a")
        try:
            fcntl.flock(self.lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.lock_file.close()
            raise PakmanError(
                f"a watcher already runs in {layout.root} (see {layout.relative(layout.state)}/"
                f"{SOCKET})"
            ) from None
        self.inotify = INotify()
        # A new plan is loaded as soon as a build writes it, not when the next build asks.
        self.plan_wd = self.inotify.add_watch(
            self.plan_folder, flags.MOVED_TO | flags.CLOSE_WRITE | flags.ONLYDIR
        )
        self.socket_path = layout.state / SOCKET
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address, folder = socket_address(self.socket_path)
        try:
            self.socket_path.unlink(missing_ok=True)  # left by a watcher that was killed
            self.server.bind(address)
        finally:
            if folder is not None:
                os.close(folder)
        self.server.listen(16)

    def __enter__(self) -> Watcher:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.socket_path.unlink(missing_ok=True)
        self.server.close()
        self.inotify.close()
        self.lock_file.close()

    def say(self, text: str) -> None:
        print(f"pakman watch: {text}", file=self.out, flush=True)

    # -- the plan ----------------------------------------------------------

    def load_plan(self) -> None:
        """Watch the folders of the plan's apps (and no others)."""
        plan, signature = load_plan(self.plan_folder / PLAN_FILE)
        if plan is None:
            self.plan, self.apps, self.outputs, self.names = None, [], [], []
            return
        apps = [(str(a["name"]), str(a["watched"])) for a in plan["apps"]]
        outputs = [tuple(str(o) for s in a["steps"] for o in s[4]) for a in plan["apps"]]
        # Only the apps whose watched paths changed (a new file) are worked out again.
        self.known = {w: self.known.get(w) or self.folders(w) for _, w in apps}
        self.apps = [self.known[watched] for _, watched in apps]
        # A build writes its plan before its steps run: the outputs of the apps
        # it did not change are as in the last plan. They are looked at again
        # only until they all exist (until then, which are folders is unknown).
        known_outputs: dict[tuple[str, ...], list[str]] = {}
        self.outputs = []
        for paths in outputs:
            folders, complete = self.known_outputs.get(paths), True
            if folders is None:
                folders, complete = output_folders(paths)
            if complete:
                known_outputs[paths] = folders
            self.outputs.append(folders)
        self.known_outputs = known_outputs
        self.names = [name for name, _ in apps]
        wanted = {folder for folders in self.apps if folders for folder in folders}
        wanted.update(folder for folders in self.outputs for folder in folders)
        for folder in [f for f in self.changed_at if f not in wanted]:
            self.unwatch(folder)
            del self.changed_at[folder]
        for folder in sorted(wanted):
            if folder not in self.wds:
                self.watch(folder)
        self.plan = signature
        if self.verbose:
            self.say(f"watching {len(self.wds)} folders of {len(self.apps)} apps")

    def folders(self, name: str) -> list[str] | None:
        """The folders of the app whose watched paths are kept under `name`; None if unknown."""
        packed = read_watched(watched_dir(self.layout), name)
        return None if packed is None else folders_of(packed)

    def watch(self, folder: str) -> None:
        self.changed_at[folder] = self.clock  # what happened before the watch is unknown
        try:
            wd = self.inotify.add_watch(folder, MASK)
        except OSError as exc:
            self.changed_at[folder] = NEVER
            if exc.errno == errno.ENOSPC and not self.warned_limit:
                self.warned_limit = True
                self.say(
                    "the system's limit of inotify watches is reached (sysctl "
                    "fs.inotify.max_user_watches): apps with folders left unwatched are "
                    "checked file by file"
                )
            return
        self.wds[folder] = wd
        self.folders_by_wd.setdefault(wd, []).append(folder)

    def unwatch(self, folder: str) -> None:
        wd = self.wds.pop(folder, None)
        if wd is None:
            return
        sharing = self.folders_by_wd.get(wd, [])
        if folder in sharing:
            sharing.remove(folder)
        if not sharing:
            self.folders_by_wd.pop(wd, None)
            with contextlib.suppress(OSError):  # the kernel removed it already (folder gone)
                self.inotify.rm_watch(wd)

    # -- events ------------------------------------------------------------

    def read_events(self) -> None:
        """Read every queued event, marking the folders they happened in."""
        while events := self.inotify.read(timeout=0):
            reload = False
            for event in events:
                if event.mask & flags.Q_OVERFLOW:
                    self.overflowed_at = self.clock
                elif event.wd == self.plan_wd:
                    reload = reload or event.name == PLAN_FILE
                else:
                    for folder in list(self.folders_by_wd.get(event.wd, ())):
                        self.changed_at[folder] = self.clock
                        if event.mask & GONE:
                            # Gone or moved: the path is not watched any more.
                            self.unwatch(folder)
                            self.changed_at[folder] = NEVER
            if reload:
                self.load_plan()

    # -- builds asking -----------------------------------------------------

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        self.read_events()
        if request.get("plan") is not None and request.get("plan") != self.plan:
            self.load_plan()  # written and not yet loaded
        since = request.get("since")
        token = self.clock
        self.clock += 1  # events read from now on are newer than this answer
        reply: dict[str, Any] = {"instance": self.instance, "clock": token}
        if request.get("protocol") != PROTOCOL:
            reply["why"] = "another version of pakman asked"
        elif self.plan is None or request.get("plan") != self.plan:
            reply["why"] = "no plan, or not the one the watcher loaded"
        elif not isinstance(since, list) or len(since) != 2 or since[0] != self.instance:
            reply["why"] = "the plan was written without this watcher"
        elif not isinstance(since[1], int) or since[1] < self.overflowed_at:
            reply["why"] = "events were lost (the queue overflowed)"
        else:
            reply["touched"] = self.changed_since(self.outputs, since[1])
            reply["dirty"] = self.changed_since(self.apps, since[1])
        if self.verbose:
            if "dirty" in reply:
                names = ", ".join(self.names[i] for i in reply["dirty"][:5])
                more = "..." if len(reply["dirty"]) > 5 else ""
                told = f"{len(reply['dirty'])} of {len(self.apps)} apps changed"
                self.say(f"{told}{f' ({names}{more})' if names else ''}")
            else:
                self.say(f"every app to check: {reply['why']}")
        return reply

    def changed_since(self, apps: Sequence[Sequence[str] | None], clock: int) -> list[int]:
        """The apps with an event after `clock` in any of their folders (all, when unknown)."""
        changed_at = self.changed_at
        return [
            index
            for index, folders in enumerate(apps)
            if folders is None or any(changed_at.get(f, NEVER) > clock for f in folders)
        ]

    def serve_one(self) -> None:
        connection, _ = self.server.accept()
        with connection:
            connection.settimeout(1.0)
            try:
                request = json.loads(read_line(connection, limit=65536))
                if not isinstance(request, dict):
                    raise ValueError("not a request")
                connection.sendall(json.dumps(self.answer(request)).encode() + b"\n")
            except (OSError, ValueError):
                pass  # a client that went away or spoke nonsense: the next one is served

    def run(self) -> None:
        self.load_plan()
        where = self.layout.root
        if self.plan is None:
            self.say(f"watching {where}; the first build there tells which folders (Ctrl-C stops)")
        else:
            self.say(
                f"watching {len(self.wds)} folders of {len(self.apps)} apps in {where} "
                "(Ctrl-C stops)"
            )
        with selectors.DefaultSelector() as selector:
            selector.register(self.inotify.fileno(), selectors.EVENT_READ, "events")
            selector.register(self.server, selectors.EVENT_READ, "ask")
            while True:
                for key, _ in selector.select():
                    if key.data == "events":
                        self.read_events()
                    else:
                        self.serve_one()


def serve(layout: Layout, out: TextIO, *, verbose: bool = False) -> int:
    """Watch the workspace's apps until interrupted (Ctrl-C or SIGTERM end it with 0)."""
    with Watcher(layout, out, verbose=verbose) as watcher:
        try:
            watcher.run()
        except KeyboardInterrupt:
            print("pakman watch: stopped", file=out, flush=True)
    return 0
