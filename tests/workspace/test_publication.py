"""Publication: REPO/<arch> is one whole publication at every instant, whatever happens."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from build_support import KeyPair, build, make_key, make_workspace
from pakman.apk import PublicKey, verify_file
from pakman.apk.errors import ArchiveError
from pakman.apk.index import parse_index_entries, read_index_entry
from pakman.apk.reader import read_index_file
from pakman.cli import main
from pakman.workspace.publication import PUBLICATIONS

ARCH = ".pakman/repo/x86_64"
GREET = "greet-0.0.0-r0.apk"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


def listed(folder: Path) -> set[str]:
    """The file names the folder's index lists."""
    with (folder / "APKINDEX.tar.gz").open("rb") as handle:
        text = read_index_file(handle).text
    return {entry.filename for entry in parse_index_entries(text)}


def change(workspace: Path, round: int) -> None:
    """Other bytes for the greet package, under the same name and version."""
    script = workspace / "apps" / "greet" / "greet"
    lines = script.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith("# round ")]
    script.write_text("".join(kept) + f"# round {round}\n")


def check_published(folder: Path, key: KeyPair) -> None:
    """The folder verifies (index signed, every entry matching its file) and holds nothing else."""
    public = PublicKey.from_file(key.public)
    verdict = verify_file(folder / "APKINDEX.tar.gz", {public.keyname: public})
    assert verdict.passed(), verdict.summary()
    assert {p.name for p in folder.iterdir()} == listed(folder) | {"APKINDEX.tar.gz"}


class Reader(threading.Thread):
    """Resolves REPO/<arch> once per round, reads the index, then each package it lists."""

    def __init__(self, arch: Path) -> None:
        super().__init__(daemon=True)
        self.arch = arch
        self.stop = threading.Event()
        self.rounds = 0
        self.packages = 0
        self.mismatches: list[str] = []
        self.missing: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            folder = Path(os.path.realpath(self.arch))
            try:
                with (folder / "APKINDEX.tar.gz").open("rb") as handle:
                    entries = parse_index_entries(read_index_file(handle).text)
            except FileNotFoundError:
                self.missing.append(str(folder / "APKINDEX.tar.gz"))
                continue
            for entry in entries:
                path = folder / entry.filename
                try:
                    actual = read_index_entry(path)
                except FileNotFoundError:
                    self.missing.append(str(path))
                    continue
                except ArchiveError as exc:  # a file being written
                    self.mismatches.append(f"{entry.filename}: {exc}")
                    continue
                self.packages += 1
                if (actual.identity, actual.size) != (entry.identity, entry.size):
                    self.mismatches.append(
                        f"{entry.filename}: the index says {entry.identity} ({entry.size} bytes), "
                        f"the file is {actual.identity} ({actual.size} bytes)"
                    )
            self.rounds += 1


def test_a_reader_sees_only_packages_matching_their_index(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["greet", "heartbeat"])
    assert build(workspace, key).code == 0
    reader = Reader(workspace / ARCH)
    reader.start()
    identities = set()
    try:
        for round in range(40):
            change(workspace, round)
            run = build(workspace, key)
            assert run.code == 0, run.messages()
            identities.add(read_index_entry(workspace / ARCH / GREET).identity)
    finally:
        reader.stop.set()
        reader.join()
    assert len(identities) == 40  # the same name and version, other bytes every time
    assert reader.rounds > 40 and reader.packages > 40 * 3
    assert reader.mismatches == []
    assert reader.missing == []
    check_published(workspace / ARCH, key)


def test_publications_are_kept_until_the_next_one(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["greet"])
    assert build(workspace, key).code == 0
    arch = workspace / ARCH
    first = Path(os.path.realpath(arch))
    assert arch.is_symlink() and first.name == "x86_64"
    assert not os.path.isabs(os.readlink(arch))  # the repository can be moved or copied whole
    change(workspace, 1)
    assert build(workspace, key).code == 0
    second = Path(os.path.realpath(arch))
    assert second != first and first.is_dir()  # a reader of the first can still finish
    change(workspace, 2)
    assert build(workspace, key).code == 0
    third = Path(os.path.realpath(arch))
    publications = workspace / ".pakman/repo" / PUBLICATIONS
    assert {p.name for p in publications.iterdir()} == {second.parent.name, third.parent.name}
    assert not first.exists()
    check_published(arch, key)
    # A no-op build publishes nothing.
    assert build(workspace, key).ran == set()
    assert Path(os.path.realpath(arch)) == third


def test_a_folder_published_by_an_older_pakman_is_replaced(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["greet"])
    old = workspace / ARCH
    old.mkdir(parents=True)
    (old / "APKINDEX.tar.gz").write_bytes(b"an older index")
    (old / ".pakman-index-cache.json").write_text("{}")

    run = build(workspace, key)

    assert run.code == 0, run.messages()
    assert old.is_symlink()
    check_published(old, key)
    kept = [p for p in (workspace / ".pakman/repo" / PUBLICATIONS).iterdir()]
    assert any((p / "x86_64" / "APKINDEX.tar.gz").read_bytes() == b"an older index" for p in kept)
    # ... until the next publication.
    change(workspace, 1)
    assert build(workspace, key).code == 0
    for publication in (workspace / ".pakman/repo" / PUBLICATIONS).iterdir():
        assert (publication / "x86_64" / "APKINDEX.tar.gz").read_bytes() != b"an older index"


def test_a_publication_emptied_by_hand_is_published_again(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["greet"])
    assert build(workspace, key).code == 0
    arch = workspace / ARCH
    before = {p.name: p.read_bytes() for p in arch.iterdir()}
    first = os.readlink(arch)
    for path in arch.iterdir():
        path.unlink()
    run = build(workspace, key)
    assert run.code == 0
    # From the store, as a new publication: the emptied one is not written into.
    assert {str(e["step"]) for e in run.events if e["event"] == "restored"} == {"repo:sign:x86_64"}
    assert arch.is_symlink() and os.readlink(arch) != first
    assert {p.name: p.read_bytes() for p in arch.iterdir()} == before
    check_published(arch, key)
    assert build(workspace, key).ran == set()


# -- kill -9 -------------------------------------------------------------------

# Runs `pakman build`, killing itself (SIGKILL) at the Nth file-system change
# made once the sign step has started: every point of a publication.
KILLER = """
import os, signal, sys
from pakman.cli import main
from pakman.steps import repository

limit, calls, armed = int(sys.argv[1]), [0], [False]

def counted(real):
    def call(*args, **kwargs):
        if armed[0]:
            calls[0] += 1
            if calls[0] >= limit:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call

for name in ("link", "replace", "rename", "symlink", "unlink", "mkdir", "rmdir", "open", "chmod"):
    setattr(os, name, counted(getattr(os, name)))
sign = repository.sign

def armed_sign(step, context):
    armed[0] = True
    return sign(step, context)

repository.sign = armed_sign
sys.exit(main(sys.argv[2:]))
"""


def pakman_build(workspace: Path, key: KeyPair, *, killed_at: int | None = None) -> list[str]:
    """The command line of a `pakman build` in its own process (killed at a point, if given)."""
    args = ["build", "apps", "--offline", "--key", str(key.private)]
    if killed_at is None:
        return [sys.executable, "-m", "pakman", *args]
    return [sys.executable, "-c", KILLER, str(killed_at), *args]


def test_a_build_killed_at_any_point_of_publishing_leaves_a_whole_publication(
    tmp_path: Path, key: KeyPair
) -> None:
    workspace = make_workspace(tmp_path, ["greet", "heartbeat"])
    assert build(workspace, key).code == 0
    arch = workspace / ARCH
    change(workspace, 1)
    point = 1
    while True:
        done = subprocess.run(
            pakman_build(workspace, key, killed_at=point), cwd=workspace, capture_output=True
        )
        if done.returncode == 0:
            break
        assert done.returncode == -signal.SIGKILL, done.stderr.decode()
        check_published(arch, key)
        point += 1
    assert point > 5  # it was killed at every point of the publication before getting through
    check_published(arch, key)
    greet = read_index_entry(arch / GREET)
    built = workspace / ".pakman/build/greet/packages/noarch" / GREET
    assert greet.identity == read_index_entry(built).identity


class Checker(threading.Thread):
    """Verifies the repository again and again, at whatever instant it finds it."""

    def __init__(self, arch: Path, key: KeyPair) -> None:
        super().__init__(daemon=True)
        self.arch = arch
        self.key = key
        self.stop = threading.Event()
        self.checks = 0
        self.problems: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            folder = Path(os.path.realpath(self.arch))
            try:
                check_published(folder, self.key)
            except FileNotFoundError:
                if folder.parent.exists():  # a publication is removed a whole one later
                    self.problems.append(f"{folder}: a file is missing")
            except AssertionError as exc:
                self.problems.append(str(exc))
            self.checks += 1


def test_builds_killed_at_random_moments_leave_a_verified_repository(
    tmp_path: Path, key: KeyPair
) -> None:
    workspace = make_workspace(tmp_path, ["greet", "heartbeat"])
    assert build(workspace, key).code == 0
    arch = workspace / ARCH
    started = time.monotonic()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    assert subprocess.run(pakman_build(workspace, key), cwd=workspace, **quiet).returncode == 0
    duration = time.monotonic() - started  # of a no-op build: starting Python and pakman
    checker = Checker(arch, key)
    checker.start()
    chance = random.Random(14)
    try:
        for round in range(20):
            change(workspace, round)
            build_process = subprocess.Popen(pakman_build(workspace, key), cwd=workspace, **quiet)
            time.sleep(duration + chance.uniform(0, 0.6))
            build_process.send_signal(signal.SIGKILL)
            build_process.wait()
            check_published(arch, key)
    finally:
        checker.stop.set()
        checker.join()
    assert checker.checks > 20
    assert checker.problems == []
    assert subprocess.run(pakman_build(workspace, key), cwd=workspace, **quiet).returncode == 0
    check_published(arch, key)


# -- pakman index --------------------------------------------------------------


def test_pakman_index_adds_only_the_index_to_the_folder(
    tmp_path: Path, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = make_workspace(tmp_path / "ws", ["greet", "heartbeat"])
    assert build(workspace, key).code == 0
    folder = tmp_path / "published" / "x86_64"
    folder.mkdir(parents=True)
    for package in (workspace / ARCH).glob("*.apk"):
        (folder / package.name).write_bytes(package.read_bytes())
    (folder / ".pakman-index-cache.json").write_text("{}")  # left by an older pakman
    before = {p.name for p in folder.iterdir()} - {".pakman-index-cache.json"}
    cache_home = tmp_path / "cache-home"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))

    for _ in range(2):
        assert main(["index", str(folder), "--private-key", str(key.private)]) == 0
        assert {p.name for p in folder.iterdir()} == before | {"APKINDEX.tar.gz"}
    assert [p.parent.name for p in cache_home.rglob("*.json")] == ["index"]
