"""`pakman affected`: the apps and steps whose keys differ between a git revision and the working tree.

A small monorepo in git; each test changes something and compares what
`pakman affected` says with what changed (and, for --steps, with the keys of
`pakman graph` in a real checkout of the revision).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from build_support import KeyPair, make_key, working_directory, write_apps
from pakman.cli import main

APPS = ("alpha", "beta", "gamma")  # alpha needs beta's package at run time


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


def git(folder: Path, *args: str) -> str:
    """Run git in `folder` with a fixed author and a commit time that goes up each commit."""
    count = len(list((folder / ".git").glob("commit-*"))) if (folder / ".git").is_dir() else 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    moment = f"{1_700_000_000 + 1000 * count} +0000"
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.org",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.org",
        GIT_AUTHOR_DATE=moment,
        GIT_COMMITTER_DATE=moment,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL="/dev/null",
    )
    done = subprocess.run(
        ["git", *args], cwd=folder, env=env, capture_output=True, text=True, check=True
    )
    if args[0] == "commit":
        (folder / ".git" / f"commit-{count}").touch()  # the next commit is 1000 s later
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A monorepo of three apps, one commit; apps dated by their commits (no SOURCE_DATE_EPOCH)."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    root = write_apps(tmp_path / "mono", APPS)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "three apps")
    return root


def affected(repo: Path, key: KeyPair, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with (
        working_directory(repo),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main(["affected", "apps", "--offline", "--key", str(key.private), *args])
    return code, out.getvalue(), err.getvalue()


def apps(repo: Path, key: KeyPair, *args: str) -> list[str]:
    code, out, err = affected(repo, key, *args)
    assert code == 0, err
    return out.splitlines()


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def test_nothing_changed_nothing_affected(repo: Path, key: KeyPair) -> None:
    assert apps(repo, key) == []
    assert not list((repo / ".pakman/tmp").iterdir())  # the revision's tree is removed


def test_a_one_file_change_affects_only_its_app(repo: Path, key: KeyPair) -> None:
    (repo / "apps/gamma/data.txt").write_text("changed\n")
    assert apps(repo, key) == ["gamma"]
    # Committed: the other apps' commit times (their epochs) stay, so they stay unaffected.
    commit_all(repo, "gamma changes")
    assert apps(repo, key, "--since", "HEAD~1") == ["gamma"]
    assert apps(repo, key) == []
    assert apps(repo, key, "--since", "main") == []


def test_a_tag_every_version_reads_affects_every_app(repo: Path, key: KeyPair) -> None:
    (repo / "apps/gamma/data.txt").write_text("changed\n")
    commit_all(repo, "gamma changes")
    git(repo, "tag", "v1.2.3")  # HEAD~1 is 0.0.0, the working tree 1.2.3
    assert apps(repo, key, "--since", "HEAD~1") == list(APPS)
    assert apps(repo, key, "--since", "v1.2.3") == []


def test_an_option_both_sides_share_changes_nothing(repo: Path, key: KeyPair) -> None:
    # The revision is compiled with the same options as the working tree.
    assert apps(repo, key, "--release", "7", "--package-version", "2.0.0") == []


def test_added_and_removed_apps(repo: Path, key: KeyPair) -> None:
    write_apps(repo / "new", ["delta"])
    os.rename(repo / "new/apps/delta", repo / "apps/delta")
    subprocess.run(["rm", "-r", str(repo / "apps/beta"), str(repo / "new")], check=True)
    code, out, err = affected(repo, key, "--json")
    assert code == 0, err
    found = json.loads(out)
    assert found["since"] == "HEAD"
    assert found["commit"] == git(repo, "rev-parse", "HEAD")
    assert found["added"] == ["delta"] and found["removed"] == ["beta"]
    # alpha's runtime dependency beta is no longer one of the build's packages.
    assert found["apps"] == ["alpha", "beta", "delta"]
    assert found["steps"]["beta"] == sorted(found["steps"]["beta"])
    assert "beta:build:noarch" in found["steps"]["beta"]
    assert found["steps"]["alpha"] == ["alpha:fetch-deps-runtime:noarch", "alpha:package:noarch"]


def graph_keys(folder: Path, key: KeyPair) -> dict[str, str]:
    with working_directory(folder):
        assert main(["graph", "apps", "--offline", "--key", str(key.private), "-o", "g.json"]) == 0
    data = json.loads((folder / "g.json").read_text())
    (folder / "g.json").unlink()
    return {s["id"]: s["key"] for s in data["steps"]}


def test_steps_are_exactly_those_whose_keys_differ(
    repo: Path, key: KeyPair, tmp_path: Path
) -> None:
    (repo / "apps/beta/data.txt").write_text("changed\n")
    commit_all(repo, "beta changes")
    (repo / "apps/gamma/instellar.yml").write_text(
        (repo / "apps/gamma/instellar.yml").read_text().replace("cp data.txt", "cat data.txt >")
    )
    # The revision's keys from a real checkout of it (another folder: no path is in a key).
    git(tmp_path, "clone", "-q", str(repo), "then")
    git(tmp_path / "then", "checkout", "-q", "HEAD~1")
    before, after = graph_keys(tmp_path / "then", key), graph_keys(repo, key)
    differ = sorted(i for i in before if before[i] != after[i])
    assert {i.split(":")[0] for i in differ} == {"beta", "gamma", "repo"}
    code, out, err = affected(repo, key, "--since", "HEAD~1", "--steps")
    assert code == 0, err
    assert out.splitlines() == differ
    assert apps(repo, key, "--since", "HEAD~1") == ["beta", "gamma"]


def test_a_bad_ref_or_no_repository_is_a_usage_error(
    repo: Path, key: KeyPair, tmp_path: Path
) -> None:
    for ref in ("no-such-branch", "HEAD~5", "--output=x", ""):
        code, out, err = affected(repo, key, f"--since={ref}")
        assert (code, out) == (2, ""), err
        assert err.startswith("pakman: --since "), err
        assert "no such commit" in err or "not a git revision" in err
    assert not (repo / "x").exists()
    plain = write_apps(tmp_path / "plain", ["alpha"])
    code, out, err = affected(plain, key)
    assert code == 2
    assert "pakman affected compares git revisions, but" in err and "not in a git repository" in err


def make_hostile(repo: Path, tmp_path: Path) -> Path:
    """Give the repository a config that names programs a checkout, an index refresh, a
    diff or a signed commit's log would run (each appends to the file returned), and a
    signed last commit that changes gamma."""
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.sh"
    evil.write_text(f'#!/bin/sh\necho "$0 $*" >> {marker}\ncat\n')
    evil.chmod(0o755)
    (repo / ".gitattributes").write_text("*.txt filter=evil diff=evil\n")
    commit_all(repo, "attributes")
    # A signed commit that changes gamma: `git log` with log.showSignature runs gpg.program.
    (repo / "apps/gamma/data.txt").write_text("changed\n")
    git(repo, "add", "-A")
    tree = git(repo, "write-tree")
    parent = git(repo, "rev-parse", "HEAD")
    body = (
        f"tree {tree}\nparent {parent}\n"
        "author t <t@example.org> 1700009000 +0000\n"
        "committer t <t@example.org> 1700009000 +0000\n"
        "gpgsig -----BEGIN PGP SIGNATURE-----\n \n abc\n -----END PGP SIGNATURE-----\n\nsigned\n"
    )
    signed = subprocess.run(
        ["git", "hash-object", "-t", "commit", "-w", "--stdin"],
        cwd=repo,
        input=body,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    git(repo, "update-ref", "refs/heads/main", signed)
    with (repo / ".git/config").open("a") as config:
        config.write(
            f"[core]\n\tfsmonitor = {evil}\n\thooksPath = {tmp_path}\n"
            f'[filter "evil"]\n\tclean = {evil}\n\tsmudge = {evil}\n\tprocess = {evil}\n'
            f'[diff "evil"]\n\ttextconv = {evil}\n'
            f"[log]\n\tshowSignature = true\n[gpg]\n\tprogram = {evil}\n"
            f"[core]\n\tpager = {evil}\n"
        )
    # The config does run programs for plain git (so the test shows something).
    subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=repo, capture_output=True, check=False)
    assert marker.exists()
    marker.unlink()
    return marker


def test_a_hostile_git_config_runs_nothing(repo: Path, key: KeyPair, tmp_path: Path) -> None:
    """affected reads the revision as data, and asks git with those programs turned off."""
    marker = make_hostile(repo, tmp_path)

    (repo / "apps/beta/data.txt").write_text("changed\n")
    assert apps(repo, key, "--since", "HEAD~1") == ["beta", "gamma"]
    assert apps(repo, key, "--since", "HEAD~1", "--steps") != []
    assert apps(repo, key) == ["beta"]
    assert not marker.exists(), marker.read_text()


def test_a_build_graph_of_a_hostile_repository_runs_nothing(
    repo: Path, key: KeyPair, tmp_path: Path
) -> None:
    """What every build asks git (describe for versions, log for commit times) runs nothing."""
    marker = make_hostile(repo, tmp_path)
    assert graph_keys(repo, key)
    assert not marker.exists(), marker.read_text()


def test_an_app_whose_build_reads_the_commit_is_affected_by_any_commit(
    repo: Path, key: KeyPair
) -> None:
    config = repo / "apps/alpha/instellar.yml"
    config.write_text(config.read_text().replace("build:\n", "build:\n  git: true\n"))
    commit_all(repo, "alpha's build reads git")
    assert apps(repo, key) == []  # HEAD's commit on both sides
    (repo / "apps/gamma/data.txt").write_text("changed\n")
    commit_all(repo, "gamma changes")
    # alpha did not change, but its build sees HEAD~1's commit there and HEAD's here,
    # and so its version counts every commit (see Versions in the README).
    code, out, err = affected(repo, key, "--since", "HEAD~1", "--steps")
    assert code == 0, err
    assert [s for s in out.splitlines() if s.startswith("alpha:")] == [
        "alpha:build:noarch",
        "alpha:package:noarch",
        "alpha:render-apkbuild",
    ]
    assert apps(repo, key, "--since", "HEAD~1") == ["alpha", "gamma"]
