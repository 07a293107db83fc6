"""Finding apps: one file, one app folder, or every instellar.yml under a folder."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pakman.errors import ConfigError

CONFIG_NAME = "instellar.yml"
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


def find_configs(paths: Iterable[str | Path]) -> list[Path]:
    """The instellar.yml files named by `paths`, in a stable order, without repeats.

    A file is taken as it is; a folder with an instellar.yml is one app; any
    other folder is searched. Apps do not nest: the search does not descend
    into an app's own folder.
    """
    found: dict[Path, None] = {}
    missing: list[str] = []
    for given in paths:
        path = Path(given)
        if path.is_file():
            found[path] = None
        elif (path / CONFIG_NAME).is_file():
            found[path / CONFIG_NAME] = None
        elif path.is_dir():
            configs = _search(path)
            if not configs:
                missing.append(f"{given}: no {CONFIG_NAME} found in this folder or below it")
            found.update(dict.fromkeys(configs))
        else:
            missing.append(f"{given}: no such file or folder")
    if missing:
        raise ConfigError("\n".join(missing))
    return list(found)


def _search(root: Path) -> list[Path]:
    configs: list[Path] = []
    for folder, dirs, files in os.walk(root):
        if CONFIG_NAME in files:
            configs.append(Path(folder) / CONFIG_NAME)
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
    return sorted(configs)
