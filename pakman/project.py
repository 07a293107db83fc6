"""A build, prepared: the apps found, validated and named, their sources
fingerprinted, the signing key checked, and the step graph compiled.

`pakman build`, `pakman graph`, `pakman run-step` and plain `doit` (through
`pakman.dodo`) all start here, so they see the same steps with the same keys.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pakman.errors import ConfigError, Diagnostic
from pakman.fingerprint import SourceTree, StatCache, fingerprint_tree
from pakman.graph import AppBuild, Layout, StepGraph, compile_graph
from pakman.identity import resolve_identity
from pakman.lint import lint_app
from pakman.pipeline import load_pipeline
from pakman.render import check_app_files, template_digest
from pakman.schema import load_app
from pakman.steps import DEFAULT_MIRROR, RunContext
from pakman.workspace import find_configs


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


@dataclass
class Project:
    settings: Settings
    layout: Layout
    apps: list[AppBuild]
    graph: StepGraph
    context: RunContext
    warnings: list[Diagnostic] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things to tell the user (e.g. a new key)


def load_project(settings: Settings) -> Project:
    """Find, validate and name every app under the paths, then compile the build graph."""
    layout = Layout.at(Path(settings.root), Path(settings.repo) if settings.repo else None)
    configs = find_configs(settings.paths, skip_ignored=True)
    if len(configs) > 1 and settings.name:
        raise ConfigError("--package-name names one app, but several were found; use --only")
    apps: list[AppBuild] = []
    warnings: list[Diagnostic] = []
    errors: list[Diagnostic] = []
    for config_path in configs:
        try:
            config, found = load_app(config_path, strict=settings.strict)
        except ConfigError as exc:
            errors.extend(exc.diagnostics)
            continue
        warnings.extend(found)
        identity = resolve_identity(
            config,
            name=settings.name,
            organization=settings.organization,
            version=settings.version,
            release=settings.release,
            url=settings.url,
        )
        try:
            check_app_files(config)
        except ConfigError as exc:
            errors.extend(exc.diagnostics)
            continue
        warnings.extend(lint_app(config, identity))
        apps.append(AppBuild(config, identity))
    if errors:
        raise ConfigError(errors)
    if settings.only:
        unknown = sorted(set(settings.only) - {a.name for a in apps})
        if unknown:
            names = ", ".join(sorted(a.name for a in apps))
            raise ConfigError(f"--only {', '.join(unknown)}: no such app (found: {names})")
        apps = [a for a in apps if a.name in settings.only]

    cache = StatCache(layout.state / "cache" / "stat-cache.pickle")
    sources: dict[str, SourceTree] = {}
    for app in apps:
        prefix = os.path.relpath(app.config.root, layout.root) + "/"
        sources[app.name] = fingerprint_tree(app.config.root, cache, cache_prefix=prefix)
    cache.save()

    notes: list[str] = []
    key_file, key_name, key_fingerprint = _signing_key(settings, layout, apps, notes)
    context = RunContext(
        layout=layout,
        key_file=key_file,
        key_name=key_name,
        mirror=settings.mirror or os.environ.get("PAKMAN_MIRROR") or DEFAULT_MIRROR,
        offline=settings.offline,
        require_deps=settings.require_deps,
        verbose=settings.verbose,
        alpine_keys=settings.alpine_keys or "",
        source_date_epoch=_source_date_epoch(),
        level=settings.level,
    )

    graph = compile_graph(
        apps,
        load_pipeline(settings.pipeline),
        layout,
        sources=sources,
        key_fingerprint=key_fingerprint,
        epoch=context.source_date_epoch,
        mirror={
            "url": context.mirror,
            "offline": context.offline,
            "checks_signatures": bool(context.alpine_keys),
        },
        template_digest=template_digest,
    )
    return Project(settings, layout, apps, graph, context, warnings, notes)


def app_names(paths: Sequence[str]) -> list[str]:
    """Names of the apps under `paths` (for listings and completion)."""
    return [Path(p).parent.name for p in find_configs(paths)]


def _source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH, or 0 so that builds do not depend on when they ran."""
    text = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return 0
    if not text.isdigit():
        raise ConfigError(
            f"SOURCE_DATE_EPOCH={text!r} is not allowed: seconds since 1970, e.g. 1700000000"
        )
    return int(text)


KEY_NAME_VARIABLE = "PAKMAN_KEY_NAME"


def _signing_key(
    settings: Settings, layout: Layout, apps: Sequence[AppBuild], notes: list[str]
) -> tuple[str, str, str]:
    """Check the signing key before anything is packed: (file, name, fingerprint).

    --key FILE, else ABUILD_PRIVATE_KEY (named `<org>-<name>.rsa.pub` for one
    app, else PAKMAN_KEY_NAME), else the project key under .pakman/keys/,
    created on first use. The fingerprint (of the public half) is part of
    the keys of the steps that sign.
    """
    from pakman.apk import generate_key, load_signing_key
    from pakman.steps import PASSPHRASE_VARIABLE

    key_file, key_name = settings.key_file or "", ""
    if not key_file and os.environ.get("ABUILD_PRIVATE_KEY", "").strip():
        key_name = os.environ.get(KEY_NAME_VARIABLE, "")
        if not key_name and len(apps) == 1:
            key_name = f"{apps[0].identity.keyname}.rsa.pub"
        if not key_name:
            raise ConfigError(
                f"ABUILD_PRIVATE_KEY signs several apps here: name the key with {KEY_NAME_VARIABLE} "
                "(its public key's file name, e.g. myorg.rsa.pub)"
            )
    elif not key_file:
        keys = layout.state / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        # Steps run by `make -j` each load the project: one process makes the
        # key while the others wait, then all of them use it.
        with (keys / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            existing = sorted(keys.glob("*.rsa"))
            if existing:
                key_file = str(existing[0])
            else:
                private, public = generate_key(keys, "pakman")
                key_file = str(private)
                notes.append(
                    f"created a signing key for this workspace: {layout.relative(private)}; "
                    f"apk trusts the repository once {layout.relative(public)} is in "
                    "/etc/apk/keys/"
                )
    key = load_signing_key(
        private_key=key_file or None,
        keyname=key_name or None,
        passphrase=os.environ.get(PASSPHRASE_VARIABLE) or None,
    )
    fingerprint = hashlib.sha256(key.signature_name.encode() + b"\0" + key.public_pem).hexdigest()
    return key_file, key_name, fingerprint
