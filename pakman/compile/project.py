"""A build, prepared: the apps found, validated and named, their sources
fingerprinted, the signing key checked, and the step graph compiled.

`pakman.project.load_project` prepares through here when the snapshot the
last run kept (pakman.fastpath.snapshot) cannot be reused, and refreshes
through here the apps whose files changed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pakman.alpine import DEFAULT_MIRROR
from pakman.compile.graph import (
    AppBuild,
    BuildInputs,
    Step,
    arches_of,
    check_names,
    compile_app,
    compile_repository,
)
from pakman.compile.pipeline import Pipeline, load_pipeline, pipelines_dir
from pakman.compile.settings import (
    KEY_NAME_VARIABLE,
    PASSPHRASE_VARIABLE,
    Settings,
    build_base_packages,
    sandbox_settings,
)
from pakman.errors import ConfigError, Diagnostic
from pakman.render.files import TEMPLATES, template_digest
from pakman.workspace.fingerprint import (
    Packed,
    SourceTree,
    StatCache,
    Watched,
    fingerprint_tree,
    pack,
    watch,
)
from pakman.workspace.layout import Layout

if TYPE_CHECKING:
    from pakman.config.gitmeta import GitMetadata, Revision
    from pakman.config.model import AppConfig
    from pakman.config.source import Document


@dataclass
class _AppRecord:
    """One app as prepared, and what it was prepared from.

    A record read back from the plan only (`app` None) stands for an app that
    did not change and whose steps are all done: its steps are summaries.
    """

    config_path: Path
    watched: Packed | None  # None in a summary
    app: AppBuild | None
    source: SourceTree | None
    warnings: list[Diagnostic]
    steps: list[Step] = field(default_factory=list)
    name: str = ""
    package_names: tuple[str, ...] = ()
    architectures: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.app is not None:
            self.name = self.app.name
            self.package_names = self.app.package_names()
            self.architectures = self.app.config.architectures


@dataclass
class Prepared:
    """The apps of a build, prepared, with their steps and the repository's."""

    inputs: str  # the settings and environment it was made with
    watched: Packed  # what every app shares: searched folders, pipeline, templates, key, git
    records: list[_AppRecord]
    repository: list[Step]
    key: tuple[str, str, str]  # (file, name, fingerprint)


def prepare_project(
    settings: Settings,
    layout: Layout,
    inputs: str,
    notes: list[str],
    revision: Revision | None = None,
) -> Prepared:
    """Find, validate and name every app under the paths, check the key, compile the steps.

    `revision`: the paths are in a commit's tree written out (`pakman
    affected`); versions, commit times and build.git's commit are that commit's.
    """
    from pakman.config.gitmeta import clear_cache
    from pakman.config.identity import clear_version_cache, epoch_variable, git_dir, version_inputs
    from pakman.workspace.discovery import find_configs

    clear_version_cache()  # git is asked again: its refs may have changed since
    clear_cache()

    shared_watch: list[Watched] = []
    configs = find_configs(settings.paths, skip_ignored=True, seen=shared_watch)
    if len(configs) > 1 and settings.name:
        raise ConfigError("--package-name names one app, but several were found; use --only")
    records: list[_AppRecord] = []
    errors: list[Diagnostic] = []
    epochs = _epochs(configs, layout, revision)
    for config_path in configs:
        try:
            epoch = epochs[config_path]
            records.append(_prepare_app(config_path, settings, layout, epoch, revision))
        except ConfigError as exc:
            errors.extend(exc.diagnostics)
    if errors:
        raise ConfigError(errors)
    if settings.only:
        unknown = sorted(set(settings.only) - {r.name for r in records})
        if unknown:
            names = ", ".join(sorted(r.name for r in records))
            raise ConfigError(f"--only {', '.join(unknown)}: no such app (found: {names})")
        records = [r for r in records if r.name in settings.only]
    apps = [r.app for r in records if r.app is not None]
    check_names(apps)

    pipeline = load_pipeline(settings.pipeline)
    shared_watch.append(watch(_pipeline_path(settings.pipeline)))
    shared_watch.append(watch(TEMPLATES))
    shared_watch.extend(watch(t) for t in sorted(TEMPLATES.iterdir()))
    # git's refs: a commit or a tag changes the version, a commit the apps'
    # epochs (outside git, the folders a .git could appear in: for the version).
    roots = [r.config_path.parent for r in records]
    if settings.version is None or any(r.app and r.app.git for r in records):
        # (build.git: true puts the commit and the tags in the build's key)
        repositories = {str(p) for root in roots for p in version_inputs(root)}
    elif epoch_variable() is None:
        repositories = {str(p) for root in roots if git_dir(root) for p in version_inputs(root)}
    else:
        repositories = set()
    shared_watch.extend(watch(p) for p in sorted(repositories))
    if settings.alpine_keys:
        folder = Path(settings.alpine_keys)
        shared_watch.append(watch(folder))
        shared_watch.extend(watch(p) for p in sorted(folder.glob("*.pub")))
    key = _signing_key(settings, layout, apps, shared_watch, notes)
    prepared = Prepared(inputs, pack(shared_watch), records, [], key)
    return compile_steps(prepared, pipeline, layout, settings, range(len(records)))


def _prepare_app(
    config_path: Path,
    settings: Settings,
    layout: Layout,
    epoch: int,
    revision: Revision | None = None,
) -> _AppRecord:
    """Read, validate and name one app (built at `epoch`), and fingerprint its source."""
    from pakman.config.prepare import prepare_app

    # Before reading, so that a change while reading shows next time; absolute,
    # as a watcher (`pakman watch`) must find it too.
    watched = [watch(config_path.absolute())]
    prepared = prepare_app(
        config_path,
        strict=settings.strict,
        name=settings.name,
        organization=settings.organization,
        version=settings.version,
        release=settings.release,
        url=settings.url,
        license=settings.license,
        description=settings.description,
        epoch=epoch,
        revision=revision,
    )
    config, identity = prepared.config, prepared.identity
    git = _git_metadata(config, prepared.document, revision) if config.build.git else None
    prefix = os.path.relpath(config.root, layout.root) + "/"
    # One stat cache per app, so refreshing one app reads and writes only its own;
    # a commit's tree, written once and removed after, keeps none (in memory only).
    stat = layout.state / "cache" / "stat" / (_digest(prefix) + ".json")
    cache = StatCache(stat if revision is None else None)
    source = fingerprint_tree(config.root, cache, cache_prefix=prefix, seen=watched)
    cache.save()
    warnings = list(prepared.warnings)
    return _AppRecord(config_path, pack(watched), AppBuild(config, identity, git), source, warnings)


def _git_metadata(
    config: AppConfig, document: Document, revision: Revision | None = None
) -> GitMetadata:
    """What the build of an app with `build.git: true` sees of git; a located error without it."""
    from pakman.config.gitmeta import GitMetadataError, read_git_metadata

    try:
        if revision is not None:  # the build of that commit
            found = read_git_metadata(revision.real(config.root))
            return replace(found, commit=revision.commit)
        return read_git_metadata(config.root)
    except GitMetadataError as exc:
        raise ConfigError(
            document.diagnostic(
                ("build", "git"),
                f"asks for the repository's git metadata, but {exc}; "
                "build from a git checkout with at least one commit, or remove `git: true`",
            )
        ) from None


def refresh_apps(
    settings: Settings, layout: Layout, prepared: Prepared, changed: Sequence[int]
) -> Prepared | None:
    """Prepare again only the apps whose files changed; None when that cannot be enough."""
    records = list(prepared.records)
    for index in changed:
        old = records[index]
        # git's refs are as when it was prepared (else everything is prepared
        # again), so its last commit is too: git is not asked again.
        epoch = (
            old.app.identity.epoch
            if old.app is not None
            else _epochs([old.config_path], layout)[old.config_path]
        )
        fresh = _prepare_app(old.config_path, settings, layout, epoch)
        if fresh.package_names != old.package_names:
            return None  # other apps' steps know which packages the build makes
        records[index] = fresh
    pipeline = load_pipeline(settings.pipeline)
    return compile_steps(replace(prepared, records=records), pipeline, layout, settings, changed)


def compile_steps(
    prepared: Prepared,
    pipeline: Pipeline,
    layout: Layout,
    settings: Settings,
    recompile: Sequence[int],
) -> Prepared:
    """Compile the steps of the apps at `recompile`, then the repository's over all apps."""
    inputs = BuildInputs(
        layout,
        frozenset(name for r in prepared.records for name in r.package_names),
        prepared.key[2],
        _mirror(settings),
        template_digest,
        partial=bool(settings.only),
        build_base=build_base_packages(settings),
        sandbox=sandbox_settings(settings),
    )
    for index in recompile:
        record = prepared.records[index]
        assert record.app is not None and record.source is not None
        record.steps = compile_app(record.app, pipeline, inputs, record.source)
    app_steps = [step for record in prepared.records for step in record.steps]
    arches = arches_of(a for r in prepared.records for a in r.architectures)
    prepared.repository = compile_repository(arches, app_steps, pipeline, inputs)
    return prepared


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _pipeline_path(name: str) -> Path:
    return Path(name) if name.endswith((".yml", ".yaml")) else pipelines_dir() / f"{name}.yml"


def mirror_url(settings: Settings) -> str:
    """The Alpine mirror dependencies are fetched from: --mirror, else PAKMAN_MIRROR, else the CDN."""
    return settings.mirror or os.environ.get("PAKMAN_MIRROR") or DEFAULT_MIRROR


def _mirror(settings: Settings) -> dict[str, object]:
    return {
        "url": mirror_url(settings),
        "offline": settings.offline,
        # Which keys fetched indexes must be signed with: another folder, or a
        # key added to it or changed, checks the dependencies again.
        "trusted_keys": _keys_fingerprint(settings.alpine_keys) if settings.alpine_keys else None,
        "require_deps": settings.require_deps,
    }


def _keys_fingerprint(folder: str) -> str:
    """A digest of the *.pub keys in a folder (their names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.pub")):
        try:
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        except OSError:
            digest.update(path.name.encode() + b"\0unreadable\0")
    return digest.hexdigest()


def _epochs(
    configs: Sequence[Path], layout: Layout, revision: Revision | None = None
) -> dict[Path, int]:
    """Each app's SOURCE_DATE_EPOCH, by its config: see `pakman.config.identity.build_epoch`."""
    from pakman.config.identity import build_epoch, epoch_variable, last_commit_times

    variable = epoch_variable()
    if variable is not None:
        return {config: build_epoch(variable, None, 0) for config in configs}
    committed = last_commit_times([config.parent for config in configs], revision)
    now = 0 if all(t is not None for t in committed.values()) else _first_build_time(layout)
    return {config: build_epoch(None, committed[config.parent], now) for config in configs}


def _first_build_time(layout: Layout) -> int:
    """Outside git: the time of the workspace's first build, kept in `.pakman/cache/epoch`.

    Kept so that every build and run-step of this workspace gives its steps
    the same keys; such packages are not reproducible elsewhere (set
    SOURCE_DATE_EPOCH for that).
    """
    path = layout.state / "cache" / "epoch"
    for _ in range(2):
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            text = ""
        if text.isascii() and text.isdigit() and len(text) < 12:
            return int(text)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created whole, once: processes preparing at once (make -j) agree on it.
        tmp = path.with_name(f".epoch.{uuid.uuid4().hex}")
        tmp.write_text(f"{int(time.time())}\n", encoding="ascii")
        try:
            if text:
                os.replace(tmp, path)  # damaged: this one replaces it
            else:
                os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: read it
        except OSError:  # no hard links here: the last writer wins
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return int(time.time())


def _signing_key(
    settings: Settings,
    layout: Layout,
    apps: Sequence[AppBuild],
    seen: list[Watched],
    notes: list[str],
) -> tuple[str, str, str]:
    """Check the signing key before anything is packed: (file, name, fingerprint).

    --key FILE, else ABUILD_PRIVATE_KEY (named `<org>-<name>.rsa.pub` for one
    app, else PAKMAN_KEY_NAME), else the project key under .pakman/keys/,
    created on first use. The fingerprint (of the public half) is part of
    the keys of the steps that sign.
    """
    from pakman.apk import generate_key, load_signing_key

    key_file, key_name = settings.key_file or "", ""
    if not key_file and os.environ.get("ABUILD_PRIVATE_KEY", "").strip():
        key_name = os.environ.get(KEY_NAME_VARIABLE, "")
        if not key_name and len(apps) == 1:
            key_name = f"{apps[0].identity.keyname}.rsa.pub"
        if not key_name:
            raise ConfigError(
                f"ABUILD_PRIVATE_KEY signs several apps here: name the key with "
                f"{KEY_NAME_VARIABLE} (its public key's file name, e.g. myorg.rsa.pub)"
            )
    elif not key_file:
        keys = layout.state / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        # Private keys live here: 0700 whatever the umask made it.
        keys.chmod(0o700)
        # Several pakman processes (make -j, ninja) may start at once: one makes the key.
        with (layout.state / "keys.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            existing = sorted(keys.glob("*.rsa"))
            if existing:
                key_file = str(existing[0])
            else:
                private, public = generate_key(keys, "pakman")
                key_file = str(private)
                notes.append(
                    f"created a signing key for this workspace: {layout.relative(private)}; "
                    f"apk trusts the repository once {layout.relative(public)} is in /etc/apk/keys/"
                )
        seen.append(watch(keys))
    public_file = key_file + ".pub" if key_file else ""
    key = load_signing_key(
        private_key=key_file or None,
        # FILE.pub beside the key is what users install: it must be its public half.
        public_key=public_file if public_file and os.path.exists(public_file) else None,
        keyname=key_name or None,
        passphrase=os.environ.get(PASSPHRASE_VARIABLE) or None,
    )
    if key_file:
        seen.append(watch(key_file))
        seen.append(watch(key_file + ".pub"))
    fingerprint = hashlib.sha256(key.signature_name.encode() + b"\0" + key.public_pem).hexdigest()
    return key_file, key_name, fingerprint
