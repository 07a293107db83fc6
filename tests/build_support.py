"""Helpers for tests that run whole builds: a fast test key, a workspace, counting steps."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pakman.apk import generate_key
from pakman.cli import main
from support import EXAMPLES

BUILT_EXAMPLES = ("greet", "heartbeat", "pyweb", "static-site")


@dataclass
class KeyPair:
    private: Path
    public: Path


def make_key(folder: Path) -> KeyPair:
    """A 2048-bit key: fast to make, as good as a 4096-bit one for tests."""
    private, public = generate_key(folder, "test", bits=2048, now=0x6B000000)
    return KeyPair(private, public)


def make_workspace(root: Path, names: Sequence[str] = BUILT_EXAMPLES) -> Path:
    """A workspace with copies of some examples under apps/."""
    for name in names:
        shutil.copytree(EXAMPLES / name, root / "apps" / name)
    return root


def write_apps(root: Path, names: Sequence[str], log: Path | None = None) -> Path:
    """Small apps under root/apps: each packs one file its build writes.

    alpha needs beta's package at run time. With `log`, each build command
    first notes its app's name there.
    """
    for name in names:
        folder = root / "apps" / name
        folder.mkdir(parents=True)
        (folder / "data.txt").write_text(f"{name}\n")
        local = "    - beta\n" if name == "alpha" else ""
        noted = f"    echo {name} >> {log}\n" if log is not None else ""
        (folder / "instellar.yml").write_text(
            f"dependencies:\n  runtime:\n    - busybox\n{local}"
            "stack: alpine/3.22\ntype: custom\narchitectures:\n  - noarch\n"
            f"build:\n  command: |\n{noted}    cp data.txt out.txt\n"
            "package: |\n"
            f'  mkdir -p "$pkgdir"/usr/share/{name}\n'
            f'  cp "$srcdir"/out.txt "$pkgdir"/usr/share/{name}/out.txt\n'
        )
    return root


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@dataclass
class BuildRun:
    code: int
    events: list[dict[str, object]]
    stderr: str

    @property
    def ran(self) -> set[str]:
        return {str(e["step"]) for e in self.events if e["event"] == "success"}

    @property
    def failed(self) -> set[str]:
        return {str(e["step"]) for e in self.events if e["event"] == "failure"}

    def messages(self) -> str:
        return "\n".join(str(e.get("message", "")) for e in self.events) + self.stderr


def build(workspace: Path, key: KeyPair, *args: str, paths: Sequence[str] = ("apps",)) -> BuildRun:
    """`pakman build --json` in `workspace`; the JSON events and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with (
        working_directory(workspace),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main(["build", *paths, "--offline", "--key", str(key.private), "--json", *args])
    events = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    return BuildRun(code, events, err.getvalue())


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for running pakman in a subprocess from this checkout."""
    from support import ROOT

    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}:{path}" if path else str(ROOT), **extra}


@dataclass
class Watching:
    """A `pakman watch -v` running in a workspace, and what it said."""

    process: subprocess.Popen[bytes]
    log: Path

    def said(self) -> list[str]:
        return self.log.read_text().splitlines()

    def answers(self) -> list[str]:
        """What it told each build: "N of M apps changed (...)" or "every app to check: why"."""
        return [
            line.removeprefix("pakman watch: ")
            for line in self.said()
            if " apps changed" in line or "every app to check" in line
        ]


@contextlib.contextmanager
def watching(workspace: Path, *args: str) -> Iterator[Watching]:
    """`pakman watch -v` in `workspace` until the block ends; it must then stop cleanly."""
    import sys
    import time

    # In .pakman/, which no app's source and no search for apps includes.
    log = workspace / ".pakman/watch-test.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pakman", "watch", "-v", *args],
            cwd=workspace,
            env=subprocess_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    watcher = Watching(process, log)
    try:
        deadline = time.monotonic() + 30
        while not any("(Ctrl-C stops)" in line for line in watcher.said()):
            assert process.poll() is None, f"pakman watch ended: {watcher.said()}"
            assert time.monotonic() < deadline, f"pakman watch did not start: {watcher.said()}"
            time.sleep(0.02)
        yield watcher
    finally:
        process.terminate()
        code = process.wait(timeout=30)
    assert code == 0, watcher.said()
    assert not (workspace / ".pakman/watch.sock").exists()
