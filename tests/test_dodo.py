"""Plain doit's settings come from PAKMAN_* variables, one per `pakman build` option."""

from __future__ import annotations

import pytest

from pakman.compile.settings import Settings
from pakman.dodo import VARIABLES, settings_from_environment
from support import ROOT


def test_every_variable_reaches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "PAKMAN_PATH": "apps:more",
        "PAKMAN_ONLY": "pyweb, greet",
        "PAKMAN_STRICT": "1",
        "PAKMAN_PACKAGE_NAME": "name",
        "PAKMAN_ORGANIZATION": "org",
        "PAKMAN_PACKAGE_VERSION": "1.2.3",
        "PAKMAN_RELEASE": "7",
        "PAKMAN_URL": "https://example.org/app",
        "PAKMAN_LICENSE": "Apache-2.0",
        "PAKMAN_DESCRIPTION": "An app",
        "PAKMAN_REPO": "out/repo",
        "PAKMAN_KEY": "keys/me.rsa",
        "PAKMAN_MIRROR": "http://127.0.0.1:9/alpine",
        "PAKMAN_OFFLINE": "yes",
        "PAKMAN_REQUIRE_DEPS": "true",
        "PAKMAN_ALPINE_KEYS": "keys/alpine",
        "PAKMAN_VERBOSE": "1",
        "PAKMAN_BUILD_BASE": "busybox git",
        "PAKMAN_BUILD_ON": "alpine",
        "PAKMAN_NETWORK": "none",
        "PAKMAN_SHARD": "2/3",
        "PAKMAN_ALLOW_REBUILD": "1",
        "PAKMAN_REMOTE_CACHE": "http://127.0.0.1:9/cache",
        "PAKMAN_REMOTE_CACHE_READONLY": "1",
        "PAKMAN_REMOTE_CACHE_TIMEOUT": "2.5",
        "PAKMAN_REMOTE_CACHE_ALL_OUTPUTS": "1",
    }
    assert set(values) == set(VARIABLES)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    assert settings_from_environment() == Settings(
        paths=("apps", "more"),
        only=("pyweb", "greet"),
        strict=True,
        name="name",
        organization="org",
        version="1.2.3",
        release="7",
        url="https://example.org/app",
        license="Apache-2.0",
        description="An app",
        repo="out/repo",
        key_file="keys/me.rsa",
        mirror="http://127.0.0.1:9/alpine",
        offline=True,
        require_deps=True,
        alpine_keys="keys/alpine",
        verbose=True,
        build_base="busybox git",
        build_on="alpine",
        network="none",
        shard="2/3",
        allow_rebuild=True,
        remote_cache="http://127.0.0.1:9/cache",
        remote_cache_readonly=True,
        remote_cache_timeout="2.5",
        remote_cache_all_outputs=True,
    )


def test_unset_or_zero_means_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PAKMAN_OFFLINE", "0")
    assert settings_from_environment() == Settings()
    # plain doit builds in the stack's Alpine, as pakman build does
    assert settings_from_environment().build_on == "alpine"


def test_the_readme_lists_every_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    assert [name for name in VARIABLES if f"`{name}" not in readme] == []
