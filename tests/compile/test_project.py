"""The prepared-project cache: reused when nothing changed, refreshed for exactly what did."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from build_support import KeyPair, build, make_key, make_workspace, working_directory
from pakman.compile.settings import Settings
from pakman.doit.tasks import run_build
from pakman.fastpath.plan import inspect, load_plan, prune_watched, read_watched, write_watched
from pakman.project import load_project
from pakman.render.files import TEMPLATES
from pakman.workspace.fingerprint import unpack
from support import EXAMPLES


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture
def workspace(tmp_path: Path, key: KeyPair) -> Path:
    root = make_workspace(tmp_path, ["heartbeat", "greet"])
    assert build(root, key).code == 0
    return root


def settings(workspace: Path, key: KeyPair, **changes: object) -> Settings:
    values: dict[str, object] = {
        "paths": ("apps",),
        "root": ".",
        "offline": True,
        "key_file": str(key.private),
        "build_on": "host",  # as the CLI's in this suite (see conftest)
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


def ran(workspace: Path, key: KeyPair, *args: str) -> set[str]:
    run = build(workspace, key, *args)
    assert run.code == 0, run.messages()
    return run.ran


def test_nothing_to_do_until_something_changes(workspace: Path, key: KeyPair) -> None:
    with working_directory(workspace):
        current = inspect(settings(workspace, key))
        assert current.nothing_to_do and "heartbeat:build:x86_64" in current.step_ids()
        (workspace / "apps/heartbeat/bin/heartbeat").touch()
        touched = inspect(settings(workspace, key))
        assert not touched.nothing_to_do and touched.changed == [1]  # greet, heartbeat
        assert inspect(settings(workspace, key, release="3")).plan is None


def test_only_a_git_appearing_above_the_apps_matters(tmp_path: Path, key: KeyPair) -> None:
    # Outside git, the version depends on no folder above the apps but for a
    # .git appearing there: other files coming and going (in /tmp, in a home
    # folder) prepare nothing again.
    workspace = make_workspace(tmp_path / "ws", ["heartbeat"])
    assert build(workspace, key).code == 0
    (tmp_path / "another-project.txt").write_text("not the workspace's\n")
    with working_directory(workspace):
        assert inspect(settings(workspace, key)).nothing_to_do
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, capture_output=True)
    with working_directory(workspace):
        assert inspect(settings(workspace, key)).plan is None  # the version is asked of git


def test_a_cached_project_is_the_project(workspace: Path, key: KeyPair) -> None:
    with working_directory(workspace):
        cached = load_project(settings(workspace, key))
        fresh = load_project(settings(workspace, key), use_snapshot=False)
    assert cached.reused == 2 and fresh.reused == 0
    assert {s.id: s.key for s in cached.graph.order()} == {s.id: s.key for s in fresh.graph.order()}


def test_a_new_app_is_found(workspace: Path, key: KeyPair) -> None:
    shutil.copytree(EXAMPLES / "pyweb", workspace / "apps/pyweb")
    assert "pyweb:build:x86_64" in ran(workspace, key)


def test_added_removed_and_chmodded_source_files(workspace: Path, key: KeyPair) -> None:
    build_step = {"heartbeat:build:x86_64"}
    (workspace / "apps/heartbeat/bin/helper").write_text("#!/bin/sh\n")
    assert build_step <= ran(workspace, key)
    (workspace / "apps/heartbeat/bin/helper").chmod(0o755)
    assert build_step <= ran(workspace, key)
    (workspace / "apps/heartbeat/bin/helper").unlink()
    back = build(workspace, key)  # the tree as first built: its outputs come from the store
    assert {e["step"] for e in back.events if e["event"] == "restored"} >= build_step
    assert ran(workspace, key) == set()


def test_a_new_tag_changes_the_version(workspace: Path, key: KeyPair) -> None:
    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@e", *args],
            cwd=workspace,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    git("add", "apps")
    git("commit", "-qm", "apps")
    ran(workspace, key)  # .git appeared: the version is asked of git again (still 0.0.0)
    assert ran(workspace, key) == set()
    git("tag", "v2.5.0")
    assert "heartbeat:package:x86_64" in ran(workspace, key)
    assert (workspace / ".pakman/repo/x86_64/heartbeat-2.5.0-r0.apk").exists()


def test_environment_that_shapes_names(
    workspace: Path, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_RUN_NUMBER", "9")
    assert "heartbeat:package:x86_64" in ran(workspace, key)
    assert (workspace / ".pakman/repo/x86_64/heartbeat-0.0.0-r9.apk").exists()


def test_a_renamed_app_is_prepared_again(workspace: Path, key: KeyPair) -> None:
    config = workspace / "apps/heartbeat/instellar.yml"
    config.write_text(config.read_text().replace("  name: heartbeat\n", "  name: pulse\n"))
    steps = ran(workspace, key)  # its package names change: every app is prepared again
    assert "pulse:build:x86_64" in steps


def test_a_damaged_snapshot_is_ignored(workspace: Path, key: KeyPair) -> None:
    folder = workspace / ".pakman/cache/project"
    (folder / "plan.json").write_bytes(b"\x00garbage")
    for record in (folder / "apps").iterdir():
        record.write_bytes(b"not a record")
    assert ran(workspace, key) == set()
    with working_directory(workspace):
        assert inspect(settings(workspace, key)).nothing_to_do  # written anew


def test_a_removed_output_is_made_again(workspace: Path, key: KeyPair) -> None:
    shutil.rmtree(workspace / ".pakman/build/heartbeat/collect-x86_64")
    with working_directory(workspace):
        assert not inspect(settings(workspace, key)).nothing_to_do
    run = build(workspace, key)
    restored = {e["step"] for e in run.events if e["event"] == "restored"}
    assert restored == {"heartbeat:collect:x86_64"} and run.ran == set()


def test_summaries_stand_for_steps_found_done(workspace: Path, key: KeyPair) -> None:
    with working_directory(workspace):
        project = load_project(settings(workspace, key), lazy=True)
        assert not project.graph["heartbeat:collect:x86_64"].complete
        # Like any build tool, the build goes by what it found when it started:
        # an output removed meanwhile is made again by the next build.
        shutil.rmtree(workspace / ".pakman/build/heartbeat/collect-x86_64")
        code, reporter = run_build(project, json_events=True)
        assert (code, reporter.executed, reporter.restored) == (0, [], [])
        code, reporter = run_build(load_project(settings(workspace, key), lazy=True))
    assert code == 0
    assert reporter.restored == ["heartbeat:collect:x86_64"]


def test_the_plan_watches_what_keys_depend_on(workspace: Path, key: KeyPair) -> None:
    plan = load_plan(workspace / ".pakman/cache/project/plan.json")[0]
    watched = {path for path, _ in unpack(plan["watched"])}
    assert str(TEMPLATES / "APKBUILD") in watched
    assert str(key.private) in watched
    assert any(path.endswith("pipelines/default.yml") for path in watched)
    folder = workspace / ".pakman/cache/project/watched"
    app_paths = set()
    for app in plan["apps"]:
        packed = read_watched(folder, app["watched"])
        assert packed is not None
        app_paths |= {path for path, _ in unpack(packed)}
    assert str(workspace / "apps/heartbeat/bin/heartbeat") in app_paths
    assert str(workspace / "apps/heartbeat/instellar.yml") in app_paths


def test_an_apps_watched_paths_are_kept_by_digest(workspace: Path, key: KeyPair) -> None:
    folder = workspace / ".pakman/cache/project"
    names = [app["watched"] for app in load_plan(folder / "plan.json")[0]["apps"]]
    assert sorted(p.name for p in (folder / "watched").iterdir()) == sorted(names)
    # A change to one app writes one new file, named after its content.
    (workspace / "apps/heartbeat/bin/heartbeat").write_text("#!/bin/sh\necho changed\n")
    assert ran(workspace, key) == {
        "heartbeat:build:x86_64",
        "heartbeat:collect:x86_64",
        "heartbeat:package:x86_64",
        "repo:index:x86_64",
        "repo:sign:x86_64",
    }
    after = [app["watched"] for app in load_plan(folder / "plan.json")[0]["apps"]]
    assert after[0] == names[0] and after[1] != names[1]  # greet, heartbeat
    data = (folder / "watched" / after[1]).read_bytes()
    assert hashlib.sha256(data).hexdigest()[:32] == after[1]


@pytest.mark.parametrize("damage", ["remove", "empty", "garbage"])
def test_a_missing_or_damaged_watched_file_counts_as_a_change(
    workspace: Path, key: KeyPair, damage: str
) -> None:
    folder = workspace / ".pakman/cache/project"
    apps = load_plan(folder / "plan.json")[0]["apps"]
    kept = folder / "watched" / apps[1]["watched"]  # heartbeat's
    if damage == "remove":
        kept.unlink()
    else:
        kept.write_bytes(b"" if damage == "empty" else b"\x00garbage")
    with working_directory(workspace):
        assert inspect(settings(workspace, key)).changed == [1]
    assert ran(workspace, key) == set()  # prepared again, and nothing else changed
    with working_directory(workspace):
        assert inspect(settings(workspace, key)).nothing_to_do


def test_watched_files_no_plan_names_are_pruned(tmp_path: Path) -> None:
    folder = tmp_path / "watched"
    keep = {write_watched(folder, (f"/app{i}", b"x" * i)) for i in range(3)}
    for i in range(67):
        write_watched(folder, (f"/old{i}", b""))
    prune_watched(folder, keep)  # 70 files is not yet more than 2 * 3 + 64
    assert len(list(folder.iterdir())) == 70
    write_watched(folder, ("/one-more", b""))
    prune_watched(folder, keep)
    assert {p.name for p in folder.iterdir()} == keep
    assert read_watched(folder, sorted(keep)[0]) is not None


def test_a_refreshed_plan_is_the_plan_prepared_from_scratch(workspace: Path, key: KeyPair) -> None:
    plan_file = workspace / ".pakman/cache/project/plan.json"
    (workspace / "apps/heartbeat/bin/heartbeat").write_text("#!/bin/sh\necho changed\n")
    with working_directory(workspace):
        refreshed = load_project(settings(workspace, key))  # greet's entry is carried over
        assert refreshed.reused == 1
        after_refresh = load_plan(plan_file)[0]
        load_project(settings(workspace, key), use_snapshot=False)
        from_scratch = load_plan(plan_file)[0]
    assert after_refresh == from_scratch
