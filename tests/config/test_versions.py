"""Versions in a monorepo: per-app tags beside repository tags, and a later version
for every commit that changes an app past its tag (real git repositories)."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pakman.apk.version import compare_versions
from pakman.config.identity import clear_version_cache, resolve_identity
from pakman.config.model import AppConfig, Build, Run


@pytest.fixture(autouse=True)
def fresh_git(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No user configuration; what git said is forgotten between tests."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    for variable in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(variable, "t")
    for variable in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(variable, "t@example.com")
    clear_version_cache()
    yield
    clear_version_cache()


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def commit(repo: Path, *files: str) -> None:
    """Change each file (under the repository) and commit them together."""
    for name in files:
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(path.read_text() + "x" if path.exists() else "x")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", ", ".join(files))


@pytest.fixture
def mono(tmp_path: Path) -> Path:
    """A monorepo with apps/hello and apps/world, one commit."""
    repo = tmp_path / "mono"
    repo.mkdir()
    git(repo, "init", "-q")
    commit(repo, "apps/hello/f", "apps/world/f", "README")
    return repo


def app(repo: Path, name: str) -> AppConfig:
    return AppConfig(file=repo / "apps" / name / "instellar.yml", run=Run(name=name))


def version(repo: Path, name: str, **options: str) -> str:
    clear_version_cache()  # as each build does: git is asked again
    return resolve_identity(app(repo, name), env={}, **options).version  # type: ignore[arg-type]


def test_another_apps_tag_is_not_this_apps_version(mono: Path) -> None:
    git(mono, "tag", "v1.2.3")
    git(mono, "tag", "hello-v2.0.0")
    assert version(mono, "world") == "1.2.3"
    assert version(mono, "hello") == "2.0.0"


@pytest.mark.parametrize("tag", ["hello-v2.1.0", "hello@2.1.0", "hello@v2.1.0"])
def test_per_app_tags(mono: Path, tag: str) -> None:
    git(mono, "tag", tag)
    assert version(mono, "hello") == "2.1.0"
    assert version(mono, "world") == "0.0.0_p1"  # untagged: its commits count


def test_an_apps_tag_wins_over_the_repositorys(mono: Path) -> None:
    git(mono, "tag", "hello@0.4.0")
    git(mono, "tag", "v1.2.3")  # higher, and newer: still the app's own tag counts
    assert version(mono, "hello") == "0.4.0"
    assert version(mono, "world") == "1.2.3"


def test_an_app_whose_name_extends_another_does_not_take_its_tags(mono: Path) -> None:
    git(mono, "tag", "hello-world-v3.0.0")
    git(mono, "tag", "v1.0.0")
    assert version(mono, "hello") == "1.0.0"


def test_the_highest_of_an_apps_tags_counts(mono: Path) -> None:
    git(mono, "tag", "hello-v1.10.0")
    git(mono, "tag", "hello-v1.9.0")
    assert version(mono, "hello") == "1.10.0"


def test_a_tag_not_in_the_history_of_head_does_not_count(mono: Path) -> None:
    git(mono, "tag", "v1.0.0")
    git(mono, "checkout", "-qb", "other")
    commit(mono, "README")
    git(mono, "tag", "v9.0.0")
    git(mono, "checkout", "-q", "-")
    assert version(mono, "hello") == "1.0.0"


def test_a_commit_touching_the_app_gives_a_later_version(mono: Path) -> None:
    git(mono, "tag", "v1.2.3")
    commit(mono, "apps/hello/f")
    assert version(mono, "hello") == "1.2.3_p1"
    commit(mono, "apps/hello/g", "apps/world/f")
    assert version(mono, "hello") == "1.2.3_p2"
    assert version(mono, "world") == "1.2.3_p1"
    # apk sorts them after the release and before the next one
    chain = ["1.2.3", "1.2.3_p1", "1.2.3_p2", "1.2.4"]
    assert all(compare_versions(a, b) < 0 for a, b in itertools.pairwise(chain))


def test_a_commit_touching_another_app_keeps_the_version(mono: Path) -> None:
    git(mono, "tag", "v1.2.3")
    commit(mono, "apps/world/f", "README")
    assert version(mono, "hello") == "1.2.3"


def test_untagged_counts_the_apps_commits(mono: Path) -> None:
    assert version(mono, "hello") == "0.0.0_p1"
    commit(mono, "apps/world/f")
    assert version(mono, "hello") == "0.0.0_p1"
    commit(mono, "apps/hello/f")
    assert version(mono, "hello") == "0.0.0_p2"


def test_an_app_that_sees_git_counts_every_commit(mono: Path) -> None:
    """With `build.git: true` its outputs depend on HEAD: every commit moves its version."""
    git(mono, "tag", "v1.2.3")
    commit(mono, "README")
    seeing = dataclasses.replace(app(mono, "hello"), build=Build(git=True))
    clear_version_cache()
    assert resolve_identity(seeing, env={}).version == "1.2.3_p1"
    assert version(mono, "hello") == "1.2.3"


def test_an_app_never_committed_is_0_0_0(mono: Path) -> None:
    assert version(mono, "new") == "0.0.0"


def test_uncommitted_changes_keep_the_version(mono: Path) -> None:
    git(mono, "tag", "v1.2.3")
    (mono / "apps/hello/f").write_text("edited")
    assert version(mono, "hello") == "1.2.3"


def test_an_explicit_version_wins(mono: Path) -> None:
    git(mono, "tag", "hello-v2.0.0")
    commit(mono, "apps/hello/f")
    assert version(mono, "hello", version="v5.0.0") == "5.0.0"


def test_a_version_tag_with_a_suffix(mono: Path) -> None:
    git(mono, "tag", "hello-v1.2.3_rc1")
    assert version(mono, "hello") == "1.2.3_rc1"
    commit(mono, "apps/hello/f")
    later = version(mono, "hello")
    assert later == "1.2.3_rc1_p1"
    assert compare_versions("1.2.3_rc1", later) < 0 < compare_versions("1.2.3", later)


def test_a_commit_to_another_app_keeps_this_apps_steps(tmp_path: Path) -> None:
    """Unchanged apps keep their version and so their step keys: none of their steps
    runs or is restored (what the remote cache and `pakman affected` rely on)."""
    from build_support import build, make_key, make_workspace

    key = make_key(tmp_path / "key")
    workspace = make_workspace(tmp_path / "ws", ["heartbeat", "greet"])
    git(workspace, "init", "-q")
    git(workspace, "add", "apps")
    git(workspace, "commit", "-qm", "apps")
    git(workspace, "tag", "v1.0.0")
    assert build(workspace, key).code == 0
    commit(workspace, "apps/greet/notes.txt")
    run = build(workspace, key)
    assert run.code == 0, run.messages()
    touched = {str(e["step"]) for e in run.events if e["event"] in ("success", "restored")}
    assert "greet:package:noarch" in touched
    assert not {s for s in touched if s.startswith("heartbeat:")}
    repo = workspace / ".pakman/repo/x86_64"
    assert (repo / "greet-1.0.0_p1-r0.apk").is_file()
    assert (repo / "heartbeat-1.0.0-r0.apk").is_file()


def test_the_repository_keeps_a_published_packages_bytes(tmp_path: Path) -> None:
    """Other bytes under a published name: refused from a clean work tree (exit 1),
    replaced with a warning under --allow-rebuild or with uncommitted changes; a
    clean tree may bring back what a development build replaced."""
    from build_support import build, make_key, make_workspace

    first, second = make_key(tmp_path / "k1"), make_key(tmp_path / "k2")
    workspace = make_workspace(tmp_path / "ws", ["greet", "heartbeat"])
    git(workspace, "init", "-q")
    git(workspace, "add", "apps")
    git(workspace, "commit", "-qm", "apps")
    git(workspace, "tag", "v1.0.0")
    assert build(workspace, first).code == 0
    package = workspace / ".pakman/repo/x86_64/greet-1.0.0-r0.apk"
    published = package.read_bytes()

    # The same commit signed with another key: other bytes, same name.
    refused = build(workspace, second)
    assert refused.code == 1
    assert refused.failed == {"repo:sign:x86_64"}
    assert "x86_64/greet-1.0.0-r0.apk, " in refused.messages()
    assert "the repository already has this package with other bytes" in refused.messages()
    assert "--allow-rebuild" in refused.messages()
    assert package.read_bytes() == published

    # Uncommitted changes in the work tree: a development build replaces it...
    conf = workspace / "apps/greet/greet.conf"
    conf.write_text(conf.read_text() + "# draft\n")
    edited = build(workspace, first)
    assert edited.code == 0, edited.messages()
    assert "uncommitted changes" in str(edited.events)
    assert package.read_bytes() != published
    # ... and the clean tree, back, publishes what it published before (beside
    # a commit to another app: a repository this workspace never published).
    git(workspace, "checkout", "--", "apps/greet/greet.conf")
    commit(workspace, "apps/heartbeat/notes.txt")
    reverted = build(workspace, first)
    assert reverted.code == 0, reverted.messages()
    assert "repo:sign:x86_64" in reverted.ran
    assert package.read_bytes() == published
    assert (package.parent / "heartbeat-1.0.0_p1-r0.apk").is_file()

    allowed = build(workspace, second, "--allow-rebuild")
    assert allowed.code == 0, allowed.messages()
    assert "(--allow-rebuild)" in str(allowed.events)
    assert package.read_bytes() != published


def test_uncommitted_changes_ignore_the_workspace_state(mono: Path) -> None:
    from pakman.config.identity import uncommitted_changes

    (mono / ".pakman/repo").mkdir(parents=True)
    (mono / ".pakman/journal").write_text("x")
    assert uncommitted_changes(mono, (mono / ".pakman",)) is False
    assert uncommitted_changes(mono) is True
    (mono / "apps/hello/new").write_text("x")
    assert uncommitted_changes(mono, (mono / ".pakman",)) is True
    assert uncommitted_changes(mono.parent) is None


def test_uncommitted_changes_run_nothing_the_checkout_configures(
    mono: Path, tmp_path: Path
) -> None:
    """A checkout's own .git/config (from an archive) can name a clean filter and an
    fsmonitor hook: asking whether the tree is clean runs neither."""
    from pakman.config.identity import uncommitted_changes

    marker = tmp_path / "ran"
    (mono / ".gitattributes").write_text("* filter=evil\n")
    git(mono, "add", ".gitattributes")
    git(mono, "commit", "-qm", "attributes")
    git(mono, "config", "filter.evil.clean", f"sh -c 'touch {marker}; cat'")
    git(mono, "config", "core.fsmonitor", f"sh -c 'touch {marker}'")
    (mono / "apps/hello/f").write_text("changed")
    assert uncommitted_changes(mono) is True
    assert not marker.exists()
