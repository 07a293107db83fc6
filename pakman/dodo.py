"""Plain `doit` support: a dodo.py of one line runs pakman's tasks.

    # dodo.py
    from pakman.dodo import *  # noqa: F403

builds every app under the folder of dodo.py into `.pakman/repo/`, on the
same dependency database as `pakman build`. `PAKMAN_PATH` (a folder or
colon-separated folders) chooses where to look for apps; the other
`PAKMAN_*` variables match `pakman build`'s options (see the README).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pakman.compile import options
from pakman.compile.options import variables
from pakman.compile.settings import Settings
from pakman.doit.tasks import InvalidSetting, doit_config, runs_tasks, task_dicts
from pakman.errors import PakmanError
from pakman.fastpath.gcpause import loading
from pakman.project import Project, load_project
from pakman.workspace.layout import Layout
from pakman.workspace.lock import hold_lock_until_exit

# The environment variables that stand in for `pakman build`'s options.
VARIABLES = variables()


def settings_from_environment(paths: tuple[str, ...] | None = None) -> Settings:
    """The build's settings from the `PAKMAN_*` variables (see pakman.compile.options)."""
    return options.settings_from_environment(os.environ, paths)


def tasks_for(*paths: str) -> dict[str, Any]:
    """`DOIT_CONFIG` and a task creator for the apps under `paths` (for a repository's dodo.py)."""
    settings = settings_from_environment(paths or None)
    layout = Layout.at(Path(settings.root), Path(settings.repo) if settings.repo else None)

    def task_pakman() -> Iterator[dict[str, Any]]:
        """Build the apps into a signed repository."""
        hold_lock_until_exit(layout)
        try:
            with loading():  # the project lives as long as doit runs (see pakman.fastpath.gcpause)
                project = load_project(settings)
            if settings.remote_cache and runs_tasks(sys.argv[1:]):
                _use_remote_cache(project)
        except PakmanError as exc:
            # Bad input (a setting, an instellar.yml): one line from doit, exit 3, no traceback.
            raise InvalidSetting(str(exc)) from None
        yield from task_dicts(project)

    return {"DOIT_CONFIG": doit_config(layout), "task_pakman": task_pakman}


def _use_remote_cache(project: Project) -> None:
    """As `pakman build` does: fill the store for the steps that will run, upload when doit ends."""
    import atexit

    from pakman.doit.remote import start_remote
    from pakman.workspace.journal import is_done, read_journal

    journal = read_journal(project.layout)
    stale = [s.id for s in project.graph.order() if not is_done(journal, s.id, s.key, s.outputs)]
    remote, _ = start_remote(project, stale)
    if remote is not None:
        atexit.register(remote.after)


_default = tasks_for()
DOIT_CONFIG: dict[str, Any] = _default["DOIT_CONFIG"]
task_pakman = _default["task_pakman"]

__all__ = ["DOIT_CONFIG", "task_pakman"]
