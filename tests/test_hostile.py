"""A hostile checkout: what the error corpus (tests/errors/) cannot express.

The corpus holds most cases as data; these need a umask, a full file system
or a look at files a build leaves behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pakman.cli import main
from support import changes_a_build

BASE_APP = Path(__file__).resolve().parent / "errors" / "key-dev-zero" / "tree"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A workspace holding one small app (`app/`), as the current folder."""
    for name in list(os.environ):
        if changes_a_build(name):
            monkeypatch.delenv(name)
    ws = tmp_path / "ws"
    shutil.copytree(BASE_APP, ws, symlinks=True)
    monkeypatch.chdir(ws)
    yield ws


def test_the_workspace_keys_folder_is_private_whatever_the_umask(workspace: Path) -> None:
    previous = os.umask(0)
    try:
        assert main(["build", "--offline"]) == 0
    finally:
        os.umask(previous)
    assert (workspace / ".pakman" / "keys").stat().st_mode & 0o777 == 0o700


class _Payload:
    """Unpickling this creates a file: what a crafted cache could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_cache_files_from_elsewhere_run_no_code(workspace: Path, tmp_path: Path) -> None:
    import pickle

    assert main(["build", "--offline"]) == 0
    marker = tmp_path / "code-ran"
    payload = pickle.dumps(_Payload(marker))
    cache = workspace / ".pakman" / "cache"
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert len(files) >= 4  # the plan, the repository's steps, an app's record, a stat cache
    for path in files:
        path.write_bytes(payload)
        # Also where pickles were kept: nothing reads them any more.
        path.with_suffix(".pickle").write_bytes(payload)
    (cache / "project" / "plan.marshal").write_bytes(payload)
    assert main(["build", "--offline"]) == 0
    assert not marker.exists()
    assert main(["graph", "--format", "json"]) == 0  # reads every app's record in full
    assert not marker.exists()


def test_cache_files_are_data(workspace: Path) -> None:
    assert main(["build", "--offline"]) == 0
    for path in (workspace / ".pakman" / "cache").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.name == "epoch":  # the first build's time: ASCII digits, read as such
                assert data.rstrip(b"\n").isdigit(), data
                continue
            assert data[:1] in (b"{", b"[") or data[:4] == b"PKW1", path


def test_a_record_read_back_is_the_record_written(workspace: Path) -> None:
    from pakman.cli import build_parser
    from pakman.cli.options import settings_from_args
    from pakman.compile.graph import Step
    from pakman.compile.project import _AppRecord
    from pakman.fastpath.snapshot import _with_shared, _without_shared
    from pakman.project import load_project
    from pakman.workspace import datafile

    args = build_parser().parse_args(["build", "--offline"])
    project = load_project(settings_from_args(args), use_snapshot=False)
    steps = [s for s in project.graph.order() if s.app is not None]
    (app,) = project.apps
    tree = next(s.source for s in steps if s.source is not None)
    record = _AppRecord(Path("app/instellar.yml"), ("", b""), app, tree, [], steps)
    kept = _without_shared(record)
    assert kept is not None
    back = _with_shared(datafile.loads(datafile.dumps(kept), _AppRecord))
    assert back.app == app
    assert back.steps == steps
    assert [s.source for s in back.steps] == [s.source for s in steps]
    repository = [s for s in project.graph.order() if s.app is None]
    assert datafile.loads(datafile.dumps(repository), list[Step]) == repository


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"[",
        b"{}",
        b'{"format": 4}',
        b"[1, 2, 3]",
        b"\x80\x05garbage",
        b'"' + b"x" * 100 + b'"',
        b"[" * 100_000,
    ],
)
def test_a_damaged_cache_is_a_miss(workspace: Path, damage: bytes) -> None:
    assert main(["build", "--offline"]) == 0
    for path in (workspace / ".pakman" / "cache").rglob("*"):
        if path.is_file():
            path.write_bytes(damage)
    assert main(["build", "--offline"]) == 0
    assert main(["graph", "--format", "json"]) == 0


def test_a_plan_naming_outputs_outside_the_workspace_is_not_used(workspace: Path) -> None:
    import json

    from pakman.fastpath.plan import PLAN_FILE, load_plan
    from pakman.workspace.layout import Layout

    assert main(["build", "--offline"]) == 0
    path = workspace / ".pakman" / "cache" / "project" / PLAN_FILE
    layout = Layout.at(workspace)
    assert load_plan(path, layout)[0] is not None
    plan = json.loads(path.read_bytes())
    plan["apps"][0]["steps"][0][4] = ["/etc/"]
    path.write_text(json.dumps(plan))
    assert load_plan(path, layout)[0] is None
    assert load_plan(path)[0] is not None  # the shape is right: only where it points is not


def test_a_full_disk_in_a_step_is_a_failed_step_in_one_line(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    def full(source: object, target: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(shutil, "copy2", full)  # the build step's copy of the source
    assert main(["build", "--offline"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "FAIL app:build:noarch" in captured.out
    assert "build-noarch/bin/app: No space left on device" in captured.out


def test_a_database_that_cannot_be_written_is_one_line(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    from doit.dependency import SqliteDB

    def full(self: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(SqliteDB, "dump", full)  # what sqlite3 raises on a full disk
    assert main(["build", "--offline"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "database or disk is full; the next build runs it again" in captured.err


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 5 MB tmpfs (root only), unmounted afterwards."""
    import subprocess

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    point = tmp_path / "small"
    point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(point)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_builds_on_a_filling_disk_never_print_a_traceback(
    full_disk: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    signing_key: Path,
) -> None:
    ws = full_disk / "ws"
    shutil.copytree(BASE_APP, ws, symlinks=True)
    (ws / "app" / "bin" / "data").write_bytes(os.urandom(600_000))
    monkeypatch.chdir(ws)
    for name in list(os.environ):
        if changes_a_build(name):
            monkeypatch.delenv(name)
    codes = []
    for free in (0, 50_000, 150_000, 400_000, 800_000, 1_600_000, 3_000_000):
        shutil.rmtree(ws / ".pakman", ignore_errors=True)
        (full_disk / "filler").unlink(missing_ok=True)
        st = os.statvfs(full_disk)
        with contextlib.suppress(OSError), (full_disk / "filler").open("wb") as filler:
            filler.write(bytes(max(0, st.f_bavail * st.f_frsize - free)))
        codes.append(main(["build", "--offline", "--key", str(signing_key)]))
        captured = capsys.readouterr()
        assert "Traceback" not in captured.out + captured.err, free
    assert set(codes) <= {0, 1} and 1 in codes


@pytest.mark.parametrize("name", ["instellar.yml", ".pakmanignore"])
@pytest.mark.parametrize("command", [["check"], ["build", "--offline"]])
def test_a_fifo_where_pakman_reads_a_file_does_not_hang_it(
    workspace: Path, name: str, command: list[str]
) -> None:
    # A tarball checkout can hold a FIFO (or, extracted as root, a device such
    # as /dev/zero): opening or reading it would block, or never end.
    import subprocess
    import sys

    target = workspace / "app" / name
    if name == "instellar.yml":
        target.unlink()
    os.mkfifo(target)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pakman", *command],
            cwd=workspace,
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"pakman {' '.join(command)} hung on a FIFO {name}")
    assert "Traceback" not in run.stderr
    if command == ["check"] and name == ".pakmanignore":  # check reads no .pakmanignore
        assert run.returncode == 0, run.stdout + run.stderr
        return
    assert run.returncode == 3, run.stdout + run.stderr
    assert "not a regular file (a FIFO)" in run.stdout + run.stderr


@pytest.mark.parametrize("name", ["HEAD", "commondir"])
def test_git_files_leading_to_a_device_are_not_read_whole(workspace: Path, name: str) -> None:
    # A checkout from an archive can bring its own .git: a HEAD (or commondir)
    # linked to /dev/zero was read until memory ran out (a MemoryError traceback).
    import resource
    import subprocess
    import sys

    git = workspace / ".git"
    (git / "refs" / "tags").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / name).unlink(missing_ok=True)
    (git / name).symlink_to("/dev/zero")

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    run = subprocess.run(
        [sys.executable, "-m", "pakman", "build", "--offline"],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_memory,
    )
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_git_head_that_is_a_fifo_does_not_stall_a_build(workspace: Path) -> None:
    # git itself blocks on it: each git command waited for its 30 s timeout.
    import subprocess
    import sys
    import time

    git = workspace / ".git"
    (git / "refs" / "tags").mkdir(parents=True)
    os.mkfifo(git / "HEAD")
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pakman", "build", "--offline"],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert time.monotonic() - started < 20
