"""SOURCE_DATE_EPOCH by default: each app's last commit, as abuild dates a build; never before 1980."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from build_support import KeyPair, build, make_key
from support import EXAMPLES

EARLIEST = 315532800  # 1980-01-01
# What the build command saw, and a zip entry dated by it (what shiv writes; before
# 1980 it fails: "ZIP does not support timestamps before 1980").
RECORD_EPOCH = """
echo "$SOURCE_DATE_EPOCH" > bin/epoch
python3 -c 'import os, time, zipfile; zipfile.ZipInfo("x", time.gmtime(int(os.environ["SOURCE_DATE_EPOCH"]))[:6])'
"""


@pytest.fixture
def key(tmp_path: Path) -> KeyPair:
    return make_key(tmp_path / "key")


@pytest.fixture(autouse=True)
def default_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default under test: no SOURCE_DATE_EPOCH; git commits with a fixed author."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    for variable in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(variable, "test")
    for variable in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(variable, "test@example.com")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)


def add_app(workspace: Path, name: str) -> Path:
    """The heartbeat example as apps/<name>, its build command recording its epoch."""
    app = workspace / "apps" / name
    shutil.copytree(EXAMPLES / "heartbeat", app)
    config = app / "instellar.yml"
    text = config.read_text()
    marker = "    chmod 0755 bin/heartbeat\n"
    assert marker in text
    lines = "".join(f"    {line}\n" for line in RECORD_EPOCH.strip().splitlines())
    text = text.replace(marker, marker + lines).replace("  name: heartbeat", f"  name: {name}")
    for word in ("heartbeat-openrc", "add heartbeat", "del heartbeat"):
        text = text.replace(word, word.replace("heartbeat", name))
    config.write_text(text)
    return app


def git(workspace: Path, *args: str, date: int | None = None) -> None:
    env = dict(os.environ)
    if date is not None:
        env["GIT_COMMITTER_DATE"] = env["GIT_AUTHOR_DATE"] = f"@{date} +0000"
    subprocess.run(["git", *args], cwd=workspace, env=env, check=True, capture_output=True)


def commit(workspace: Path, path: str, date: int) -> None:
    git(workspace, "add", "--", path)
    git(workspace, "commit", "-q", "-m", f"{path} at {date}", date=date)


def packaged(workspace: Path, name: str) -> tuple[int, dict[str, int], str]:
    """A package's build date (.PKGINFO), its files' times, and what its build saw."""
    # (its version counts its commits: 0.0.0_p<N>)
    (package,) = (workspace / ".pakman/repo/x86_64").glob(f"{name}-0.0.0*-r0.apk")
    with tarfile.open(package, "r:gz") as archive:
        members = {m.name: m for m in archive.getmembers()}
        pkginfo = archive.extractfile(".PKGINFO")
        assert pkginfo is not None
        info = dict(
            line.split(" = ", 1) for line in pkginfo.read().decode().splitlines() if " = " in line
        )
        seen = archive.extractfile(f"var/lib/{name}/bin/epoch")
        assert seen is not None
        times = {n: int(m.mtime) for n, m in members.items() if not n.startswith(".")}
        return int(info["builddate"]), times, seen.read().decode().strip()


def test_each_app_is_dated_by_its_last_commit(tmp_path: Path, key: KeyPair) -> None:
    workspace = tmp_path / "ws"
    add_app(workspace, "early")
    add_app(workspace, "late")
    git(workspace, "init", "-q")
    commit(workspace, "apps/early", 1_600_000_000)
    commit(workspace, "apps/late", 1_700_000_000)
    run = build(workspace, key)
    assert run.code == 0, run.messages()
    for name, date in (("early", 1_600_000_000), ("late", 1_700_000_000)):
        builddate, times, seen = packaged(workspace, name)
        assert (builddate, set(times.values()), seen) == (date, {date}, str(date)), name


def test_a_commit_dates_only_its_app_again(tmp_path: Path, key: KeyPair) -> None:
    workspace = tmp_path / "ws"
    add_app(workspace, "one")
    add_app(workspace, "two")
    git(workspace, "init", "-q")
    commit(workspace, "apps", 1_600_000_000)
    assert build(workspace, key).code == 0
    assert build(workspace, key).ran == set()
    (workspace / "apps/two/notes.txt").write_text("changed\n")
    commit(workspace, "apps/two", 1_650_000_000)
    run = build(workspace, key)
    assert {s for s in run.ran if s.endswith(":build:x86_64")} == {"two:build:x86_64"}
    assert packaged(workspace, "one")[0] == 1_600_000_000
    assert packaged(workspace, "two")[0] == 1_650_000_000


def test_a_no_op_build_does_not_ask_git(
    tmp_path: Path, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "ws"
    add_app(workspace, "one")
    git(workspace, "init", "-q")
    commit(workspace, "apps", 1_600_000_000)
    calls = tmp_path / "git-calls"
    stub = tmp_path / "bin" / "git"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {shutil.which("git")} "$@"\n')
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}:{os.environ['PATH']}")
    assert build(workspace, key).code == 0
    assert "log -1 --format=%ct -- ." in calls.read_text()  # asked when preparing
    calls.unlink()
    assert build(workspace, key).ran == set()
    assert not calls.exists()


@pytest.mark.parametrize("how", ["commit", "variable"])
def test_never_a_date_before_1980(
    how: str, tmp_path: Path, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "ws"
    add_app(workspace, "old")
    if how == "commit":
        git(workspace, "init", "-q")
        commit(workspace, "apps", 100_000_000)  # 1973
    else:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    run = build(workspace, key)
    assert run.code == 0, run.messages()  # the zip entry could be dated
    builddate, times, seen = packaged(workspace, "old")
    assert (builddate, set(times.values()), seen) == (EARLIEST, {EARLIEST}, str(EARLIEST))


def test_the_variable_wins_over_git(
    tmp_path: Path, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "ws"
    add_app(workspace, "one")
    git(workspace, "init", "-q")
    commit(workspace, "apps", 1_600_000_000)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567890")
    assert build(workspace, key).code == 0
    assert packaged(workspace, "one")[0] == 1234567890


def test_outside_git_the_first_build_dates_the_workspace(tmp_path: Path, key: KeyPair) -> None:
    import time

    workspace = tmp_path / "ws"
    add_app(workspace, "one")
    before = int(time.time())
    assert build(workspace, key).code == 0
    builddate, _, seen = packaged(workspace, "one")
    assert before <= builddate <= int(time.time()) and seen == str(builddate)
    # Prepared again from scratch (the prepared project dropped): the same keys, nothing runs.
    shutil.rmtree(workspace / ".pakman/cache/project")
    time.sleep(1.1)
    assert build(workspace, key).ran == set()
    assert packaged(workspace, "one")[0] == builddate
    # The index's time follows its packages.
    with tarfile.open(workspace / ".pakman/repo/x86_64/APKINDEX.tar.gz", "r:gz") as archive:
        assert {int(m.mtime) for m in archive.getmembers()} == {builddate}
