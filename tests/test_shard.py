"""CI shards (`pakman build --shard I/N`, PAKMAN_SHARD): each app in one shard, no repository.

Shards 1..N partition the apps by a stable hash of their package names, the
same in every process; a shard build runs its apps' steps and no repository
step; a later full build in the same workspace runs only index and sign and
writes the repository a single build writes.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from build_support import (
    KeyPair,
    build,
    make_key,
    subprocess_env,
    working_directory,
    write_apps,
)
from pakman.cli import main
from pakman.compile.shard import partition, shard_of

APPS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
# alpha (shard 3 of 3) needs beta's package (shard 1 of 3) at run time: keys
# must be a full build's though beta is not in alpha's shard.
REPOSITORY_STEPS = {"repo:index:x86_64", "repo:sign:x86_64"}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


def graph_json(workspace: Path, key: KeyPair, *args: str, seed: str = "0") -> dict[str, object]:
    """`pakman graph --format json` in a process of its own, with this PYTHONHASHSEED."""
    env = {**subprocess_env(), "PYTHONHASHSEED": seed}
    command = [sys.executable, "-m", "pakman", "graph", "apps", "--offline"]
    run = subprocess.run(
        [*command, "--key", str(key.private), *args],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    data: dict[str, object] = json.loads(run.stdout)
    return data


def apps_of(data: dict[str, object]) -> set[str]:
    steps = data["steps"]
    assert isinstance(steps, list)
    return {str(s["app"]) for s in steps}


def test_the_hash_is_sha256_of_the_package_name() -> None:
    # Pinned: a CI matrix on several machines (and pakman versions) must agree.
    assert [shard_of(name, 3) for name in APPS] == [3, 1, 1, 2, 3, 2, 3, 1]
    assert partition(APPS, 1) == {1: sorted(APPS)}


def test_shards_partition_the_apps_in_every_process(tmp_path: Path, key: KeyPair) -> None:
    workspace = write_apps(tmp_path, APPS)
    shards = [apps_of(graph_json(workspace, key, f"--shard={i}/3", seed=str(i))) for i in (1, 2, 3)]
    assert sorted(a for shard in shards for a in shard) == sorted(APPS)  # each app once
    assert all(shards)
    # The same shards in processes with other hash seeds.
    again = [apps_of(graph_json(workspace, key, "--shard", f"{i}/3", seed="99")) for i in (1, 2, 3)]
    assert again == shards
    assert shards == [set(partition(APPS, 3)[i]) for i in (1, 2, 3)]


def test_graph_shows_what_a_shard_builds(tmp_path: Path, key: KeyPair) -> None:
    workspace = write_apps(tmp_path, APPS)
    whole = graph_json(workspace, key)
    shard = graph_json(workspace, key, "--shard", "2/3")
    assert shard["shard"] == "2/3" and "shard" not in whole
    wanted = set(partition(APPS, 3)[2])
    steps = whole["steps"]
    assert isinstance(steps, list)
    # Exactly the shard's apps' steps, with the keys a full build gives them.
    expected = [(s["id"], s["key"]) for s in steps if s["app"] in wanted]
    shard_steps = shard["steps"]
    assert isinstance(shard_steps, list)
    assert [(s["id"], s["key"]) for s in shard_steps] == expected
    with working_directory(workspace):
        assert (
            main(["graph", "apps", "--offline", "--format=dot", "--shard=2/3", "-o", "g.dot"]) == 0
        )
    dot = (workspace / "g.dot").read_text()
    assert all(f'"{a}:build:noarch"' in dot for a in wanted)
    assert not any(f'"{a}:build:noarch"' in dot for a in set(APPS) - wanted)
    assert "repo:sign" not in dot


def test_shard_builds_then_a_full_build_publish_what_one_build_does(
    tmp_path: Path, key: KeyPair
) -> None:
    sharded = write_apps(tmp_path / "sharded", APPS)
    built: list[str] = []
    for i in (1, 2, 3):
        run = build(sharded, key, "--shard", f"{i}/3")
        assert run.code == 0, run.messages()
        assert not run.ran & REPOSITORY_STEPS
        built += [s.split(":")[0] for s in run.ran if s.split(":")[1] == "build"]
        summary = run.events[-1]
        assert summary["shard"] == f"{i}/3" and summary["apps"] == len(partition(APPS, 3)[i])
        assert summary["repository"] == ""
        assert not (sharded / ".pakman/repo").exists()  # a shard writes no repository
    assert sorted(built) == sorted(APPS)  # every app built once, in its shard
    full = build(sharded, key)
    assert full.code == 0, full.messages()
    assert full.ran == REPOSITORY_STEPS  # no build command ran again

    single = write_apps(tmp_path / "single", APPS)
    one = build(single, key)
    assert one.code == 0, one.messages()
    assert len(published(single)) == len(APPS) + 1  # the packages and APKINDEX.tar.gz
    assert published(sharded) == published(single)


def published(workspace: Path) -> dict[str, bytes]:
    """What the repository serves: its files by path, under .pakman/repo/<arch>/."""
    return {
        path.relative_to(workspace).as_posix(): path.read_bytes()
        for path in sorted((workspace / ".pakman/repo").glob("*/*"))
        if not path.parent.name.startswith(".") and path.is_file()
    }


def test_a_shard_says_it_wrote_no_repository(tmp_path: Path, key: KeyPair) -> None:
    workspace = write_apps(tmp_path, APPS)
    out = io.StringIO()
    with working_directory(workspace), contextlib.redirect_stdout(out):
        code = main(["build", "apps", "--offline", "--key", str(key.private), "--shard", "3/3"])
    assert code == 0
    count = len(partition(APPS, 3)[3])
    assert out.getvalue().splitlines()[-1] == (
        f"shard 3/3: {count} apps built; no repository written "
        "(run `pakman build` without --shard to publish)"
    )


def test_plain_doit_builds_the_shard_of_pakman_shard(tmp_path: Path, key: KeyPair) -> None:
    workspace = write_apps(tmp_path, APPS)
    (workspace / "dodo.py").write_text("from pakman.dodo import *  # noqa: F403\n")
    env = subprocess_env(
        PAKMAN_PATH="apps", PAKMAN_OFFLINE="1", PAKMAN_KEY=str(key.private), PAKMAN_SHARD="1/3"
    )
    run = subprocess.run(
        [sys.executable, "-m", "doit"], cwd=workspace, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    ran = {line.split()[1] for line in run.stdout.splitlines() if line.startswith("ran ")}
    assert {step.split(":")[0] for step in ran} == set(partition(APPS, 3)[1])
    assert {f"{a}:build:noarch" for a in partition(APPS, 3)[1]} <= ran
    assert not (workspace / ".pakman/repo").exists()


@pytest.mark.parametrize("value", ["0/3", "4/3", "1/0", "x", "1/3/2", "-1/3", "²/3"])
def test_a_bad_shard_is_a_usage_error(tmp_path: Path, key: KeyPair, value: str) -> None:
    workspace = write_apps(tmp_path, ("alpha",))
    err = io.StringIO()
    with (
        working_directory(workspace),
        contextlib.redirect_stderr(err),
        pytest.raises(SystemExit) as exited,
    ):
        main(["build", "apps", "--offline", "--shard", value])
    assert exited.value.code == 2
    assert "--shard" in err.getvalue() and "I/N" in err.getvalue()


def test_a_bad_pakman_shard_is_a_usage_error(
    tmp_path: Path, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = write_apps(tmp_path, ("alpha",))
    monkeypatch.setenv("PAKMAN_SHARD", "3/2")
    err = io.StringIO()
    with working_directory(workspace), contextlib.redirect_stderr(err):
        code = main(["build", "apps", "--offline", "--key", str(key.private)])
    assert code == 2
    assert "PAKMAN_SHARD '3/2'" in err.getvalue()
    assert not (workspace / ".pakman/steps").exists()  # said before any step ran
