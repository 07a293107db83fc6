"""A build, prepared: the apps found, validated and named, their sources
fingerprinted, the signing key checked, and the step graph compiled.

`pakman build`, `pakman graph`, `pakman explain`, `pakman run-step` and
plain `doit` (through `pakman.dodo`) all start here, so they see the same
steps with the same keys.

Preparing 200 apps means reading 200 configs and looking at every source
file, so the result is kept in `.pakman/cache/project/` together with
the signature (lstat) of everything it was made from: the folders searched,
each config and source file and folder, the pipeline, the templates, the
key, git's refs, and the options and environment that shape names and keys.
The next run checks those signatures (one lstat each) and prepares again only
the apps whose files changed; when nothing did, it reuses everything.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pakman import __version__
from pakman.compile.graph import (
    AppBuild,
    BuildInputs,
    Step,
    StepGraph,
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
    inputs_digest,
    sandbox_settings,
)
from pakman.errors import ConfigError, Diagnostic
from pakman.fastpath.plan import (
    PLAN_FILE,
    PLAN_FORMAT,
    Inspection,
    Plan,
    dump_plan,
    inspect,
    plan_signature,
    prune_watched,
    snapshot_dir,
    watched_dir,
    write_token,
    write_watched,
)
from pakman.fastpath.protocol import Token
from pakman.fileio import open_atomic, write_atomic
from pakman.render.files import TEMPLATES, template_digest
from pakman.steps import DEFAULT_MIRROR, RunContext
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
    from pakman.config.gitmeta import GitMetadata
    from pakman.config.model import AppConfig
    from pakman.config.source import Document


@dataclass
class Project:
    settings: Settings
    layout: Layout
    apps: list[AppBuild]
    graph: StepGraph
    context: RunContext
    warnings: list[Diagnostic] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things to tell the user (e.g. a new key)
    reused: int = 0  # apps taken from the snapshot without being read again


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
class _Snapshot:
    format: int
    version: str
    inputs: str  # the settings and environment it was made with
    watched: Packed  # what every app shares: searched folders, pipeline, templates, key, git
    records: list[_AppRecord]
    repository: list[Step]
    key: tuple[str, str, str]  # (file, name, fingerprint)


def load_project(
    settings: Settings,
    *,
    use_snapshot: bool = True,
    lazy: bool = False,
    inspection: Inspection | None = None,
) -> Project:
    """Find, validate and name every app under the paths, then compile the build graph.

    `lazy` (for `pakman build`) leaves apps that did not change and whose
    steps are all done as summaries: their steps can be reported, not run.
    """
    if use_snapshot and inspection is None:
        inspection = inspect(settings)
    if use_snapshot and inspection is not None and inspection.plan is not None:
        layout, changed = inspection.layout, inspection.changed
        # The apps that changed are prepared again: their records are not read.
        summarised = set(changed) | (inspection.done if lazy else set())
        pipeline = load_pipeline(settings.pipeline)
        snapshot = _read_snapshot(layout, inspection.plan, summarised, pipeline)
        if snapshot is not None:
            if not changed:
                return _project(settings, layout, snapshot, reused=len(snapshot.records))
            refreshed = _refresh(settings, layout, snapshot, changed)
            if refreshed is not None:
                _write_snapshot(
                    layout,
                    refreshed,
                    changed,
                    inspection.token,
                    inspection.plan,
                    done=inspection.done,
                    journal=inspection.journal,
                )
                reused = len(refreshed.records) - len(changed)
                return _project(settings, layout, refreshed, reused=reused)
    layout = Layout.at(Path(settings.root), Path(settings.repo) if settings.repo else None)
    notes: list[str] = []
    snapshot = _prepare(settings, layout, inputs_digest(settings, layout), notes)
    token = inspection.token if inspection is not None else None
    _write_snapshot(layout, snapshot, range(len(snapshot.records)), token)
    return _project(settings, layout, snapshot, reused=0, notes=notes)


def _prepare(settings: Settings, layout: Layout, inputs: str, notes: list[str]) -> _Snapshot:
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
    epochs = _epochs(configs, layout)
    for config_path in configs:
        try:
            records.append(_prepare_app(config_path, settings, layout, epochs[config_path]))
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
    snapshot = _Snapshot(PLAN_FORMAT, __version__, inputs, pack(shared_watch), records, [], key)
    return _compile(snapshot, pipeline, layout, settings, list(range(len(records))))


def _prepare_app(config_path: Path, settings: Settings, layout: Layout, epoch: int) -> _AppRecord:
    """Read, validate and name one app (built at `epoch`), and fingerprint its source."""
    from pakman.config.identity import resolve_identity
    from pakman.config.lint import lint_app
    from pakman.config.schema import validate
    from pakman.config.source import load_file
    from pakman.render.engine import check_app_files

    # Before reading, so that a change while reading shows next time; absolute,
    # as a watcher (`pakman watch`) must find it too.
    watched = [watch(config_path.absolute())]
    document = load_file(config_path)  # kept for the lint's positions, as `check` does
    config, warnings = validate(document, file=config_path, strict=settings.strict)
    identity = resolve_identity(
        config,
        name=settings.name,
        organization=settings.organization,
        version=settings.version,
        release=settings.release,
        url=settings.url,
    )
    identity = replace(identity, epoch=epoch)
    git = _git_metadata(config, document) if config.build.git else None
    check_app_files(config)
    warnings = sorted(
        [*warnings, *lint_app(config, identity, document)], key=lambda d: (d.line, d.column)
    )
    prefix = os.path.relpath(config.root, layout.root) + "/"
    # One stat cache per app, so refreshing one app reads and writes only its own.
    cache = StatCache(layout.state / "cache" / "stat" / (_digest(prefix) + ".json"))
    source = fingerprint_tree(config.root, cache, cache_prefix=prefix, seen=watched)
    cache.save()
    return _AppRecord(config_path, pack(watched), AppBuild(config, identity, git), source, warnings)


def _git_metadata(config: AppConfig, document: Document) -> GitMetadata:
    """What the build of an app with `build.git: true` sees of git; a located error without it."""
    from pakman.config.gitmeta import GitMetadataError, read_git_metadata

    try:
        return read_git_metadata(config.root)
    except GitMetadataError as exc:
        raise ConfigError(
            document.diagnostic(
                ("build", "git"),
                f"asks for the repository's git metadata, but {exc}; "
                "build from a git checkout with at least one commit, or remove `git: true`",
            )
        ) from None


def _refresh(
    settings: Settings, layout: Layout, snapshot: _Snapshot, changed: Sequence[int]
) -> _Snapshot | None:
    """Prepare again only the apps whose files changed; None when that cannot be enough."""
    records = list(snapshot.records)
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
    return _compile(replace(snapshot, records=records), pipeline, layout, settings, changed)


def _compile(
    snapshot: _Snapshot,
    pipeline: Pipeline,
    layout: Layout,
    settings: Settings,
    recompile: Sequence[int],
) -> _Snapshot:
    """Compile the steps of the apps at `recompile`, then the repository's over all apps."""
    context = _context(settings, layout, snapshot.key)
    inputs = BuildInputs(
        layout,
        frozenset(name for r in snapshot.records for name in r.package_names),
        snapshot.key[2],
        _mirror(context),
        template_digest,
        partial=bool(settings.only),
        build_base=build_base_packages(settings),
        sandbox=sandbox_settings(settings),
    )
    for index in recompile:
        record = snapshot.records[index]
        assert record.app is not None and record.source is not None
        record.steps = compile_app(record.app, pipeline, inputs, record.source)
    app_steps = [step for record in snapshot.records for step in record.steps]
    arches = arches_of(a for r in snapshot.records for a in r.architectures)
    snapshot.repository = compile_repository(arches, app_steps, pipeline, inputs)
    return snapshot


# ---------------------------------------------------------------------------
# The snapshot


def _project(
    settings: Settings,
    layout: Layout,
    snapshot: _Snapshot,
    *,
    reused: int,
    notes: Sequence[str] = (),
) -> Project:
    steps = [step for record in snapshot.records for step in record.steps]
    graph = StepGraph([*steps, *snapshot.repository], load_pipeline(settings.pipeline))
    return Project(
        settings,
        layout,
        [r.app for r in snapshot.records if r.app is not None],
        graph,
        _context(settings, layout, snapshot.key),
        [w for r in snapshot.records for w in r.warnings],
        list(notes),
        reused,
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _record_file(config_path: Path) -> str:
    return _digest(str(config_path)) + ".json"


def _step_summary(step: Step) -> tuple[str, str, str | None, str, tuple[str, ...]]:
    return (step.id, step.stage, step.arch, step.key, tuple(o.rstrip("/") for o in step.outputs))


def _read_data(path: Path, kind: Any) -> Any:
    """A record of `kind` kept under .pakman/ (data only), or None when missing or damaged."""
    from pakman.workspace import datafile

    try:
        return datafile.loads(path.read_bytes(), kind)
    except (OSError, datafile.Damaged):
        return None


def _write_data(path: Path, value: object) -> None:
    """Keep a record; one that holds what JSON cannot (a YAML date) is not kept."""
    from pakman.workspace import datafile

    try:
        data = datafile.dumps(value)
    except (TypeError, ValueError):
        path.unlink(missing_ok=True)
        return
    write_atomic(path, data, durable=False)


def _trusted(steps: Iterable[Step], pipeline: Pipeline, layout: Layout) -> bool:
    """Steps read back run the pipeline's actions and write only in .pakman/ or the repository."""
    actions = {stage.name: stage.action for stage in pipeline.stages}
    within = (f"{layout.state}/", f"{layout.repo}/")
    return all(
        actions.get(step.stage) == step.action and all(o.startswith(within) for o in step.outputs)
        for step in steps
    )


def _without_shared(record: _AppRecord) -> _AppRecord | None:
    """The record as kept: its steps' app and source tree are the record's, kept once.

    None when a step holds another app (then the record is not kept).
    """
    if any(step.app is not record.app for step in record.steps):
        return None
    steps = [replace(step, app=None, source=None) for step in record.steps]
    return replace(record, steps=steps)


def _with_shared(record: _AppRecord) -> _AppRecord:
    """The inverse of `_without_shared`."""
    tree = record.source
    fingerprint = tree.fingerprint if tree is not None else None
    for step in record.steps:
        # Straight into the frozen steps, just read: replace() would check every field again.
        step.__dict__["app"] = record.app
        if fingerprint is not None and step.reads.get("source") == fingerprint:
            step.__dict__["source"] = tree
    return record


def _read_snapshot(
    layout: Layout, plan: Plan, summarised: set[int], pipeline: Pipeline
) -> _Snapshot | None:
    """The snapshot's records: read back in full, or summaries for the apps in `summarised`."""
    folder = snapshot_dir(layout)
    records: list[_AppRecord] = []
    for index, app in enumerate(plan["apps"]):
        config_path = Path(app["config"])
        if index in summarised:
            steps = [Step.summary(*summary) for summary in app["steps"]]
            records.append(
                _AppRecord(
                    config_path,
                    None,  # not needed: the plan's entry for it is carried over as it is
                    None,
                    None,
                    [],
                    steps,
                    app["name"],
                    tuple(app["packages"]),
                    tuple(app["architectures"]),
                )
            )
            continue
        record = _read_data(folder / "apps" / _record_file(config_path), _AppRecord)
        if record is None or record.config_path != config_path:
            return None
        records.append(_with_shared(record))
    repository = _read_data(folder / "repository.json", list[Step])
    if repository is None:
        return None
    steps = [step for record in records for step in record.steps if step.complete]
    if not _trusted([*steps, *repository], pipeline, layout):
        return None
    key = (plan["key"][0], plan["key"][1], plan["key"][2])
    return _Snapshot(
        plan["format"], plan["version"], plan["inputs"], plan["watched"], records, repository, key
    )


def _write_snapshot(
    layout: Layout,
    snapshot: _Snapshot,
    changed: Iterable[int],
    token: Token | None,
    previous: Plan | None = None,
    done: Iterable[int] = (),
    journal: object = None,
) -> None:
    """Write the records of the apps that changed, the repository's steps, then the plan.

    `token` is the watcher's answer from before anything was looked at (see
    pakman.fastpath.protocol). The other apps' entries are taken from the `previous`
    plan, which the snapshot was read from. `done`: the apps found with
    every step done after the token, when the journal was at `journal`.
    """
    folder = snapshot_dir(layout)
    changed = set(changed)
    for index in changed:
        record = snapshot.records[index]
        target = folder / "apps" / _record_file(record.config_path)
        kept = _without_shared(record)
        if kept is None:
            target.unlink(missing_ok=True)
        else:
            _write_data(target, kept)
    _write_data(folder / "repository.json", snapshot.repository)

    def entry(index: int, record: _AppRecord) -> dict[str, Any]:
        if previous is not None and index not in changed:
            kept: dict[str, Any] = previous["apps"][index]
            return kept
        assert record.watched is not None, "an app prepared again is not a summary"
        return {
            "config": str(record.config_path),
            "watched": write_watched(watched_dir(layout), record.watched),  # names its file
            "name": record.name,
            "packages": list(record.package_names),
            "architectures": list(record.architectures),
            "steps": [_step_summary(s) for s in record.steps],
            "warnings": [str(w) for w in record.warnings],
        }

    apps = [entry(index, r) for index, r in enumerate(snapshot.records)]
    plan = {
        "format": snapshot.format,
        "version": snapshot.version,
        "inputs": snapshot.inputs,
        "watched": snapshot.watched,
        "key": list(snapshot.key),
        "apps": apps,
        "repository": [_step_summary(s) for s in snapshot.repository],
    }
    with open_atomic(folder / PLAN_FILE, durable=False) as handle:
        handle.write(dump_plan(plan))
        handle.flush()
        signature = plan_signature(os.fstat(handle.fileno()))  # renaming keeps it
    if token is not None:
        write_token(layout, signature, token, done, journal)
    if changed:
        prune_watched(watched_dir(layout), {app["watched"] for app in apps})


def _pipeline_path(name: str) -> Path:
    return Path(name) if name.endswith((".yml", ".yaml")) else pipelines_dir() / f"{name}.yml"


def _context(settings: Settings, layout: Layout, key: tuple[str, str, str]) -> RunContext:
    return RunContext(
        layout=layout,
        key_file=key[0],
        key_name=key[1],
        mirror=settings.mirror or os.environ.get("PAKMAN_MIRROR") or DEFAULT_MIRROR,
        offline=settings.offline,
        require_deps=settings.require_deps,
        verbose=settings.verbose,
        alpine_keys=settings.alpine_keys or "",
        level=settings.level,
        build_on=settings.build_on,
        run_id=uuid.uuid4().hex,
    )


def _mirror(context: RunContext) -> dict[str, object]:
    return {
        "url": context.mirror,
        "offline": context.offline,
        # Which keys fetched indexes must be signed with: another folder, or a
        # key added to it or changed, checks the dependencies again.
        "trusted_keys": _keys_fingerprint(context.alpine_keys) if context.alpine_keys else None,
        "require_deps": context.require_deps,
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


def _epochs(configs: Sequence[Path], layout: Layout) -> dict[Path, int]:
    """Each app's SOURCE_DATE_EPOCH, by its config: see `pakman.config.identity.build_epoch`."""
    from pakman.config.identity import build_epoch, epoch_variable, last_commit_times

    variable = epoch_variable()
    if variable is not None:
        return {config: build_epoch(variable, None, 0) for config in configs}
    committed = last_commit_times([config.parent for config in configs])
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
