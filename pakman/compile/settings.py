"""What a user chose for a build, and the digest of everything besides files that shapes it."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, replace

from pakman.workspace.layout import Layout

KEY_NAME_VARIABLE = "PAKMAN_KEY_NAME"
BUILD_BASE_VARIABLE = "PAKMAN_BUILD_BASE"
# What every build root has besides `dependencies.build`: the build environment
# of the original's GitHub Action (upmaru/pakman's action.yml sets up Alpine
# with upmaru/setup-alpine, whose base is alpine-baselayout, apk-tools,
# busybox, busybox-suid and musl-utils, and adds alpine-sdk (abuild,
# build-base, git), coreutils, tar, zip and cmake; its elixir and sudo serve
# pakman itself and the runner's user, not the app's build).
BUILD_BASE = (
    "alpine-baselayout",
    "apk-tools",
    "busybox",
    "busybox-suid",
    "musl-utils",
    "alpine-sdk",
    "coreutils",
    "tar",
    "zip",
    "cmake",
)
_BASE_WORD = re.compile(r"!?[A-Za-z0-9_.+:/-][^\s<>=~!]*(?:(?:><|<=|>=|~=|<|>|=|~)[^\s<>=~]\S*)?\Z")
BUILD_ON = ("host", "alpine")
DEFAULT_BUILD_ON = "alpine"  # --build-on when neither it nor PAKMAN_BUILD_ON is given
NETWORKS = ("host", "none")
PASSPHRASE_VARIABLE = "PAKMAN_KEY_PASSPHRASE"
# Never passed on to the app's own shell (build.command, a package body).
SECRET_VARIABLES = ("ABUILD_PRIVATE_KEY", PASSPHRASE_VARIABLE)
# The environment that shapes names, versions and keys.
_ENVIRONMENT = (
    "GITHUB_REPOSITORY",
    "GITHUB_WORKSPACE",
    "GITHUB_SERVER_URL",
    "GITHUB_RUN_NUMBER",
    "SOURCE_DATE_EPOCH",
    "PAKMAN_MIRROR",
    "PAKMAN_LICENSE",
    "PAKMAN_DESCRIPTION",
    BUILD_BASE_VARIABLE,
    KEY_NAME_VARIABLE,
    "ABUILD_PRIVATE_KEY",
    "ABUILD_PUBLIC_KEY",
    PASSPHRASE_VARIABLE,
)


@dataclass(frozen=True)
class Settings:
    """What a user chose on the command line or in the environment."""

    paths: tuple[str, ...] = (".",)
    root: str = "."  # the workspace: .pakman/ goes here
    only: tuple[str, ...] = ()  # app names to build (empty: all)
    strict: bool = False
    name: str | None = None
    organization: str | None = None
    version: str | None = None
    release: str | None = None
    url: str | None = None
    license: str | None = None  # --license (else PAKMAN_LICENSE, else instellar.yml's)
    description: str | None = None  # --description (else PAKMAN_DESCRIPTION, ...)
    repo: str | None = None
    key_file: str | None = None
    mirror: str | None = None
    offline: bool = False
    require_deps: bool = False
    verbose: bool = False
    alpine_keys: str | None = None
    pipeline: str = "default"
    level: int | None = None
    # --build-base-packages: names (and constraints) separated by spaces or commas;
    # None: PAKMAN_BUILD_BASE, else BUILD_BASE. "" means none.
    build_base: str | None = None
    # --build-on: where build.command runs: "alpine" (the default: a bubblewrap
    # sandbox on a root of the build lock's closure) or "host".
    build_on: str = DEFAULT_BUILD_ON
    network: str = "host"  # --network: what a sandboxed build sees, "host" or "none"
    # --shard I/N (pakman.compile.shard): build only shard I of N's apps, no repository.
    # In no key and not in inputs_digest: a full build reuses what a shard built.
    shard: str | None = None
    # --allow-rebuild: publish other bytes under a package file name the repository
    # has (see pakman.steps.repository); changes no key.
    allow_rebuild: bool = False
    # --remote-cache URL: fills the local store and receives what ran (pakman.doit.remote);
    # part of no key. Its auth header is read from the environment where it is sent.
    remote_cache: str | None = None
    remote_cache_readonly: bool = False
    remote_cache_timeout: str | None = None  # seconds
    # --remote-cache-all-outputs: every step the remote cache sends is put in place,
    # not only what a step that runs reads (pakman.doit.remote); changes no key.
    remote_cache_all_outputs: bool = False


def inputs_digest(settings: Settings, layout: Layout) -> str:
    """A digest of everything besides files that shapes the apps and the steps' keys."""
    environment = {}
    for name in _ENVIRONMENT:
        value = os.environ.get(name)
        # secrets count by digest only
        environment[name] = None if value is None else hashlib.sha256(value.encode()).hexdigest()
    # How much a build prints changes no key, nor which shard it builds, nor
    # --allow-rebuild, nor the remote cache (it only fills the store); the
    # workspace counts as layout.root, however it was reached (`.`, `..`).
    chosen = replace(
        settings,
        verbose=False,
        root=".",
        shard=None,
        allow_rebuild=False,
        remote_cache=None,
        remote_cache_readonly=False,
        remote_cache_timeout=None,
        remote_cache_all_outputs=False,
    )
    text = repr((chosen, str(layout.root), sorted(environment.items())))
    return hashlib.sha256(text.encode()).hexdigest()


def build_base_packages(settings: Settings) -> tuple[str, ...]:
    """The build base set: `--build-base-packages`, else PAKMAN_BUILD_BASE, else BUILD_BASE.

    Raises ConfigError for a word that is not a dependency (`name`, `name>=1.2`, `!name`).
    """
    text = settings.build_base
    if text is None:
        text = os.environ.get(BUILD_BASE_VARIABLE)
    if text is None:
        return BUILD_BASE
    words = tuple(w for w in re.split(r"[\s,]+", text) if w)
    wrong = [w for w in words if not _BASE_WORD.match(w)]
    if wrong:
        from pakman.errors import ConfigError

        raise ConfigError(
            f"--build-base-packages / {BUILD_BASE_VARIABLE}: {', '.join(wrong)}: not a package "
            "name with an optional constraint (e.g. build-base, git>=2.40, !name)"
        )
    return words


def sandbox_settings(settings: Settings) -> dict[str, str] | None:
    """What the build and package steps read of --build-on and --network; None on the host.

    Raises ConfigError for a value that is neither (PAKMAN_BUILD_ON, PAKMAN_NETWORK).
    """
    from pakman.errors import ConfigError

    if settings.build_on not in BUILD_ON:
        raise ConfigError(
            f"--build-on / PAKMAN_BUILD_ON {settings.build_on!r}: use {' or '.join(BUILD_ON)}"
        )
    if settings.network not in NETWORKS:
        raise ConfigError(
            f"--network / PAKMAN_NETWORK {settings.network!r}: use {' or '.join(NETWORKS)}"
        )
    if settings.build_on == "host":
        return None
    return {"build_on": settings.build_on, "network": settings.network}
