"""What pakman's comments and docstrings may not say: timings, which go stale as the code changes.

The reasoning stays ("pausing the collector saves a share of a one-file
build"); the figure ("about 80 ms") belongs to the benchmarks, which measure
it again each time.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pakman

PACKAGE = Path(pakman.__file__).parent

TIMING = re.compile(
    r"\d[\d,.]*\s?(ms|µs|us|ns|milliseconds?|microseconds?|seconds?|minutes?)\b"
    r"|\btimes\s+(faster|slower)\b"
    r"|\b(tenth|hundredth|quarter|half) of a second\b"
    r"|\bin a (millisecond|microsecond)\b",
    re.IGNORECASE,
)


def prose(path: Path) -> Iterator[tuple[int, str]]:
    """The comments and docstrings (triple-quoted strings) of a module, with their line."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    for token in tokens:
        opening = token.string.lstrip("rbuRBU")[:3]
        docstring = token.type == tokenize.STRING and opening in ('"""', "'''")
        if token.type == tokenize.COMMENT or docstring:
            yield token.start[0], token.string


def timings(folder: Path) -> list[str]:
    return [
        f"{path.relative_to(folder.parent)}:{line}: {match.group(0)!r}"
        for path in sorted(folder.rglob("*.py"))
        for line, text in prose(path)
        for match in TIMING.finditer(text)
    ]


def test_no_comment_or_docstring_states_a_timing() -> None:
    assert timings(PACKAGE) == []


def test_the_check_finds_a_timing(tmp_path: Path) -> None:
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "m.py").write_text(
        '"""Loads in about 40 ms."""\n'
        "x = 1  # four times faster than before\n"
        'y = f"waited {3} s"  # a message, not a comment\n'
        "TIMEOUT = 20.0  # seconds to wait\n"
    )
    assert timings(folder) == ["pkg/m.py:1: '40 ms'", "pkg/m.py:2: 'times faster'"]
