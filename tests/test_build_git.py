"""`build.git: true`: the build sees the repository's commit and tags in a .git of its own.

These run --build-on host, where the host's git runs the commands for real
(`git rev-parse HEAD`, `git describe --tags`, `git log`, `git config`); what
a sandboxed build sees is tested in tests/test_build_on.py (the fixture root
has no git).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_build_on import ARCH, BASE, log, run, write_app

from build_support import KeyPair, make_key, working_directory
from pakman.cli import main

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "t")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "t@example.com")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def with_git(folder: Path) -> Path:
    """Add `git: true` to the build section of an app written by `write_app`."""
    config = folder / "instellar.yml"
    config.write_text(
        config.read_text().replace("build:\n  command:", "build:\n  git: true\n  command:")
    )
    return folder


GIT_COMMANDS = (
    "git rev-parse HEAD > out.txt\n"
    "git describe --tags >> out.txt\n"
    "git log -1 --format=%s >> out.txt\n"
    "git config core.hooksPath .husky\n"
    "git config core.hooksPath >> out.txt\n"
    # a commit in the build writes its objects into the copy, never into the alternates
    "echo x > new-file && git add new-file && git commit -q -m in-build"
)


def test_a_build_with_git_runs_git_and_reruns_on_a_commit_but_not_the_others(
    tmp_path: Path, key: KeyPair
) -> None:
    git(tmp_path, "init", "-q")
    with_git(write_app(tmp_path, "one", "[]", GIT_COMMANDS))
    write_app(tmp_path, "two", "[]", "echo two > out.txt")
    (tmp_path / "README").write_text("first\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "first")
    git(tmp_path, "tag", "-a", "-m", "release", "v1.2.3")  # annotated: describe reads the object
    (tmp_path / "README").write_text("second\n")
    git(tmp_path, "commit", "-q", "-am", "second")

    objects = sorted((tmp_path / ".git/objects").rglob("*"))
    done = run(tmp_path, key, None, "--offline")
    assert done.code == 0, done.messages()
    assert sorted((tmp_path / ".git/objects").rglob("*")) == objects
    seen = (tmp_path / f".pakman/build/one/build-{ARCH}/out.txt").read_text().splitlines()
    assert seen == [
        git(tmp_path, "rev-parse", "HEAD"),
        git(tmp_path, "describe", "--tags"),
        "second",
        ".husky",
    ]
    # `git config` wrote into the build's copy, not the workspace's repository
    config = git(tmp_path, "config", "--list", "--local")
    assert "hookspath" not in config.lower()
    assert run(tmp_path, key, None, "--offline").ran == set()

    # a commit outside both apps reruns the build that sees git, not the other
    (tmp_path / "README").write_text("third\n")
    git(tmp_path, "commit", "-q", "-am", "third")
    again = run(tmp_path, key, None, "--offline")
    assert again.code == 0, again.messages()
    assert f"one:build:{ARCH}" in again.ran
    assert f"two:build:{ARCH}" not in again.ran
    seen = (tmp_path / f".pakman/build/one/build-{ARCH}/out.txt").read_text().splitlines()
    assert seen[0] == git(tmp_path, "rev-parse", "HEAD") and seen[2] == "third"

    # so does a tag (describe reads them), even one that leaves the version alone
    git(tmp_path, "tag", "old", "HEAD~2")
    tagged = run(tmp_path, key, None, "--offline")
    assert tagged.code == 0, tagged.messages()
    assert f"one:build:{ARCH}" in tagged.ran
    assert f"two:build:{ARCH}" not in tagged.ran


def test_without_git_a_build_that_runs_git_fails_and_the_message_names_the_option(
    tmp_path: Path, key: KeyPair
) -> None:
    # The workspace is a repository: the build's git must not find it above its copy.
    git(tmp_path, "init", "-q")
    write_app(tmp_path, "one", "[]", "git rev-parse HEAD > out.txt")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "first")
    done = run(tmp_path, key, None, "--offline")
    assert done.code == 1
    assert "not a git repository" in log(tmp_path, "one")
    assert "`build.git: true`" in done.messages()


def test_a_build_with_git_outside_a_repository_is_a_located_error(
    tmp_path: Path, key: KeyPair
) -> None:
    with_git(write_app(tmp_path, "one", "[]", "echo > out.txt"))
    done = run(tmp_path, key, None, "--offline")
    assert done.code == 3
    assert "instellar.yml:" in done.messages() and "build.git" in done.messages()
    assert "not in a git repository" in done.messages()


def test_a_hostile_repository_runs_nothing_on_the_host_and_leaks_nothing(
    tmp_path: Path, key: KeyPair
) -> None:
    git(tmp_path, "init", "-q")
    with_git(
        write_app(
            tmp_path,
            "one",
            "[]",
            "cat .git/packed-refs > out.txt\ngit status --short > /dev/null\n"
            "git describe --tags --always >> out.txt",
        )
    )
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "first")
    git(tmp_path, "tag", "good")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("0123456789012345678901234567890123456789\n")  # looks like an id
    marker = outside / "ran"
    dot_git = tmp_path / ".git"
    # config-driven commands and hooks that would mark that they ran
    with (dot_git / "config").open("a") as config:
        config.write(f"[core]\n\tfsmonitor = touch {marker}-fsmonitor\n")
        config.write(f'[alias]\n\tdescribe = "!touch {marker}-alias"\n')
    for hook in ("post-checkout", "reference-transaction", "pre-commit", "post-index-change"):
        path = dot_git / "hooks" / hook
        path.write_text(f"#!/bin/sh\ntouch {marker}-{hook}\n")
        path.chmod(0o755)
    # a tag that is a symbolic link to a file outside the repository
    (dot_git / "refs/tags/evil").symlink_to(secret)
    done = run(tmp_path, key, None, "--offline")
    assert done.code == 0, done.messages()
    seen = (tmp_path / f".pakman/build/one/build-{ARCH}/out.txt").read_text()
    assert "refs/tags/good" in seen
    assert "evil" not in seen and "0123456789" not in seen
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]  # no marker

    # an object folder that is a symbolic link (it could lead anywhere): refused, located
    shutil.move(dot_git / "objects", outside / "objects")
    (dot_git / "objects").symlink_to(outside / "objects")
    (tmp_path / "apps/one/change").write_text("x\n")
    refused = run(tmp_path, key, None, "--offline")
    assert refused.code == 3
    assert "build.git" in refused.messages() and "symbolic link" in refused.messages()


def test_a_commit_reruns_the_build_with_a_fixed_version_and_epoch_and_explain_says_why(
    tmp_path: Path,
    key: KeyPair,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # With --version and SOURCE_DATE_EPOCH nothing else asks git: the commit still counts.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    git(tmp_path, "init", "-q")
    with_git(write_app(tmp_path, "one", "[]", "git rev-parse HEAD > out.txt"))
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "first")
    assert run(tmp_path, key, None, "--offline", "--package-version", "1.0.0").code == 0
    git(tmp_path, "commit", "-q", "--allow-empty", "-m", "second")
    # Other bytes under the pinned version, from a clean tree: refused unless allowed.
    refused = run(tmp_path, key, None, "--offline", "--package-version", "1.0.0")
    assert refused.code == 1 and "--allow-rebuild" in refused.messages()
    assert f"one:build:{ARCH}" in refused.ran
    again = run(tmp_path, key, None, "--offline", "--package-version", "1.0.0", "--allow-rebuild")
    assert again.code == 0, again.messages()
    assert again.ran == {f"repo:sign:{ARCH}"}
    second = git(tmp_path, "rev-parse", "HEAD")
    assert (tmp_path / f".pakman/build/one/build-{ARCH}/out.txt").read_text().strip() == second

    git(tmp_path, "commit", "-q", "--allow-empty", "-m", "third")
    third = git(tmp_path, "rev-parse", "HEAD")
    capsys.readouterr()
    with working_directory(tmp_path):
        assert (
            main(
                [
                    "explain",
                    "-p",
                    "apps",
                    "--offline",
                    "--package-version",
                    "1.0.0",
                    "--build-base-packages",
                    BASE,
                ]
            )
            == 0
        )
    said = capsys.readouterr().out
    reason = f"the git commit changed: {second[:12]} -> {third[:12]}"
    assert f"one:build:{ARCH} will run:\n  - {reason}" in said


def test_an_app_at_the_top_of_its_repository_gets_an_index_git_status_agrees_with(
    tmp_path: Path, key: KeyPair
) -> None:
    # What the copy leaves out (instellar.yml) is skip-worktree, as in a sparse checkout.
    app = with_git(
        write_app(
            tmp_path,
            "one",
            "[]",
            'echo "status=[$(git status --porcelain --untracked-files=no)]'
            ' describe=$(git describe --tags --dirty)" > out.txt',
        )
    )
    (app / "file").write_text("one\n")
    git(app, "init", "-q")
    git(app, "add", "-A")
    git(app, "commit", "-q", "-m", "first")
    git(app, "tag", "v1.0.0")
    done = run(tmp_path, key, None, "--offline")
    assert done.code == 0, done.messages()
    seen = (tmp_path / f".pakman/build/one/build-{ARCH}/out.txt").read_text().strip()
    assert seen == "status=[] describe=v1.0.0"

    (app / "file").write_text("changed, not committed\n")
    again = run(tmp_path, key, None, "--offline")
    assert again.code == 0, again.messages()
    seen = (tmp_path / f".pakman/build/one/build-{ARCH}/out.txt").read_text().strip()
    assert seen == "status=[ M file] describe=v1.0.0-dirty"
