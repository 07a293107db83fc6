"""Running the user's shell (build.command, a custom package body) with a log."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from pakman.errors import StepFailed

TAIL_LINES = 25


def shell_variables(values: Mapping[str, str]) -> str:
    """Shell assignments for abuild's variables, each value quoted."""
    return "".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items())


def run_shell(
    script: str,
    *,
    cwd: Path,
    log: Path,
    what: str,
    verbose: bool = False,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run `script` with `sh -e` (as abuild does); output goes to `log`, and live to stderr when verbose.

    A non-zero exit raises StepFailed with the status and the tail of the log.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["sh", "-e", "-c", script],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            tail.append(line.decode("utf-8", "replace").rstrip("\n"))
            if verbose:
                sys.stderr.write(line.decode("utf-8", "replace"))
        status = process.wait()
    if status != 0:
        shown = "\n".join(f"  | {line}" for line in tail) or "  | (no output)"
        raise StepFailed(f"{what} failed with exit status {status}; last lines of {log}:\n{shown}")
