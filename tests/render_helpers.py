"""Helpers for the render and staging tests: examples with a fixed identity, stubs, trees."""

from __future__ import annotations

import functools
import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from pakman.config.identity import resolve_identity
from pakman.config.model import AppConfig, Identity
from pakman.config.schema import load_app
from support import EXAMPLES

# The older and smaller shapes the original builds from (see tests/shapes/README.md).
SHAPES = Path(__file__).resolve().parent / "shapes"
SHAPE_NAMES = sorted(p.parent.name for p in SHAPES.glob("*/instellar.yml"))
# What the render and staging tests render: every example and every shape.
EXAMPLE_NAMES = sorted(p.parent.name for p in EXAMPLES.glob("*/instellar.yml")) + SHAPE_NAMES


@functools.cache
def example(name: str) -> tuple[AppConfig, Identity]:
    """An example app (or a shape) and the fixed identity its goldens are rendered with."""
    folder = SHAPES / name if name in SHAPE_NAMES else EXAMPLES / name
    app, _ = load_app(folder)
    return app, fixed_identity(app)


def fixed_identity(app: AppConfig) -> Identity:
    """organization upmaru, version 1.2.3, release 4: nothing from git or the environment."""
    named = resolve_identity(app, organization="upmaru", version="1.2.3", release=4, env={})
    return Identity("upmaru", named.name, "1.2.3", 4, f"https://github.com/upmaru/{named.name}")


def need(*tools: str) -> None:
    """Skip the test, saying why, when a tool is not installed (scripts/test installs them)."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (./scripts/test installs it)")


# A stand-in program: appends its working folder, its path and its arguments
# to $RECORD, each ending in a NUL, then a record separator.
RECORDER = """#!/bin/sh
{ printf '%s\\0' "$PWD" "$0" "$@"; printf '\\036\\n'; } >> "$RECORD"
"""


def write_stub(path: Path, text: str = RECORDER) -> Path:
    """An executable file at `path` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return path


def read_records(record: Path) -> list[dict[str, object]]:
    """What the stand-ins recorded: {"cwd": ..., "argv": [...]} per call, in order."""
    if not record.exists():
        return []
    calls = []
    for chunk in record.read_bytes().decode().split("\x1e\n")[:-1]:
        cwd, *argv = chunk.split("\0")[:-1]
        calls.append({"cwd": cwd, "argv": argv})
    return calls


_SAFE_ROOT = re.compile(r"[A-Za-z0-9_/.-]+\Z")


def relocate(text: str, root: Path) -> str:
    """Move a script's /var/lib and /var/log paths under `root`, to run it without installing.

    `root` holds only characters that need no quoting, so inserting it in
    front of `/var/` changes no word boundary and no quoting of the script.
    """
    assert _SAFE_ROOT.match(str(root)), root
    return text.replace("/var/lib/", f"{root}/var/lib/").replace("/var/log/", f"{root}/var/log/")


def tree(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """Every entry under `root`: relative path -> (type, mode, content or link target)."""
    entries: dict[str, tuple[str, int, bytes | str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            relative = path.relative_to(root).as_posix()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                entries[relative] = ("link", 0, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entries[relative] = ("dir", mode, b"")
            else:
                entries[relative] = ("file", mode, path.read_bytes())
    return entries
