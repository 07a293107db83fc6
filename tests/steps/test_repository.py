"""The repository steps: REPO/<arch>/ holds exactly the build's packages, updated in place."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from build_support import KeyPair, build, make_key, make_workspace
from pakman.apk import PublicKey, verify_file


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_unchanged_packages_stay_linked_and_the_rest_goes(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["greet", "heartbeat"])
    assert build(workspace, key).code == 0
    arch = workspace / ".pakman" / "repo" / "x86_64"
    greet = arch / "greet-0.0.0-r0.apk"
    inode = greet.stat().st_ino
    (arch / "stray.txt").write_text("not pakman's")
    (arch / ".heartbeat-0.0.0-r0.apk.tmp").write_text("left by an interrupted run")
    (arch / "old").mkdir()

    shutil.rmtree(workspace / "apps" / "heartbeat")
    run = build(workspace, key)

    assert run.code == 0, run.messages()
    assert "repo:sign:x86_64" in run.ran
    assert listing(arch) == {"greet-0.0.0-r0.apk", "APKINDEX.tar.gz"}
    assert greet.stat().st_ino == inode  # not copied or linked again
    public = PublicKey.from_file(key.public)
    verdict = verify_file(arch / "APKINDEX.tar.gz", {public.keyname: public})
    assert verdict.passed(), verdict.summary()


def test_a_rebuilt_package_replaces_the_published_one(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["greet"])
    assert build(workspace, key).code == 0
    arch = workspace / ".pakman" / "repo" / "x86_64"
    before = (arch / "greet-0.0.0-r0.apk").read_bytes()
    script = workspace / "apps" / "greet" / "greet"
    script.write_text(script.read_text() + "# changed\n")

    assert build(workspace, key).code == 0

    after = (arch / "greet-0.0.0-r0.apk").read_bytes()
    built = workspace / ".pakman" / "build"
    assert after != before
    assert after in {p.read_bytes() for p in built.rglob("greet-0.0.0-r0.apk")}
    assert listing(arch) == {"greet-0.0.0-r0.apk", "APKINDEX.tar.gz"}
