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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pakman.layout import Layout
from pakman.lock import hold_lock_until_exit
from pakman.memory import loading
from pakman.project import load_project
from pakman.settings import DEFAULT_BUILD_ON, Settings
from pakman.tasks import doit_config, task_dicts

# The environment variables that stand in for `pakman build`'s options.
VARIABLES = {
    "PAKMAN_PATH": "PATH... (folders, `:`-separated; default the folder of dodo.py)",
    "PAKMAN_ONLY": "--only (app names, `,`-separated)",
    "PAKMAN_STRICT": "--strict (1)",
    "PAKMAN_PACKAGE_NAME": "--package-name",
    "PAKMAN_ORGANIZATION": "--organization",
    "PAKMAN_PACKAGE_VERSION": "--package-version",
    "PAKMAN_RELEASE": "--release",
    "PAKMAN_URL": "--url",
    "PAKMAN_REPO": "--repo",
    "PAKMAN_KEY": "--key",
    "PAKMAN_MIRROR": "--mirror",
    "PAKMAN_OFFLINE": "--offline (1)",
    "PAKMAN_REQUIRE_DEPS": "--require-deps (1)",
    "PAKMAN_ALPINE_KEYS": "--alpine-keys",
    "PAKMAN_BUILD_BASE": "--build-base-packages",
    "PAKMAN_BUILD_ON": "--build-on (alpine or host)",
    "PAKMAN_NETWORK": "--network (host or none)",
    "PAKMAN_VERBOSE": "-v (1)",
}


def settings_from_environment(paths: tuple[str, ...] | None = None) -> Settings:
    """The build's settings from the `PAKMAN_*` variables (see VARIABLES)."""
    env = os.environ

    def text(name: str) -> str | None:
        return env.get(name) or None

    def flag(name: str) -> bool:
        return env.get(name, "").strip().lower() not in ("", "0", "false", "no")

    return Settings(
        paths=paths or tuple(env.get("PAKMAN_PATH", ".").split(":")),
        only=tuple(n.strip() for n in env.get("PAKMAN_ONLY", "").split(",") if n.strip()),
        strict=flag("PAKMAN_STRICT"),
        name=text("PAKMAN_PACKAGE_NAME"),
        organization=text("PAKMAN_ORGANIZATION"),
        version=text("PAKMAN_PACKAGE_VERSION"),
        release=text("PAKMAN_RELEASE"),
        url=text("PAKMAN_URL"),
        repo=text("PAKMAN_REPO"),
        key_file=text("PAKMAN_KEY"),
        mirror=text("PAKMAN_MIRROR"),
        offline=flag("PAKMAN_OFFLINE"),
        require_deps=flag("PAKMAN_REQUIRE_DEPS"),
        verbose=flag("PAKMAN_VERBOSE"),
        alpine_keys=text("PAKMAN_ALPINE_KEYS"),
        build_base=env.get("PAKMAN_BUILD_BASE"),  # set but empty: no base set
        build_on=text("PAKMAN_BUILD_ON") or DEFAULT_BUILD_ON,
        network=text("PAKMAN_NETWORK") or "host",
    )


def tasks_for(*paths: str) -> dict[str, Any]:
    """`DOIT_CONFIG` and a task creator for the apps under `paths` (for a repository's dodo.py)."""
    settings = settings_from_environment(paths or None)
    layout = Layout.at(Path(settings.root), Path(settings.repo) if settings.repo else None)

    def task_pakman() -> Iterator[dict[str, Any]]:
        """Build the apps into a signed repository."""
        hold_lock_until_exit(layout)
        with loading():  # the project lives as long as doit runs (see pakman.memory)
            project = load_project(settings)
        yield from task_dicts(project)

    return {"DOIT_CONFIG": doit_config(layout), "task_pakman": task_pakman}


_default = tasks_for()
DOIT_CONFIG: dict[str, Any] = _default["DOIT_CONFIG"]
task_pakman = _default["task_pakman"]

__all__ = ["DOIT_CONFIG", "task_pakman"]
