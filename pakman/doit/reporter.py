"""How a build shows progress: a live line on a terminal, plain lines in CI,
or one JSON event per step; a summary at the end.

A doit reporter, though it needs no doit to be imported: a build with
nothing to do reports through it without starting doit.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from doit.exceptions import BaseFail


class PakmanReporter:
    """A doit reporter (doit calls these methods as the run goes)."""

    desc = "pakman progress"

    def __init__(
        self,
        outstream: IO[str] | None = None,
        options: dict[str, Any] | None = None,
        *,
        json_events: bool = False,
        repository: str = "",
        shard: str = "",
        shard_apps: int = 0,
    ) -> None:
        self.out = outstream or sys.stdout
        self.json = json_events
        self.live = not json_events and self.out.isatty()
        self.repository = repository
        self.shard = shard  # `I/N` for a shard build (it writes no repository)
        self.shard_apps = shard_apps
        self.total = 0
        self.done = 0
        self.executed: list[str] = []
        self.restored: list[str] = []
        self.skipped: list[str] = []
        self.up_to_date: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.invalid_input = False
        self.started: dict[str, float] = {}
        self.run_started = time.monotonic()

    # doit's reporter interface -------------------------------------------

    def up_to_date_without_doit(self, step_ids: list[str]) -> None:
        """Steps pakman found current itself, so never handed to doit."""
        for step_id in step_ids:
            self.up_to_date.append(step_id)
            self._event("up-to-date", step_id)

    def not_needed(self, step_ids: list[str]) -> None:
        """Steps left undone: no step that runs needs them (build roots; counted as up to date)."""
        for step_id in step_ids:
            self.up_to_date.append(step_id)
            self._event("not-needed", step_id)

    def restored_without_doit(self, steps: list[tuple[str, bool]]) -> None:
        """Steps pakman restored itself, never handed to doit: (step, its outputs in place).

        Not in place: the remote cache's outputs a step about to run does not
        read stay in the local store (parked) until one does.
        """
        for step_id, in_place in steps:
            self.restored.append(step_id)
            self._event("restored", step_id, seconds=0.0, warnings=[], in_place=in_place)
            if not self.json:
                self._line(f"restored {step_id}" + ("" if in_place else " (kept in the store)"))

    def initialize(self, tasks: dict[str, Any], selected_tasks: list[str]) -> None:
        self.total = sum(1 for t in tasks.values() if t.actions)

    def get_status(self, task: Any) -> None:
        pass

    def execute_task(self, task: Any) -> None:
        if not task.actions:
            return
        self.started[task.name] = time.monotonic()
        self._event("start", task.name)
        if self.live:
            self._status(f"[{self.done + 1}/{self.total}] {task.name} ...")

    def add_success(self, task: Any) -> None:
        if not task.actions:
            return
        self.done += 1
        seconds = time.monotonic() - self.started.get(task.name, time.monotonic())
        values = getattr(task, "values", None) or {}
        warnings = list(values.get("warnings") or ())
        restored = bool(values.get("restored"))
        (self.restored if restored else self.executed).append(task.name)
        event = "restored" if restored else "success"
        self._event(event, task.name, seconds=round(seconds, 3), warnings=warnings)
        if not self.json:
            verb = "restored" if restored else "ran "
            self._line(f"{verb} {task.name} ({seconds:.2f}s)")
            for warning in warnings:
                self._line(f"     warning: {warning}")

    def add_failure(self, task: Any, fail: BaseFail) -> None:
        from doit.exceptions import UnmetDependency

        self.done += 1
        if isinstance(fail, UnmetDependency):
            # Not run because a step it needs failed (the build goes on with the rest).
            if task.actions:
                self.skipped.append(task.name)
                self._event("skipped", task.name, message="a step it needs failed")
            return
        message = fail.get_msg().rstrip()
        # tasks.InvalidInput says so; the adapter imports the reporter, not the reverse.
        if getattr(fail, "invalid_input", False) is True:
            self.invalid_input = True
        self.failed.append((task.name, message))
        self._event("failure", task.name, message=message)
        if not self.json:
            self._line(f"FAIL {task.name}\n{message}")

    def skip_uptodate(self, task: Any) -> None:
        if not task.actions:
            return
        self.done += 1
        self.up_to_date.append(task.name)
        self._event("up-to-date", task.name)
        if self.live:
            self._status(f"[{self.done}/{self.total}] {task.name} up to date")

    def skip_ignore(self, task: Any) -> None:
        self.done += 1
        self._event("ignored", task.name)

    def cleanup_error(self, exception: BaseException) -> None:
        self._line(f"error while cleaning up: {exception}")

    def runtime_error(self, msg: str) -> None:
        self.failed.append(("(doit)", msg))
        self._event("error", "", message=msg)
        if not self.json:
            self._line(f"error: {msg}")

    def teardown_task(self, task: Any) -> None:
        pass

    def complete_run(self) -> None:
        seconds = time.monotonic() - self.run_started
        # doit reports the end of a run it was interrupted in (Ctrl-C, SIGTERM):
        # say so, rather than print what reads like a finished build.
        interrupted = isinstance(sys.exc_info()[1], KeyboardInterrupt)
        summary: dict[str, Any] = {
            "built": len(self.executed),
            "restored": len(self.restored),
            "up_to_date": len(self.up_to_date),
            "failed": len(self.failed),
            "skipped": len(self.skipped),
            "seconds": round(seconds, 3),
            "repository": self.repository,
        }
        if interrupted:
            summary["interrupted"] = True
        if self.shard:
            summary["shard"] = self.shard
            summary["apps"] = self.shard_apps
        if self.json:
            self._event("summary", "", **summary)
            return
        if self.live:
            self._status("")
        if interrupted:
            self._line(
                f"interrupted after {seconds:.1f}s: {summary['built']} "
                f"step{'s' * (summary['built'] != 1)} ran; the step that was running is not done"
            )
            return
        text = (
            f"{summary['built']} step{'s' * (summary['built'] != 1)} ran, "
            + (f"{summary['restored']} restored from the store, " if self.restored else "")
            + f"{summary['up_to_date']} up to date, {summary['failed']} failed "
            + (f"({summary['skipped']} not run after it) " if self.skipped else "")
            + f"in {seconds:.1f}s"
        )
        if self.repository and not self.failed:
            text += f"; repository: {self.repository}"
        self._line(text)
        if self.shard and not self.failed:
            self._line(
                f"shard {self.shard}: {self.shard_apps} app{'s' * (self.shard_apps != 1)} built; "
                "no repository written (run `pakman build` without --shard to publish)"
            )

    # output ------------------------------------------------------------------

    def _event(self, event: str, step: str, **fields: Any) -> None:
        if self.json:
            self.out.write(json.dumps({"event": event, "step": step, **fields}) + "\n")
            self.out.flush()

    def _status(self, text: str) -> None:
        width = 100
        self.out.write("\r" + text[:width].ljust(width) + ("\r" if not text else ""))
        self.out.flush()

    def _line(self, text: str) -> None:
        if self.live:
            self.out.write("\r" + " " * 100 + "\r")
        self.out.write(text + "\n")
        self.out.flush()
