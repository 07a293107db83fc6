"""The doit adapter: steps -> doit tasks, the task loader, and the run lock.

This module and pakman.doit.reporter are the only ones that import doit
(tests/test_imports.py checks it). `pakman build` and plain
`doit` (with a one-line dodo.py importing `pakman.dodo`) build the same task
list on the same dependency database, `.pakman/doit.sqlite3`.

Each task carries exactly one `config_changed` holding what its step reads
(config slice, identity fields, template hashes, command strings), the keys
of the steps it depends on and pakman's version, so a task runs again
exactly when its step's key changes, or an output is missing.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from doit.cmd_base import TaskLoader2
from doit.dependency import SqliteDB
from doit.exceptions import InvalidTask, TaskFailed
from doit.loader import generate_tasks
from doit.task import Task
from doit.tools import config_changed

from pakman import __version__
from pakman.compile.graph import Step
from pakman.errors import ConfigError, PakmanError, os_error_text
from pakman.project import Project
from pakman.steps import RunContext, execute_step
from pakman.workspace.layout import REPOSITORY, Layout
from pakman.workspace.lock import run_lock


class InvalidInput(TaskFailed):  # type: ignore[misc]
    """A step found the input invalid (e.g. a dependency the stack lacks): exit 3."""

    invalid_input = True  # what the reporter looks for (progress imports no doit)


class InvalidSetting(InvalidTask):  # type: ignore[misc]
    """Plain doit's task loader found a setting or an input wrong: doit says it in one line, exit 3."""


def run_step_action(step: Step, context: RunContext) -> TaskFailed | dict[str, Any]:
    """doit's action for a step: run it, turning pakman errors into a task failure.

    Warnings travel back as the task's values, for the reporter to show.
    """
    try:
        outcome = execute_step(step, context)
    except ConfigError as exc:
        # What the build made cannot be packed (a file name apk ignores, say):
        # the step failed (exit 1); the input was checked before any step ran.
        # (Loaded once a package was packed: no import on this path.)
        apk_errors = sys.modules.get("pakman.apk.errors")
        if apk_errors is not None and isinstance(exc, apk_errors.PackageInputError):
            return TaskFailed(str(exc))
        return InvalidInput(str(exc))
    except PakmanError as exc:
        return TaskFailed(str(exc))
    except OSError as exc:
        # A full disk, no inodes left, a folder made read-only: the step failed,
        # said in one line (doit would print the traceback).
        return TaskFailed(os_error_text(exc))
    if outcome.provisional:
        # Not done for good: without its manifest (a target) doit runs it next time.
        context.layout.manifest(step.id).unlink(missing_ok=True)
    return {"warnings": list(outcome.warnings), "restored": outcome.restored}


def outputs_intact(layout: Layout, step_id: str, key: str, outputs: tuple[str, ...]) -> bool:
    """doit's check beside the key: the step's outputs are as it left them (see pakman.workspace.journal)."""
    from pakman.workspace.journal import is_done, read_journal

    return is_done(read_journal(layout), step_id, key, outputs)


def task_dicts(project: Project, only: set[str] | None = None) -> Iterator[dict[str, Any]]:
    """One doit task dict per step, dependencies first; `only` limits them to some steps."""
    graph = project.graph
    order = [s for s in graph.order() if only is None or s.id in only]
    for namespace in sorted({step.namespace for step in order}):
        # The group task: `doit pyweb` runs every step of that app.
        what = "the shared repository" if namespace == REPOSITORY else f"app {namespace}"
        yield {"basename": namespace, "name": None, "doc": f"every step of {what}"}
    for step in order:
        keyed = {
            "pakman": __version__,
            "reads": step.reads,
            "upstream": {u: graph[u].key for u in step.upstream},
        }
        yield {
            "basename": step.namespace,
            "name": step.local_name,
            "doc": step.description,
            "actions": [(run_step_action, [step, project.context])],
            "task_dep": [u for u in step.upstream if only is None or u in only],
            "targets": [str(project.layout.manifest(step.id)), *step.outputs],
            "uptodate": [
                config_changed(keyed),
                (outputs_intact, [project.layout, step.id, step.key, step.outputs], {}),
            ],
            "verbosity": 2,
        }


# doit's loader options that take a value; they may come before the command.
_LOADER_OPTIONS_WITH_VALUE = frozenset({"-f", "--file", "-d", "--dir"})


def runs_tasks(argv: Sequence[str]) -> bool:
    """Whether this doit command line runs tasks: `doit`, `doit run ...`, `doit <task>`.

    doit loads the tasks for every command (`doit list`, `info`, `clean`, ...);
    only those that run tasks may ask the remote cache and fill the store.
    The command is found as doit finds it: the first word after the loader's options.
    """
    from doit.doit_cmd import DoitMain

    commands = {command.get_name(): command.execute_tasks for command in DoitMain.DOIT_CMDS}
    words = iter(argv)
    for word in words:
        if word in _LOADER_OPTIONS_WITH_VALUE:
            next(words, None)
        elif not word.startswith("-") and "=" not in word:  # not an option, nor NAME=value
            return bool(commands.get(word, True))  # a task name: `doit run` is implied
    return True


def doit_config(layout: Layout, reporter: Any = None) -> dict[str, Any]:
    """DOIT_CONFIG for a workspace: the sqlite3 database under .pakman/ (created first)."""
    from pakman.doit.reporter import PakmanReporter

    layout.state.mkdir(parents=True, exist_ok=True)
    _drop_if_damaged(layout.state / "doit.sqlite3")
    return {
        "dep_file": str(layout.state / "doit.sqlite3"),
        "backend": "sqlite3",
        "reporter": reporter or PakmanReporter,
        "verbosity": 2,
    }


def _drop_if_damaged(database: Path) -> None:
    """doit's database is a cache of what pakman's journal also knows: start a new one if damaged."""
    import sqlite3

    if not database.is_file() or database.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(database)) as connection:
            connection.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        print(f"warning: {database} is damaged ({exc}); starting a new one", file=sys.stderr)
        database.unlink()


def load_doit_tasks(project: Project, only: set[str] | None = None) -> list[Task]:
    """The Task objects doit runs, named exactly as plain `doit` names them."""
    tasks: list[Task] = generate_tasks("pakman", task_dicts(project, only))
    return tasks


class PakmanLoader(TaskLoader2):  # type: ignore[misc]
    """Hands doit a prepared project's tasks (for `pakman build` and friends)."""

    def __init__(
        self, project: Project, reporter: Any = None, only: set[str] | None = None
    ) -> None:
        super().__init__()
        self.project = project
        self.reporter = reporter
        self.only = only

    def setup(self, opt_values: dict[str, Any]) -> None:
        pass

    def load_doit_config(self) -> dict[str, Any]:
        return doit_config(self.project.layout, self.reporter)

    def load_tasks(self, cmd: Any, pos_args: list[str]) -> list[Task]:
        return load_doit_tasks(self.project, self.only)


class SqliteRecord(SqliteDB):  # type: ignore[misc]
    """doit's sqlite3 backend; a database it cannot write (a full disk) is one line, not a traceback."""

    def __init__(self, name: str, codec: Any, **kwargs: Any) -> None:
        import sqlite3

        from doit.dependency import DatabaseException

        try:
            super().__init__(name, codec, **kwargs)
        except (sqlite3.Error, DatabaseException) as exc:
            cause = exc.__context__ if isinstance(exc, DatabaseException) else exc
            raise InvalidTask(f"cannot open {name}: {cause or exc}") from None

    def dump(self) -> None:
        import sqlite3

        try:
            super().dump()
        except sqlite3.Error as exc:
            self._conn.close()
            # doit prints this one as `ERROR: <message>`; the build exits 1.
            raise InvalidTask(
                f"cannot record what ran in {self.name}: {exc}; the next build runs it again"
            ) from None


def _outputs_on_demand(project: Project, stale: set[str]) -> tuple[list[str], list[str]]:
    """Put in place the parked outputs the steps about to run need; park the build roots
    no such step needs. Returns (steps put in place, roots left unmade); changes `stale`.

    A parked step (see journal.parked_line) needed by a step about to run is
    restored from the local store in place, or, without a usable entry,
    handed to doit to run (and so on up its own upstream). A build root is
    a tool, not a product: when no step about to run needs it (its app's
    build and package came from the remote cache, say), making it would
    cost a fetch and an install for nothing; it is parked instead.
    """
    from pakman.steps import restore_step
    from pakman.workspace.journal import is_parked, parked_line, read_journal

    graph = project.graph
    layout = project.layout
    journal = read_journal(layout)
    placed: list[str] = []
    lines: list[str] = []
    looked: set[str] = set()
    todo = sorted(stale)
    while todo:
        for upstream in graph[todo.pop()].upstream:
            step = graph[upstream]
            if upstream in stale or upstream in looked:
                continue
            looked.add(upstream)
            if not is_parked(journal, upstream, step.key):
                continue
            # A root's record is only good with its root: made again, not restored.
            line = None if step.stage == "buildroot" else restore_step(step, layout)
            if line is None:
                stale.add(upstream)
                todo.append(upstream)
            else:
                placed.append(upstream)
                lines.append(line)
    needed = {u for step_id in stale for u in graph[step_id].upstream}
    unmade = sorted(s for s in stale - needed if graph[s].stage == "buildroot")
    stale.difference_update(unmade)
    for step_id in unmade:
        for output in graph[step_id].outputs:  # an older root's record: parked means missing
            with contextlib.suppress(FileNotFoundError):
                os.unlink(output)
    lines += [parked_line(step_id, graph[step_id].key) for step_id in unmade]
    if lines:
        with (layout.state / "journal").open("a", encoding="utf-8") as journal_file:
            journal_file.write("".join(lines))
    return placed, unmade


def _stale(project: Project, always: bool = False) -> set[str]:
    """The steps to run: all with `always`, else those the journal does not say are done.

    Summaries stand for steps found done while the project was prepared.
    """
    from pakman.workspace.journal import is_done, read_journal

    journal = read_journal(project.layout)
    return {
        s.id
        for s in project.graph.order()
        if always or (s.complete and not is_done(journal, s.id, s.key, s.outputs))
    }


def _summarised(project: Project, step_ids: set[str]) -> bool:
    return any(not project.graph[s].complete for s in step_ids)


def _in_full(project: Project) -> Project:
    """The project again, every app prepared in full (none in summary)."""
    from pakman.project import load_project

    return load_project(project.settings)


def _side_by_side(project: Project, stale: set[str]) -> bool:
    """Whether -j may run some of these steps at once: two or more of the apps' are to run.

    Else only the repository's steps are left, or one app step before them,
    all one after the other (after a restore from the remote cache, say: the
    index and its signature); worker processes would only add their start-up.
    """
    graph = project.graph
    return sum(1 for s in stale if graph[s].namespace != REPOSITORY) > 1


def run_build(
    project: Project,
    *,
    jobs: int = 1,
    json_events: bool = False,
    wait: bool = True,
    always: bool = False,
    out: IO[str] | None = None,
) -> tuple[int, Any]:
    """Run the project's tasks with doit; returns (exit code, the reporter).

    Steps whose key is the one they last succeeded with (the journal) and
    whose outputs exist are not handed to doit at all; when none is left,
    doit is not even started.
    """
    from pakman.doit.reporter import PakmanReporter
    from pakman.workspace.journal import compact_journal

    out = out or sys.stdout
    layout = project.layout
    reporter = PakmanReporter(
        out,
        json_events=json_events,
        # A shard writes no repository (pakman.compile.shard).
        repository="" if project.shard else layout.relative(layout.repo),
        shard=str(project.shard or ""),
        shard_apps=project.shard_apps,
    )
    with run_lock(layout, wait=wait, out=sys.stderr):
        stale = _stale(project, always)
        if always and _summarised(project, stale):
            project = _in_full(project)  # every step is to run
            stale = _stale(project, always)
        if always:
            # Every step really runs: nothing is restored from the store.
            from dataclasses import replace

            project = replace(project, context=replace(project.context, use_store=False))
        remote = None
        restored: dict[str, bool] = {}  # step -> in place, for those pakman restored itself
        if project.settings.remote_cache:
            from pakman.doit.remote import start_remote

            # What the remote cache sent is done (in place, or parked): not for doit.
            remote, restored = start_remote(project, stale, always, restore=True)
            stale.difference_update(restored)
        unmade: list[str] = []
        if not always:
            placed, unmade = _outputs_on_demand(project, stale)
            if _summarised(project, stale):
                # A parked step of an app prepared in summary has to run (its entry is
                # gone from the store): prepare every app in full, and look again.
                project = _in_full(project)
                stale = _stale(project) - restored.keys()
                more, unmade = _outputs_on_demand(project, stale)
                placed += more
            restored.update(dict.fromkeys(placed, True))
        steps = project.graph.order()
        done = stale.union(restored, unmade)
        reporter.up_to_date_without_doit([s.id for s in steps if s.id not in done])
        reporter.restored_without_doit([(s.id, restored[s.id]) for s in steps if s.id in restored])
        reporter.not_needed(unmade)
        code = 0
        if stale:
            from doit.doit_cmd import DoitMain

            # --continue: an app that fails does not stop the others (like make -k);
            # the build still fails, and every app's problems show in one run.
            args = ["run", "--continue"]
            if jobs > 1 and _side_by_side(project, stale):
                args += ["-n", str(jobs), "-P", "process"]
            if always:
                args.append("--always-execute")
            loader = PakmanLoader(project, reporter, only=stale)
            # doit's sqlite3 backend, with its errors (a full disk) said in one line.
            backend = {"BACKEND": {"sqlite3": "pakman.doit.tasks:SqliteRecord"}}
            code = DoitMain(loader, config_filenames=(), extra_config=backend).run(args)
        else:
            reporter.complete_run()
        if remote is not None:
            remote.after()
        if code == 0 and not reporter.failed:
            compact_journal(layout)
    if reporter.invalid_input:
        return 3, reporter
    return (1 if code else 0), reporter
