"""CI shards: `--shard I/N` builds the apps whose stable hash falls in shard I of N.

An app's shard comes from the sha256 of its package name (never Python's
`hash`, which differs between processes), so every machine of a CI matrix
agrees on it, and shards 1..N together hold every app exactly once.

No step of one app depends on another app's steps (pakman.compile.graph's
`compile_app`: an app's dependencies on packages other apps make are only
names in its `local` read, resolved from nothing the other app builds), so
a shard is exactly its apps; it adds no app for a dependency. The shared
repository steps (index, sign) read every app's packages: a shard runs none
of them. A shard is in no step's key, so a later full build finds the
shard's steps done.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pakman.errors import UsageError

_SHARD = re.compile(r"\s*([0-9]{1,6})\s*/\s*([0-9]{1,6})\s*\Z")


@dataclass(frozen=True)
class Shard:
    """Shard `index` (1-based) of `count`."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, name: str) -> bool:
        """Whether the app with this package name is in this shard."""
        return shard_of(name, self.count) == self.index


def parse_shard(text: str) -> Shard:
    """`I/N` with 1 <= I <= N; UsageError (exit 2) for anything else."""
    found = _SHARD.match(text) if text.isascii() else None
    if found is None:
        raise UsageError(
            f"--shard / PAKMAN_SHARD {text!r}: give I/N, shard I of N (1 <= I <= N), e.g. 2/3"
        )
    index, count = int(found.group(1)), int(found.group(2))
    if count < 1 or not 1 <= index <= count:
        raise UsageError(
            f"--shard / PAKMAN_SHARD {text!r}: the shard I of I/N must be from 1 to N, "
            f"and N at least 1 (e.g. 1/{max(count, 1)})"
        )
    return Shard(index, count)


def shard_of(name: str, count: int) -> int:
    """The shard (1..count) of the app with this package name."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def partition(names: Iterable[str], count: int) -> dict[int, list[str]]:
    """The apps of each shard 1..count, by package name (sorted)."""
    shards: dict[int, list[str]] = {i: [] for i in range(1, count + 1)}
    for name in sorted(names):
        shards[shard_of(name, count)].append(name)
    return shards
