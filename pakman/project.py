"""A build, prepared: the apps found, validated and named, their sources
fingerprinted, the signing key checked, and the step graph compiled.

`pakman build`, `pakman graph`, `pakman run-step` and plain `doit` (through
`pakman.dodo`) all start here, so they see the same steps with the same keys.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pakman.errors import ConfigError, Diagnostic
from pakman.fingerprint import SourceTree, StatCache, fingerprint_tree
from pakman.graph import AppBuild, Layout, StepGraph, compile_graph
from pakman.identity import resolve_identity
from pakman.pipeline import load_pipeline
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
    configs = find_configs(settings.paths)
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

    context = RunContext(
        layout=layout,
        key_file=settings.key_file or "",
        mirror=settings.mirror or os.environ.get("PAKMAN_MIRROR") or DEFAULT_MIRROR,
        offline=settings.offline,
        require_deps=settings.require_deps,
        verbose=settings.verbose,
        alpine_keys=settings.alpine_keys or "",
        source_date_epoch=_source_date_epoch(),
        level=settings.level,
    )
    from pakman.render import template_digest

    graph = compile_graph(
        apps,
        load_pipeline(settings.pipeline),
        layout,
        sources=sources,
        key_fingerprint="",
        epoch=context.source_date_epoch,
        template_digest=template_digest,
    )
    return Project(settings, layout, apps, graph, context, warnings)


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
