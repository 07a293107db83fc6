from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pakman.config.identity import (
    clear_version_cache,
    resolve_identity,
    version_from_tag,
)
from pakman.config.model import AppConfig, Run
from pakman.config.rules import slugify
from pakman.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("artellectual.com", "artellectual-com"),
        ("My_App", "my-app"),
        ("  Crème Brûlée!  ", "creme-brulee"),
        ("a--b__c..d", "a-b-c-d"),
        ("uplink-caddy", "uplink-caddy"),
    ],
)
def test_slugify(text: str, slug: str) -> None:
    assert slugify(text) == slug


@pytest.mark.parametrize(
    ("tag", "version"),
    [
        ("1.2.3", "1.2.3"),
        ("v1.2.3", "1.2.3"),
        ("1.2.3-rc1", "1.2.3"),
        ("1.2.3_rc1", "1.2.3_rc1"),
        ("1.2.3.4", "1.2.3.4"),
        ("1.2.3foo", "1.2.3"),
        ("2.0", None),
        ("deadbee", None),
        ("release-1", None),
        ("hello-v1.2.3", None),
        ("hello@1.2.3", None),
        ("", None),
    ],
)
def test_version_from_tag(tag: str, version: str | None) -> None:
    assert version_from_tag(tag) == version


def make_app(tmp_path: Path, folder: str = "My App", run_name: str | None = "svc") -> AppConfig:
    root = tmp_path / folder
    root.mkdir(parents=True, exist_ok=True)
    run = Run(name=run_name) if run_name else None
    return AppConfig(file=root / "instellar.yml", run=run)


def test_name_order(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    env = {"GITHUB_REPOSITORY": "Upmaru/artellectual.com"}
    assert resolve_identity(app, name="Explicit", version="1.0.0", env=env).name == "explicit"
    with_repo = resolve_identity(app, version="1.0.0", env=env)
    assert (with_repo.organization, with_repo.name) == ("upmaru", "artellectual-com")
    assert with_repo.keyname == "upmaru-artellectual-com"
    assert resolve_identity(app, version="1.0.0", env={}).name == "svc"
    assert (
        resolve_identity(make_app(tmp_path, run_name=None), version="1.0.0", env={}).name
        == "my-app"
    )
    assert resolve_identity(app, version="1.0.0", env={}).organization == "local"
    assert (
        resolve_identity(app, organization="ACME Inc", version="1.0.0", env={}).organization
        == "acme-inc"
    )


def test_github_repository_names_only_the_workspace_app(tmp_path: Path) -> None:
    app = make_app(tmp_path, folder="repo/apps/web", run_name="web")
    env = {"GITHUB_REPOSITORY": "org/repo", "GITHUB_WORKSPACE": str(tmp_path / "repo")}
    assert resolve_identity(app, version="1.0.0", env=env).name == "web"
    env["GITHUB_WORKSPACE"] = str(app.root)
    assert resolve_identity(app, version="1.0.0", env=env).name == "repo"


def test_release(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    assert resolve_identity(app, version="1.0.0", env={}).release == 0
    assert resolve_identity(app, version="1.0.0", env={"GITHUB_RUN_NUMBER": "42"}).release == 42
    identity = resolve_identity(app, version="1.0.0", release="7", env={"GITHUB_RUN_NUMBER": "42"})
    assert (identity.release, identity.full_version) == (7, "1.0.0-r7")
    with pytest.raises(ConfigError, match="GITHUB_RUN_NUMBER='abc' is not allowed"):
        resolve_identity(app, version="1.0.0", env={"GITHUB_RUN_NUMBER": "abc"})
    with pytest.raises(ConfigError, match="--release='-1' is not allowed"):
        resolve_identity(app, version="1.0.0", release="-1", env={})


def test_explicit_version(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    assert resolve_identity(app, version="v2.1.0_rc1", env={}).version == "2.1.0_rc1"
    with pytest.raises(
        ConfigError, match=re.escape("the version '1.2 beta' is not allowed: an Alpine version")
    ):
        resolve_identity(app, version="1.2 beta", env={})


def test_bad_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="gives no usable name"):
        resolve_identity(make_app(tmp_path), name="!!!", version="1.0.0", env={})


def test_names_fit_in_file_names(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    assert resolve_identity(app, name="a" * 100, version="1.0.0", env={}).name == "a" * 100
    with pytest.raises(ConfigError, match="at most 100 characters"):
        resolve_identity(app, name="a" * 101, version="1.0.0", env={})


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def test_version_from_git_tags(tmp_path: Path) -> None:
    app = make_app(tmp_path, folder="repo")
    assert resolve_identity(app, env={}).version == "0.0.0"  # not a repository
    clear_version_cache()
    git(app.root, "init", "-q")
    (app.root / "f").write_text("x")
    git(app.root, "add", "f")
    git(app.root, "commit", "-qm", "one")
    assert resolve_identity(app, env={}).version == "0.0.0_p1"  # no tag: its commits count
    clear_version_cache()
    git(app.root, "tag", "v1.4.2")
    assert resolve_identity(app, env={}).version == "1.4.2"
    clear_version_cache()
    (app.root / "f").write_text("y")
    git(app.root, "commit", "-qam", "two")
    assert resolve_identity(app, env={}).version == "1.4.2_p1"
    clear_version_cache()


def test_url(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    env = {"GITHUB_REPOSITORY": "Upmaru/artellectual.com"}
    assert (
        resolve_identity(app, version="1.0.0", env=env).url
        == "https://github.com/Upmaru/artellectual.com"
    )
    env["GITHUB_SERVER_URL"] = "https://git.example.com"
    assert (
        resolve_identity(app, version="1.0.0", env=env).url
        == "https://git.example.com/Upmaru/artellectual.com"
    )
    assert resolve_identity(app, version="1.0.0", env={}).url == "https://github.com/local/svc"
    assert (
        resolve_identity(app, version="1.0.0", url="https://x.org/a", env={}).url
        == "https://x.org/a"
    )
    with pytest.raises(ConfigError, match="is not allowed: an http"):
        resolve_identity(app, version="1.0.0", url="https://x.org/a b", env={})
