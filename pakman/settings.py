"""What a user chose for a build, and the digest of everything besides files that shapes it."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace

from pakman.layout import Layout

KEY_NAME_VARIABLE = "PAKMAN_KEY_NAME"
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
    repo: str | None = None
    key_file: str | None = None
    mirror: str | None = None
    offline: bool = False
    require_deps: bool = False
    verbose: bool = False
    alpine_keys: str | None = None
    pipeline: str = "default"
    level: int | None = None


def inputs_digest(settings: Settings, layout: Layout) -> str:
    """A digest of everything besides files that shapes the apps and the steps' keys."""
    environment = {}
    for name in _ENVIRONMENT:
        value = os.environ.get(name)
        # secrets count by digest only
        environment[name] = None if value is None else hashlib.sha256(value.encode()).hexdigest()
    chosen = replace(settings, verbose=False)  # how much a build prints changes no key
    text = repr((chosen, str(layout.root), sorted(environment.items())))
    return hashlib.sha256(text.encode()).hexdigest()
