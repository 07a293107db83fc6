"""The repository steps: REPO/<arch>/ holds exactly the build's packages, published whole."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from build_support import KeyPair, build, make_key, make_workspace
from pakman.apk import PublicKey, verify_file
from pakman.apk.index import parse_index_entries
from pakman.apk.reader import read_index_file


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


def indexed(arch: Path) -> set[str]:
    with (arch / "APKINDEX.tar.gz").open("rb") as handle:
        text = read_index_file(handle).text
    return {entry.filename for entry in parse_index_entries(text)}


def test_only_replaces_its_apps_packages_and_keeps_the_others(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["greet", "heartbeat"])
    assert build(workspace, key).code == 0
    arch = workspace / ".pakman" / "repo" / "x86_64"
    everything = listing(arch)

    assert build(workspace, key, "--only", "heartbeat").code == 0
    assert listing(arch) == everything

    assert build(workspace, key, "--only", "heartbeat", "--release", "1").code == 0
    expected = {
        "greet-0.0.0-r0.apk",
        "heartbeat-0.0.0-r1.apk",
        "heartbeat-openrc-0.0.0-r1.apk",
        "APKINDEX.tar.gz",
    }
    assert listing(arch) == expected
    assert indexed(arch) == expected - {"APKINDEX.tar.gz"}
    public = PublicKey.from_file(key.public)
    verdict = verify_file(arch / "APKINDEX.tar.gz", {public.keyname: public})
    assert verdict.passed(), verdict.summary()

    assert build(workspace, key).code == 0  # every app again, release 0
    assert listing(arch) == everything
    assert indexed(arch) == everything - {"APKINDEX.tar.gz"}


def test_sign_refuses_an_index_whose_packages_are_missing(tmp_path: Path, key: KeyPair) -> None:
    from build_support import working_directory
    from pakman.compile.settings import Settings
    from pakman.errors import StepFailed
    from pakman.project import load_project
    from pakman.steps.repository import sign

    workspace = make_workspace(tmp_path, ["greet", "heartbeat"])
    assert build(workspace, key).code == 0
    (workspace / ".pakman/build/_repo/x86_64/greet-0.0.0-r0.apk").unlink()
    (workspace / ".pakman/build/greet/packages/noarch/greet-0.0.0-r0.apk").unlink()
    settings = Settings(
        paths=("apps",), root=".", offline=True, key_file=str(key.private), build_on="host"
    )
    with working_directory(workspace):
        project = load_project(settings)
        with pytest.raises(
            StepFailed, match=r"greet-0\.0\.0-r0\.apk, which the index lists, is neither in"
        ):
            sign(project.graph["repo:sign:x86_64"], project.context)
    # What was published is left as it was.
    assert "greet-0.0.0-r0.apk" in listing(workspace / ".pakman/repo/x86_64")


def test_sign_trusts_the_work_folder_only_when_its_index_made_it(
    tmp_path: Path, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    from build_support import working_directory
    from pakman.compile.graph import Step
    from pakman.compile.settings import Settings
    from pakman.project import load_project
    from pakman.steps import repository

    workspace = make_workspace(tmp_path, ["greet", "heartbeat"])
    assert build(workspace, key).code == 0
    settings = Settings(
        paths=("apps",), root=".", offline=True, key_file=str(key.private), build_on="host"
    )
    with working_directory(workspace):
        project = load_project(settings)
    work = workspace / ".pakman/build/_repo/x86_64"
    arch = workspace / ".pakman/repo/x86_64"
    assert (work / ".linked").read_text() == project.graph["repo:index:x86_64"].key
    listed: list[str] = []
    real = repository._packages

    def counting(step: Step) -> dict[str, tuple[str, int]]:
        listed.append(step.id)
        return real(step)

    monkeypatch.setattr(repository, "_packages", counting)
    public = PublicKey.from_file(key.public)

    def publish() -> None:
        arch.unlink()  # the link to the publication
        with working_directory(workspace):
            repository.sign(project.graph["repo:sign:x86_64"], project.context)
        verdict = verify_file(arch / "APKINDEX.tar.gz", {public.keyname: public})
        assert verdict.passed(), verdict.summary()
        assert listing(arch) == indexed(arch) | {"APKINDEX.tar.gz"}

    publish()
    assert listed == []  # the folder holds what the index's text lists: no package folder read
    # Left by an index of another key (or one interrupted while linking):
    # this build's packages are taken from their steps.
    (work / ".linked").write_text("another key")
    (work / "greet-0.0.0-r0.apk").unlink()
    publish()
    assert listed == ["repo:sign:x86_64"]
