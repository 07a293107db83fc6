"""Paths and helpers the tests share (imported as `support`; conftest.py holds fixtures)."""

from __future__ import annotations

import os
import shutil
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden"


def updating_goldens(config: pytest.Config) -> bool:
    return (
        bool(config.getoption("--update-goldens")) or os.environ.get("PAKMAN_UPDATE_GOLDENS") == "1"
    )


def example_configs() -> list[Path]:
    return sorted(EXAMPLES.glob("*/instellar.yml"))


# Builds outside git are dated by their workspace's first build; the suite
# dates every build alike, so that builds in different folders compare byte
# for byte (tests of the default unset it).
TEST_EPOCH = "1700000000"


def copy_examples(workspace: Path) -> Path:
    """`examples/` (with its .pakmanignore, which leaves rails-seed out of builds) in `workspace`."""
    target = workspace / "examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns(".pakman", ".apk"))
    return target


def changes_a_build(name: str) -> bool:
    """A variable that changes names, versions, keys or mirrors (tests remove those).

    PAKMAN_BUILD_ON stays: conftest sets it to host for the suite (see there).
    """
    if name == "PAKMAN_BUILD_ON":
        return False
    return name.startswith(("GITHUB_", "PAKMAN_", "ABUILD_")) or name == "SOURCE_DATE_EPOCH"


def subprocess_env() -> dict[str, str]:
    """The environment for a pakman run in a subprocess: this checkout importable, and none
    of the variables that change names, versions, keys or mirrors."""
    env = {k: v for k, v in os.environ.items() if not changes_a_build(k)}
    env["SOURCE_DATE_EPOCH"] = TEST_EPOCH  # the suite's, not the developer's (see conftest)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


PAKMAN = (sys.executable, "-m", "pakman")


def gzip_members(data: bytes) -> list[bytes]:
    """The compressed bytes of each gzip member of a file."""
    members = []
    while data:
        decompressor = zlib.decompressobj(wbits=31)
        decompressor.decompress(data)
        size = len(data) - len(decompressor.unused_data)
        members.append(data[:size])
        data = data[size:]
    return members
