"""CI shards across machines through the remote cache (a real nginx on 127.0.0.1).

Shards 1/3, 2/3 and 3/3 run in three clones of one monorepo, each pushing to
the cache; a final `pakman build` in a fourth clone restores every app and
publishes the repository one machine builds alone, byte for byte (the suite's
SOURCE_DATE_EPOCH, one signing key). The apps' build commands append to a log
outside every clone, so "built once" counts commands that really ran.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from build_support import BuildRun, KeyPair, build, make_key, subprocess_env, write_apps
from nginx_support import Nginx
from pakman.compile.shard import partition

APPS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
SHARDS = partition(APPS, 3)
REPOSITORY_STEPS = {"repo:index:x86_64", "repo:sign:x86_64"}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


def write_clone(root: Path, log: Path) -> Path:
    """A clone of the monorepo: APPS, each build command noting its app in `log`.

    The same text in every clone (the log's path is absolute), so the same keys.
    """
    return write_apps(root, APPS, log)


def commands_run(log: Path) -> list[str]:
    """The apps whose build command ran since the log was last emptied, then empty it."""
    names = log.read_text().split() if log.exists() else []
    log.write_text("")
    return names


def built(workspace: Path, key: KeyPair, *args: str) -> BuildRun:
    run = build(workspace, key, *args)
    assert run.code == 0, run.messages()
    return run


def restored(run: BuildRun) -> set[str]:
    return {str(e["step"]) for e in run.events if e["event"] == "restored"}


def graph_steps(workspace: Path, key: KeyPair, *args: str) -> set[str]:
    """The step ids of `pakman graph --format json` in `workspace` (a process of its own)."""
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pakman", "graph", "apps", "--offline", "--format", "json"),
            *("--key", str(key.private), *args),
        ],
        cwd=workspace,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return {str(step["id"]) for step in json.loads(run.stdout)["steps"]}


def published(workspace: Path) -> dict[str, bytes]:
    """What the repository serves: its files by path under .pakman/repo/<arch>/."""
    return {
        path.relative_to(workspace / ".pakman/repo").as_posix(): path.read_bytes()
        for path in sorted((workspace / ".pakman/repo").glob("*/*"))
        if not path.parent.name.startswith(".") and path.is_file()
    }


def puts(server: Nginx) -> int:
    return server.access_log().count('"PUT ')


def test_three_shards_then_a_publish_in_a_fourth_clone(
    tmp_path: Path, key: KeyPair, nginx: Nginx
) -> None:
    log = tmp_path / "build-commands.log"
    remote = ("--remote-cache", nginx.url)
    every_app_step: set[str] = set()
    for i in (1, 2, 3):
        clone = write_clone(tmp_path / f"shard-{i}", log)
        shown = graph_steps(clone, key, "--shard", f"{i}/3")
        run = built(clone, key, "--shard", f"{i}/3", *remote)
        # The shard did what `pakman graph --shard` shows, built its apps, each once,
        # and wrote no repository. Only steps with the same key as another app's (the
        # apps' dependencies are alike) came from the store or the cache.
        assert sorted(commands_run(log)) == SHARDS[i]
        assert run.ran | restored(run) == shown
        assert {s for s in restored(run) if ":fetch-deps-" not in s} == set()
        assert {s.split(":")[0] for s in shown} == set(SHARDS[i])
        assert not (clone / ".pakman/repo").exists()
        every_app_step |= shown

    final = write_clone(tmp_path / "publish", log)
    publish = built(final, key, *remote)
    assert commands_run(log) == []  # no build command ran in the fourth clone
    assert publish.ran == REPOSITORY_STEPS
    assert restored(publish) == every_app_step
    assert "0 uploaded, 0 misses" in publish.stderr

    single = write_clone(tmp_path / "single", log)
    alone = built(single, key)  # one machine, no cache
    assert sorted(commands_run(log)) == sorted(APPS)
    assert alone.ran | restored(alone) == every_app_step | REPOSITORY_STEPS
    assert len(published(single)) == len(APPS) + 1  # the packages and APKINDEX.tar.gz
    assert published(final) == published(single)


def test_a_read_only_shard_uploads_nothing(tmp_path: Path, key: KeyPair, nginx: Nginx) -> None:
    # main's CI filled the cache; a pull request changes one app of shard 1 and runs
    # shard 1 read-only: it restores the rest, builds the change, and writes nothing.
    log = tmp_path / "build-commands.log"
    main_branch = write_clone(tmp_path / "main", log)
    built(main_branch, key, "--remote-cache", nginx.url, "--shard", "1/3")
    commands_run(log)
    records = sorted(p.name for p in (nginx.root / "ac").iterdir())
    blobs = sorted(p.name for p in (nginx.root / "cas").iterdir())
    uploads = puts(nginx)
    assert uploads == len(records) + len(blobs) > 0

    changed = SHARDS[1][0]
    pull_request = write_clone(tmp_path / "pr", log)
    (pull_request / "apps" / changed / "data.txt").write_text("changed\n")
    run = built(
        pull_request, key, "--remote-cache", nginx.url, "--remote-cache-readonly", "--shard", "1/3"
    )
    assert commands_run(log) == [changed]
    assert {s.split(":")[0] for s in run.ran} == {changed}
    others = set(SHARDS[1]) - {changed}
    assert {s for s in restored(run) if ":build:" in s} == {f"{a}:build:noarch" for a in others}
    assert "0 uploaded" in run.stderr and "(read-only)" in run.stderr
    assert puts(nginx) == uploads  # not one PUT more
    assert sorted(p.name for p in (nginx.root / "ac").iterdir()) == records
    assert sorted(p.name for p in (nginx.root / "cas").iterdir()) == blobs
