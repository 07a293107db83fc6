"""A build's use of the remote cache: fill the local store before, upload what ran after.

`pakman build` and plain `doit` (pakman.dodo) both call `RemoteRun.before`
with the steps that will run and `RemoteRun.after` when the build ends.
Only per-app steps go to the remote cache: not the build roots (made
locally from the mirror), nor the repository's index and sign steps (cheap,
and signed with the local key), nor a step under --only. What the remote
cache sends becomes local store entries; `pakman build` records each one
done as soon as it is written (while the downloads go on): put in place
(pakman.steps.restore_step) when a step that runs reads it, else parked in
the store until one does (pakman.doit.tasks), so doit is handed only the
steps left to run; plain doit restores them from the local store as any
other. What is uploaded is what
ran in this build, never what was restored.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Collection, Sequence
from typing import IO, TYPE_CHECKING

from pakman.compile.graph import Step, portable_keys
from pakman.compile.settings import Settings
from pakman.errors import os_error_text
from pakman.steps import restore_step
from pakman.workspace.journal import parked_line
from pakman.workspace.layout import REPOSITORY
from pakman.workspace.remote import HttpCache, Report, Unreachable, Wanted, fill, upload
from pakman.workspace.remote_options import header_from, parse_timeout
from pakman.workspace.store import Store

if TYPE_CHECKING:
    from pathlib import Path

    from pakman.apk import SigningKey
    from pakman.project import Project

# Stages whose steps never go to the remote cache (besides the repository's).
LOCAL_STAGES = frozenset({"buildroot"})


def remote_cache(settings: Settings) -> HttpCache | None:
    """The client for --remote-cache, or None without one. Raises ConfigError for a bad value."""
    if not settings.remote_cache:
        return None
    timeout = parse_timeout(settings.remote_cache_timeout)
    return HttpCache(settings.remote_cache, timeout=timeout, header=header_from(os.environ))


def cacheable(step: Step) -> bool:
    """A step whose outputs may come from, and go to, the remote cache."""
    return step.complete and step.namespace != REPOSITORY and step.stage not in LOCAL_STAGES


class RemoteRun:
    """One build's dealings with the remote cache; says what happened on `err`."""

    def __init__(self, project: Project, cache: HttpCache, err: IO[str] | None = None) -> None:
        self.project = project
        self.cache = cache
        self.err = err or sys.stderr
        self.live = self.err.isatty()
        self.readonly = project.settings.remote_cache_readonly
        self.store = Store(project.layout.state / "store")
        self.enabled = not project.settings.only  # --only: the repository is partial
        self.candidates: list[Step] = []
        self.keys: dict[str, str] = {}
        self.restored: Report = Report()
        self._key: SigningKey | None = None
        self.seconds = 0.0  # spent asking and sending

    def before(self, stale: Collection[str], restore: bool = False) -> dict[str, bool]:
        """Fill the local store with the remote cache's outputs of the steps about to run.

        With `restore`, each step filled is also recorded done: put in place
        when a step that will run anyway reads it (the repository's index
        reads the packages) or with --remote-cache-all-outputs, else parked
        in the store (journal.parked_line) until a step that runs needs it.
        Returns those steps, each with whether it is in place.
        """
        if not self.enabled:
            return {}
        graph = self.project.graph
        stale = set(stale)
        self.candidates = [s for s in graph.order() if s.id in stale and cacheable(s)]
        if not self.candidates:
            return {}
        self.keys = portable_keys(graph, [s.id for s in self.candidates])
        missing = [s for s in self.candidates if s.id in self.keys and not self.store.has(s.key)]
        if not missing:
            return {}
        if not self._reachable():
            return {}
        wanted = [
            Wanted(s.id, self.keys[s.id], s.key, len(s.outputs), str(s.reads.get("key", "")))
            for s in missing
        ]
        layout = self.project.layout
        # What the steps that run whatever the cache has (the repository's) read.
        read = {
            u for step_id in stale if not cacheable(graph[step_id]) for u in graph[step_id].upstream
        }
        everything = self.project.settings.remote_cache_all_outputs
        done: dict[str, bool] = {}
        lines: list[str] = []
        lock = threading.Lock()

        # Put in place: what is read, and what has outputs of another key still
        # there (an older build's: replaced now, as a parked step's are all missing).
        in_place = {
            s.id
            for s in missing
            if everything or s.id in read or any(os.path.lexists(o) for o in s.outputs)
        }

        def record(item: Wanted) -> None:
            step = graph[item.step_id]
            if step.id in in_place:
                try:
                    line = restore_step(step, layout, fresh=True)
                except OSError:
                    return  # still in the local store: the build restores it as any other
                if line is None:
                    return
            else:
                line = parked_line(step.id, step.key)
            with lock:
                done[step.id] = step.id in in_place
                lines.append(line)

        started = time.monotonic()
        self.restored = fill(
            self.cache,
            self.store,
            wanted,
            self._resign,
            self._progress,
            on_entry=record if restore else None,
            # What stays parked is kept packed: one file per step until one needs it.
            packed={s.id for s in missing} - in_place if restore else set(),
        )
        if lines:
            with (layout.state / "journal").open("a", encoding="utf-8") as journal:
                journal.write("".join(lines))
        self.seconds += time.monotonic() - started
        self._progress("")
        self._warn(self.restored.warnings)
        return done

    def after(self) -> None:
        """Upload what ran in this build (unless read-only); say what the remote cache did."""
        if not self.enabled or not self.candidates:
            return
        uploaded = Report()
        if not self.readonly:
            ran = [
                (s.id, s.key, self.keys[s.id], str(s.reads.get("key", "")))
                for s in self.candidates
                if s.id in self.keys and self._ran(s)
            ]
            if ran and (self.restored.restored or self.restored.misses or self._reachable()):
                started = time.monotonic()
                try:
                    uploaded = upload(self.cache, self.store, ran, self._progress)
                except OSError as exc:
                    # A store entry changed under the upload (gc, say): the build is done.
                    uploaded.warnings.append(f"remote cache upload: {os_error_text(exc)}")
                self.seconds += time.monotonic() - started
                self._progress("")
                self._warn(uploaded.warnings)
        self.cache.close()
        text = (
            f"remote cache: {len(self.restored.restored)} restored from the remote cache, "
            f"{len(uploaded.uploaded)} uploaded, {self.restored.misses} "
            f"miss{'es' * (self.restored.misses != 1)}"
        )
        if self.readonly:
            text += " (read-only)"
        text += f" in {self.seconds:.2f}s"
        print(text, file=self.err)

    # -------------------------------------------------------------------------

    def _reachable(self) -> bool:
        try:
            self.cache.probe()
        except Unreachable as exc:
            self._warn([f"remote cache unreachable: {exc}; building locally"])
            self.enabled = False
            return False
        return True

    def _ran(self, step: Step) -> bool:
        """The step ran in this build (its manifest says so), not restored."""
        try:
            record = json.loads(self.project.layout.manifest(step.id).read_text())
        except (OSError, ValueError):
            return False
        return bool(record.get("key") == step.key and record.get("restored") is False)

    def _resign(self, package: Path) -> None:
        from pakman.apk.sign import resign_package

        if self._key is None:
            self._key = self.project.context.signing_key()
        resign_package(package, self._key)

    def _progress(self, text: str) -> None:
        if self.live:
            self.err.write("\r" + text[:100].ljust(100) + ("\r" if not text else ""))
            self.err.flush()

    def _warn(self, warnings: Sequence[str]) -> None:
        for warning in warnings:
            print(f"warning: {warning}", file=self.err)


def start_remote(
    project: Project, stale: Collection[str], always: bool = False, restore: bool = False
) -> tuple[RemoteRun | None, dict[str, bool]]:
    """The remote cache's part of a build, its `before` done (None without a remote cache),
    and the steps it restored, each with whether it is in place (with `restore`, see
    `RemoteRun.before`)."""
    if always:
        return None, {}  # every step runs: nothing is restored, so nothing is asked
    cache = remote_cache(project.settings)
    if cache is None:
        return None, {}
    run = RemoteRun(project, cache)
    return run, run.before(stale, restore)
