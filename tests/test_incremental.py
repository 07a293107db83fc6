"""Only what changed runs again: the change table, counted by the steps that actually execute.

Every test runs twice: builds looking at every file (lstat), and builds
told by `pakman watch` which apps changed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from build_support import BuildRun, KeyPair, build, make_key, make_workspace, watching
from support import EXAMPLES

CHAIN = {"pyweb:package:x86_64", "repo:index:x86_64", "repo:sign:x86_64"}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture(params=["lstat", "watch"])
def workspace(tmp_path: Path, key: KeyPair, request: pytest.FixtureRequest) -> Iterator[Path]:
    root = make_workspace(tmp_path, ["pyweb", "heartbeat"])
    first = build(root, key)
    assert first.code == 0, first.messages()
    assert first.ran  # everything ran once
    if request.param == "lstat":
        yield root
        return
    with watching(root) as watcher:
        assert build(root, key).ran == set()  # its first answer: check everything
        yield root
    # The watcher was asked by every build, and its token was kept from the
    # first on (another plan, as --release makes, is a reason to look at all).
    answers = watcher.answers()
    assert answers[0] == "every app to check: the plan was written without this watcher"
    assert len(answers) >= 2 and all("without this watcher" not in a for a in answers[1:])


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def rebuild(workspace: Path, key: KeyPair, *args: str) -> BuildRun:
    run = build(workspace, key, *args)
    assert run.code == 0, run.messages()
    return run


def pyweb_config(workspace: Path) -> Path:
    return workspace / "apps/pyweb/instellar.yml"


def test_nothing_changed(workspace: Path, key: KeyPair) -> None:
    assert rebuild(workspace, key).ran == set()


def test_mtime_only_touch(workspace: Path, key: KeyPair) -> None:
    for path in (workspace / "apps").rglob("*"):
        os.utime(path)
    assert rebuild(workspace, key).ran == set()


def test_fresh_clone_of_the_same_commit(workspace: Path, key: KeyPair) -> None:
    shutil.rmtree(workspace / "apps")
    for name in ("pyweb", "heartbeat"):
        shutil.copytree(EXAMPLES / name, workspace / "apps" / name)
    assert rebuild(workspace, key).ran == set()


def test_one_source_file(workspace: Path, key: KeyPair) -> None:
    edit(workspace / "apps/pyweb/src/main.py", '"hello"', '"hi"')
    assert rebuild(workspace, key).ran == {"pyweb:build:x86_64", "pyweb:collect:x86_64", *CHAIN}


def test_a_hooks_text(workspace: Path, key: KeyPair) -> None:
    edit(pyweb_config(workspace), "rc-update add pyweb\n", "rc-update add pyweb default\n")
    assert rebuild(workspace, key).ran == {"pyweb:render-hook:post-install", *CHAIN}


def test_runtime_dependencies(workspace: Path, key: KeyPair) -> None:
    edit(
        pyweb_config(workspace), "    - ca-certificates\n", "    - ca-certificates\n    - tzdata\n"
    )
    assert rebuild(workspace, key).ran == {
        "pyweb:fetch-deps-runtime:x86_64",
        "pyweb:render-apkbuild",
        *CHAIN,
    }


def test_build_dependencies(workspace: Path, key: KeyPair) -> None:
    edit(
        pyweb_config(workspace),
        "  build: []\n",
        "  build:\n    - py3-pip\n",
    )
    assert rebuild(workspace, key).ran == {
        "pyweb:fetch-deps-build:x86_64",
        "pyweb:render-apkbuild",
        "pyweb:build:x86_64",
        "pyweb:collect:x86_64",
        *CHAIN,
    }


def test_build_command(workspace: Path, key: KeyPair) -> None:
    edit(pyweb_config(workspace), "    mkdir -p bin\n", "    mkdir -p bin logs\n")
    # The APKBUILD holds the command too, so it is rendered again.
    assert rebuild(workspace, key).ran == {
        "pyweb:render-apkbuild",
        "pyweb:build:x86_64",
        "pyweb:collect:x86_64",
        *CHAIN,
    }


def test_a_services_start_call(workspace: Path, key: KeyPair) -> None:
    edit(pyweb_config(workspace), "call: serve --port 8080", "call: serve --port 8081")
    assert rebuild(workspace, key).ran == {"pyweb:render-run", *CHAIN}


def test_the_release_number_only(workspace: Path, key: KeyPair) -> None:
    assert rebuild(workspace, key, "--release", "7").ran == {
        *CHAIN,
        "heartbeat:package:x86_64",  # the release is every app's
    }


def test_a_kit_variables_default(workspace: Path, key: KeyPair) -> None:
    edit(pyweb_config(workspace), "default_value: hello", "default_value: bonjour")
    assert rebuild(workspace, key).ran == set()


def test_one_app_of_many(workspace: Path, key: KeyPair) -> None:
    edit(workspace / "apps/heartbeat/bin/heartbeat", "interval=60", "interval=30")
    assert rebuild(workspace, key).ran == {
        "heartbeat:build:x86_64",
        "heartbeat:collect:x86_64",
        "heartbeat:package:x86_64",
        "repo:index:x86_64",
        "repo:sign:x86_64",
    }


def restored(run: BuildRun) -> set[str]:
    return {str(e["step"]) for e in run.events if e["event"] == "restored"}


@pytest.mark.parametrize(
    "change",
    [
        lambda w: edit(w / "apps/pyweb/src/main.py", '"hello"', '"hi"'),
        lambda w: edit(pyweb_config(w), "call: serve --port 8080", "call: serve --port 8081"),
        lambda w: edit(
            pyweb_config(w), "    - ca-certificates\n", "    - ca-certificates\n    - tzdata\n"
        ),
    ],
    ids=["source", "service", "dependencies"],
)
def test_revert_to_a_state_built_before(
    workspace: Path, key: KeyPair, change: Callable[[Path], None]
) -> None:
    originals = {p: p.read_bytes() for p in (workspace / "apps").rglob("*") if p.is_file()}
    repo_before = {p.name: p.read_bytes() for p in (workspace / ".pakman/repo/x86_64").iterdir()}
    change(workspace)
    changed = rebuild(workspace, key)
    assert changed.ran
    for path, data in originals.items():
        path.write_bytes(data)
    back = rebuild(workspace, key)
    assert back.ran == set()  # nothing is rebuilt ...
    assert restored(back) == changed.ran  # ... it is restored from the store
    repo_after = {p.name: p.read_bytes() for p in (workspace / ".pakman/repo/x86_64").iterdir()}
    assert repo_after == repo_before


def redone(run: BuildRun) -> set[str]:
    """The steps that ran or were restored."""
    return run.ran | restored(run)


def published(workspace: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (workspace / ".pakman/repo/x86_64").iterdir()}


def test_a_package_deleted_from_the_repository_is_published_again(
    workspace: Path, key: KeyPair
) -> None:
    before = published(workspace)
    (workspace / ".pakman/repo/x86_64/pyweb-0.0.0-r0.apk").unlink()
    assert redone(rebuild(workspace, key)) == {"repo:sign:x86_64"}
    assert published(workspace) == before


def test_a_deleted_index_is_written_again(workspace: Path, key: KeyPair) -> None:
    before = published(workspace)
    (workspace / ".pakman/repo/x86_64/APKINDEX.tar.gz").unlink()
    assert redone(rebuild(workspace, key)) == {"repo:sign:x86_64"}
    assert published(workspace) == before


def test_a_package_deleted_from_its_steps_output_is_made_again(
    workspace: Path, key: KeyPair
) -> None:
    before = published(workspace)
    package = workspace / ".pakman/build/pyweb/packages/x86_64/pyweb-0.0.0-r0.apk"
    package.unlink()
    assert redone(rebuild(workspace, key)) == {"pyweb:package:x86_64"}
    assert package.exists()
    # A later change elsewhere publishes every package, this one included.
    edit(workspace / "apps/heartbeat/bin/heartbeat", "\n", "\n# changed\n")
    assert "repo:sign:x86_64" in rebuild(workspace, key).ran
    assert set(published(workspace)) == set(before)
