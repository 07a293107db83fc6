"""Finding apps: one file, one app folder, or every instellar.yml under a folder."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from pathlib import Path

from pakman.errors import ConfigError
from pakman.workspace.fingerprint import Watched, read_ignore_file, watch

CONFIG_NAME = "instellar.yml"
IGNORE_FILE = ".pakmanignore"
# Folders never searched: build outputs, caches, VCS data, dependency trees.
SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".pakman",
        ".apk",
        "node_modules",
        "__pycache__",
        ".venv",
        "venv",
        ".tox",
    }
)


def find_configs(
    paths: Iterable[str | Path], *, skip_ignored: bool = False, seen: list[Watched] | None = None
) -> list[Path]:
    """The instellar.yml files named by `paths`, in a stable order, without repeats.

    A file is taken as it is; a folder with an instellar.yml is one app; any
    other folder is searched. Apps do not nest: the search does not descend
    into an app's own folder. With `skip_ignored`, a folder's `.pakmanignore`
    (one glob a line) names subfolders the search leaves out (`pakman build`
    uses this; `pakman check` still checks them). `seen` collects the folders
    searched (their times change when an app comes or goes) and ignore files.
    """
    found: dict[Path, None] = {}
    missing: list[str] = []
    for given in paths:
        path = Path(given)
        if seen is not None:
            seen.append(watch(path))
        if path.is_file():
            found[path] = None
        elif (path / CONFIG_NAME).is_file():
            found[path / CONFIG_NAME] = None
        elif path.is_dir():
            configs = _search(path, skip_ignored, seen)
            if not configs:
                missing.append(f"{given}: no {CONFIG_NAME} found in this folder or below it")
            found.update(dict.fromkeys(configs))
        else:
            missing.append(f"{given}: no such file or folder")
    if missing:
        raise ConfigError("\n".join(missing))
    return list(found)


def _search(root: Path, skip_ignored: bool, seen: list[Watched] | None) -> list[Path]:
    configs: list[Path] = []
    for folder, dirs, files in os.walk(root):
        if CONFIG_NAME in files:
            configs.append(Path(folder) / CONFIG_NAME)
            dirs[:] = []
            continue
        if seen is not None:
            seen.append(watch(folder))
            seen.append(watch(Path(folder) / IGNORE_FILE))
        ignored = _ignored(Path(folder)) if skip_ignored and IGNORE_FILE in files else []
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in SKIPPED_DIRS
            and not d.startswith(".")
            and not any(fnmatch.fnmatchcase(d, pattern) for pattern in ignored)
        )
    return sorted(configs)


def _ignored(folder: Path) -> list[str]:
    lines = read_ignore_file(folder / IGNORE_FILE, folder)
    return [
        line.strip().strip("/")
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    ]
