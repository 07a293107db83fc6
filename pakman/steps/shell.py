"""Running the user's shell (build.command, a custom package body) with a log."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pakman.compile.settings import SECRET_VARIABLES
from pakman.errors import StepFailed

if TYPE_CHECKING:
    from pakman.sandbox import Sandbox

TAIL_LINES = 25
UMASK = 0o022  # abuild's


def shell_variables(values: Mapping[str, str]) -> str:
    """Shell assignments for abuild's variables, each value quoted."""
    return "".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items())


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a shell and what it started: SIGTERM to its group, SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# Variables that point git at a repository: pakman run from a git hook has them
# set, and a build's git would then change the workspace's repository.
_GIT_LOCATION = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_COMMON_DIR",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
    }
)


def _without_secrets(environment: Mapping[str, str]) -> dict[str, str]:
    """The environment minus the signing key and its passphrase (the app's shell never sees
    them), and minus the variables that point git at a repository."""
    return {
        k: v for k, v in environment.items() if k not in SECRET_VARIABLES and k not in _GIT_LOCATION
    }


def run_shell(
    script: str,
    *,
    cwd: Path,
    log: Path,
    what: str,
    verbose: bool = False,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run `script` with `sh -e` and umask 022 (as abuild does); output goes to `log`, and live to stderr when verbose.

    A non-zero exit raises StepFailed with the status and the tail of the log.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["sh", "-e", "-c", script],
            cwd=cwd,
            env={**_without_secrets(os.environ), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to stop it whole
            umask=UMASK,  # abuild's, whatever the caller's: the package's modes do not vary
        )
        assert process.stdout is not None
        try:
            for line in process.stdout:
                out.write(line)
                tail.append(line.decode("utf-8", "replace").rstrip("\n"))
                if verbose:
                    sys.stderr.write(line.decode("utf-8", "replace"))
            status = process.wait()
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM) or failing: the shell and everything
            # it started (its own process group) stop with us.
            _stop_group(process)
            raise
    if status != 0:
        shown = "\n".join(f"  | {line}" for line in tail) or "  | (no output)"
        raise StepFailed(f"{what} failed with exit status {status}; last lines of {log}:\n{shown}")


HOST_WARNING = (
    "{what} ran on the host (--build-on host): its binaries are linked against the host's "
    "libraries, not the stack's Alpine (--build-on alpine builds in it)"
)


def run_sandboxed(
    script: str,
    sandbox: Sandbox,
    *,
    log: Path,
    what: str,
    verbose: bool = False,
) -> None:
    """Run `script` with `sh -e` in the sandbox; output to `log` (live to stderr when verbose).

    A non-zero exit raises StepFailed with the status and the tail of the log;
    a machine that cannot run the sandbox, StepFailed with bwrap's reason.
    """
    from pakman.sandbox import SandboxError

    log.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    read_end, write_end = os.pipe()

    def copy(out: Any) -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                out.write(line)
                tail.append(line.decode("utf-8", "replace").rstrip("\n"))
                if verbose:
                    sys.stderr.write(line.decode("utf-8", "replace"))

    with log.open("wb") as out:
        reader = threading.Thread(target=copy, args=(out,), daemon=True)
        reader.start()
        try:
            try:
                status = sandbox.run(
                    ["/bin/sh", "-e", "-c", script], stdout=write_end, stderr=write_end
                )
            finally:
                os.close(write_end)
                reader.join()
        except SandboxError as exc:
            raise StepFailed(f"{what}: {exc}") from None
    if status != 0:
        shown = "\n".join(f"  | {line}" for line in tail) or "  | (no output)"
        raise StepFailed(f"{what} failed with exit status {status}; last lines of {log}:\n{shown}")
