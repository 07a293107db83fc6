"""`pakman watch`: builds check only the apps it names, and everything whenever it cannot be sure.

The change table runs under a watcher too (tests/test_incremental.py); these
are the watcher's own cases.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from build_support import (
    KeyPair,
    build,
    make_key,
    make_workspace,
    subprocess_env,
    watching,
    working_directory,
)
from pakman.cli import build_parser
from pakman.cli.options import settings_from_args
from pakman.fastpath import plan as plan_module
from pakman.fastpath import protocol as watch
from pakman.fastpath import watcher as watcher_module
from pakman.fastpath.plan import inspect, load_plan
from pakman.fastpath.watcher import NEVER, Watcher
from pakman.workspace.layout import Layout
from support import EXAMPLES

HEARTBEAT = {
    "heartbeat:build:x86_64",
    "heartbeat:collect:x86_64",
    "heartbeat:package:x86_64",
    "repo:index:x86_64",
    "repo:sign:x86_64",
}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture
def workspace(tmp_path: Path, key: KeyPair) -> Path:
    root = make_workspace(tmp_path / "ws", ["pyweb", "heartbeat"])
    assert build(root, key).code == 0
    return root


def checked(workspace: Path, key: KeyPair) -> tuple[int, list[int]]:
    """How many apps the next build would look at, and which of them changed."""
    args = build_parser().parse_args(["build", "apps", "--offline", "--key", str(key.private)])
    settings = settings_from_args(args)  # as `pakman build` makes them
    with working_directory(workspace):
        inspection = inspect(settings)
    return inspection.checked, inspection.changed


def test_builds_look_at_only_the_apps_it_names(workspace: Path, key: KeyPair) -> None:
    with watching(workspace) as watcher:
        assert checked(workspace, key) == (2, []), watcher.said()  # its first answer: everything
        assert checked(workspace, key) == (0, [])
        script = workspace / "apps/heartbeat/bin/heartbeat"
        script.write_text(script.read_text() + "# edited\n")
        inspected, changed = checked(workspace, key)
        assert inspected == 1 and len(changed) == 1
        assert build(workspace, key).ran == HEARTBEAT
        assert checked(workspace, key) == (0, [])
    assert watcher.answers() == [
        "every app to check: the plan was written without this watcher",
        "0 of 2 apps changed",
        "1 of 2 apps changed (heartbeat)",
        "1 of 2 apps changed (heartbeat)",  # the build asks again
        "0 of 2 apps changed",
    ]


def apps_checked_for_done(workspace: Path, key: KeyPair, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many apps the next build would check output by output against the journal."""
    calls: list[int] = []
    real = plan_module.all_done

    def counting(steps: Any, journal: Any) -> bool:
        calls.append(1)
        return real(steps, journal)

    monkeypatch.setattr(plan_module, "all_done", counting)
    checked(workspace, key)
    monkeypatch.setattr(plan_module, "all_done", real)
    return len(calls) - 1  # the repository's steps are always checked


def test_apps_found_done_and_untouched_are_not_checked_again(
    workspace: Path, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    with watching(workspace):
        assert checked(workspace, key) == (2, [])  # the first answer: everything
        assert apps_checked_for_done(workspace, key, monkeypatch) == 0
        # A journal that is not the file read then (compacted, replaced): check again.
        journal = workspace / ".pakman/journal"
        copy = journal.with_name("journal.copy")
        copy.write_bytes(journal.read_bytes())
        copy.replace(journal)
        assert apps_checked_for_done(workspace, key, monkeypatch) == 2
        assert apps_checked_for_done(workspace, key, monkeypatch) == 0
        # Appended to (a step ran): still the same journal.
        with journal.open("a") as handle:
            handle.write("other:step:x86_64 key\n")
        assert apps_checked_for_done(workspace, key, monkeypatch) == 0


@pytest.mark.parametrize("change", ["touch", "remove", "add"])
def test_an_output_changed_under_the_watcher_is_made_again(
    workspace: Path, key: KeyPair, change: str
) -> None:
    with watching(workspace):
        assert build(workspace, key).ran == set()
        assert build(workspace, key).ran == set()  # found done, after the watcher's token
        lock = workspace / ".pakman/build/pyweb/deps/build-x86_64.json"
        collect = workspace / ".pakman/build/heartbeat/collect-x86_64"
        if change == "touch":
            os.utime(lock, ns=(1, 1))
            expected = {"pyweb:fetch-deps-build:x86_64"}
        elif change == "remove":
            shutil.rmtree(collect)
            expected = {"heartbeat:collect:x86_64"}
        else:
            (collect / "stray").write_text("not made by the step\n")
            expected = {"heartbeat:collect:x86_64"}
        run = build(workspace, key)
        restored = {str(e["step"]) for e in run.events if e["event"] == "restored"}
        assert run.code == 0 and restored | run.ran == expected  # offline deps: not stored
        assert build(workspace, key).ran == set()


def test_a_new_folder_then_a_file_in_it_then_its_removal(workspace: Path, key: KeyPair) -> None:
    with watching(workspace):
        assert build(workspace, key).ran == set()
        folder = workspace / "apps/heartbeat/extra/deeper"
        folder.mkdir(parents=True)
        (folder / "a.txt").write_text("a\n")
        assert build(workspace, key).ran == HEARTBEAT
        # The new folders are watched from the build that found them.
        (folder / "b.txt").write_text("b\n")
        assert build(workspace, key).ran == HEARTBEAT
        (folder / "a.txt").write_text("a, again\n")
        assert build(workspace, key).ran == HEARTBEAT
        shutil.rmtree(workspace / "apps/heartbeat/extra")
        back = build(workspace, key)  # as first built: restored from the store
        assert {str(e["step"]) for e in back.events if e["event"] == "restored"} == HEARTBEAT
        assert build(workspace, key).ran == set()


def test_a_new_app_is_watched_from_its_first_build(workspace: Path, key: KeyPair) -> None:
    with watching(workspace):
        assert build(workspace, key).ran == set()
        shutil.copytree(EXAMPLES / "greet", workspace / "apps/greet")
        assert "greet:package:noarch" in build(workspace, key).ran
        # Watched only once that build wrote its plan, after its token: looked at once more.
        assert checked(workspace, key) == (1, [])
        assert checked(workspace, key) == (0, [])
        (workspace / "apps/greet/instellar.yml").write_text(
            (workspace / "apps/greet/instellar.yml").read_text() + "\n# edited\n"
        )
        inspected, changed = checked(workspace, key)
        assert inspected == 1 and len(changed) == 1


def test_another_watcher_since_means_checking_everything(workspace: Path, key: KeyPair) -> None:
    with watching(workspace):
        assert checked(workspace, key) == (2, [])
        assert checked(workspace, key) == (0, [])
    with watching(workspace) as again:
        assert checked(workspace, key) == (2, [])  # its instance is not the one the token names
    assert again.answers()[0] == "every app to check: the plan was written without this watcher"


def test_without_a_watcher_builds_check_everything(workspace: Path, key: KeyPair) -> None:
    with watching(workspace):
        checked(workspace, key)
    script = workspace / "apps/heartbeat/bin/heartbeat"
    script.write_text(script.read_text() + "# edited\n")
    assert build(workspace, key).ran == HEARTBEAT


def test_a_second_watcher_is_refused(workspace: Path) -> None:
    with watching(workspace):
        second = subprocess.run(
            [sys.executable, "-m", "pakman", "watch"],
            cwd=workspace,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode == 1
    assert "a watcher already runs in" in second.stderr


def test_a_socket_left_by_a_killed_watcher(workspace: Path, key: KeyPair) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "pakman", "watch"],
        cwd=workspace,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    with process.stdout:
        assert b"(Ctrl-C stops)" in process.stdout.readline()
        checked(workspace, key)
        process.kill()
        process.wait()
    assert (workspace / ".pakman/watch.sock").exists()
    assert checked(workspace, key) == (2, [])  # nobody answers: everything is looked at
    with watching(workspace):  # a new watcher takes its place
        assert checked(workspace, key) == (2, [])
        assert checked(workspace, key) == (0, [])


def test_no_answer_in_time_means_checking_everything(
    workspace: Path,
    key: KeyPair,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(watch, "ASK_TIMEOUT", 0.2)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(workspace / ".pakman/watch.sock"))
    silent.listen(1)
    try:
        assert checked(workspace, key) == (2, [])
    finally:
        silent.close()
    assert "the watcher did not answer within 0.2 s" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# The watcher's answers, in process


@pytest.fixture
def watcher(workspace: Path) -> Iterator[Watcher]:
    with Watcher(Layout.at(workspace), io.StringIO()) as watcher:
        watcher.load_plan()
        yield watcher


def test_lost_events_mean_checking_everything(watcher: Watcher) -> None:
    plan = watcher.plan
    first = watcher.answer({"protocol": watch.PROTOCOL, "plan": plan, "since": None})
    since = [first["instance"], first["clock"]]
    assert watcher.answer({"protocol": watch.PROTOCOL, "plan": plan, "since": since})["dirty"] == []
    watcher.overflowed_at = watcher.clock  # as when the kernel says IN_Q_OVERFLOW
    reply = watcher.answer({"protocol": watch.PROTOCOL, "plan": plan, "since": since})
    assert "dirty" not in reply and reply["why"] == "events were lost (the queue overflowed)"


def test_an_unwatchable_folder_is_always_changed(watcher: Watcher) -> None:
    plan = watcher.plan
    first = watcher.answer({"protocol": watch.PROTOCOL, "plan": plan, "since": None})
    since = [first["instance"], first["clock"]]
    watcher.changed_at[watcher.apps[1][0]] = NEVER  # as when inotify refuses a watch
    for _ in range(2):
        reply = watcher.answer({"protocol": watch.PROTOCOL, "plan": plan, "since": since})
        assert reply["dirty"] == [1]


def test_another_plan_or_protocol_means_checking_everything(watcher: Watcher) -> None:
    first = watcher.answer({"protocol": watch.PROTOCOL, "plan": watcher.plan, "since": None})
    since = [first["instance"], first["clock"]]
    other = watcher.answer({"protocol": watch.PROTOCOL, "plan": [1, 2, 3], "since": since})
    assert other["why"] == "no plan, or not the one the watcher loaded"
    newer = watcher.answer({"protocol": 99, "plan": watcher.plan, "since": since})
    assert newer["why"] == "another version of pakman asked"


def test_garbled_requests_are_dropped(watcher: Watcher, workspace: Path) -> None:
    thread = threading.Thread(target=lambda: [watcher.serve_one() for _ in range(2)])
    thread.start()
    for data in (b"nonsense\n", b"[1, 2]\n"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(workspace / ".pakman/watch.sock"))
            client.sendall(data)
            assert client.recv(100) == b""  # closed without an answer
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_an_app_whose_watched_paths_are_missing_is_always_changed(workspace: Path) -> None:
    folder = workspace / ".pakman/cache/project"
    apps = load_plan(folder / "plan.json")[0]["apps"]
    kept = folder / "watched" / apps[0]["watched"]
    data = kept.read_bytes()
    kept.unlink()
    with Watcher(Layout.at(workspace), io.StringIO()) as watcher:
        watcher.load_plan()
        assert watcher.apps[0] is None and watcher.apps[1]
        first = watcher.answer({"protocol": watch.PROTOCOL, "plan": watcher.plan, "since": None})
        since = [first["instance"], first["clock"]]
        for _ in range(2):
            reply = watcher.answer(
                {"protocol": watch.PROTOCOL, "plan": watcher.plan, "since": since}
            )
            assert reply["dirty"] == [0]
        kept.write_bytes(data)  # back (as a build writes it): known from the next plan loaded
        watcher.load_plan()
        assert watcher.apps[0]
        # Watched only now: what happened to it before is unknown, then it is known.
        reply = watcher.answer({"protocol": watch.PROTOCOL, "plan": watcher.plan, "since": since})
        assert reply["dirty"] == [0]
        since = [reply["instance"], reply["clock"]]
        reply = watcher.answer({"protocol": watch.PROTOCOL, "plan": watcher.plan, "since": since})
        assert reply["dirty"] == []


def test_output_folders_are_worked_out_again_only_while_an_output_is_missing(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collect = Path(os.path.realpath(workspace)) / ".pakman/build/heartbeat/collect-x86_64"
    shutil.rmtree(collect)  # which outputs are folders is known once they exist
    asked: list[tuple[str, ...]] = []
    real = watcher_module.output_folders

    def counting(paths: tuple[str, ...]) -> tuple[list[str], bool]:
        asked.append(paths)
        return real(paths)

    monkeypatch.setattr(watcher_module, "output_folders", counting)
    with Watcher(Layout.at(workspace), io.StringIO()) as watcher:
        watcher.load_plan()
        assert len(asked) == 2 and str(collect) not in watcher.wds
        watcher.load_plan()  # as after every build: only heartbeat's outputs again
        assert len(asked) == 3 and str(collect) in asked[-1]
        collect.mkdir()
        watcher.load_plan()
        assert len(asked) == 4 and str(collect) in watcher.wds
        watcher.load_plan()
        assert len(asked) == 4
