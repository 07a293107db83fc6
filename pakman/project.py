"""A build, loaded: its apps prepared and its step graph compiled, or both
taken from the snapshot the last run kept.

`pakman build`, `pakman graph`, `pakman explain`, `pakman run-step` and
plain `doit` (through `pakman.dodo`) all start here, so they see the same
steps with the same keys. Preparing and compiling is pakman.compile.project's
job; keeping and reusing the result, pakman.fastpath.snapshot's.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pakman.compile.graph import AppBuild, StepGraph
from pakman.compile.pipeline import load_pipeline
from pakman.compile.project import Prepared, mirror_url, prepare_project, refresh_apps
from pakman.compile.settings import Settings, inputs_digest
from pakman.compile.shard import Shard, parse_shard
from pakman.errors import Diagnostic
from pakman.fastpath.plan import Inspection, inspect
from pakman.fastpath.snapshot import read_snapshot, write_snapshot
from pakman.steps import RunContext
from pakman.workspace.layout import Layout


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
    # --shard I/N: the graph holds only the shard's apps' steps, no repository step
    shard: Shard | None = None
    shard_apps: int = 0  # how many apps the shard holds


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
    With `settings.shard`, the graph is the shard's (see pakman.compile.shard).
    """
    if settings.shard is not None:
        parse_shard(settings.shard)  # PAKMAN_SHARD's value: said before any work
    if use_snapshot and inspection is None:
        inspection = inspect(settings)
    if use_snapshot and inspection is not None and inspection.plan is not None:
        layout, changed = inspection.layout, inspection.changed
        # The apps that changed are prepared again: their records are not read.
        summarised = set(changed) | (inspection.done if lazy else set())
        pipeline = load_pipeline(settings.pipeline)
        snapshot = read_snapshot(layout, inspection.plan, summarised, pipeline)
        if snapshot is not None:
            if not changed:
                return _project(settings, layout, snapshot, reused=len(snapshot.records))
            refreshed = refresh_apps(settings, layout, snapshot, changed)
            if refreshed is not None:
                write_snapshot(
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
    prepared = prepare_project(settings, layout, inputs_digest(settings, layout), notes)
    token = inspection.token if inspection is not None else None
    write_snapshot(layout, prepared, range(len(prepared.records)), token)
    return _project(settings, layout, prepared, reused=0, notes=notes)


def _project(
    settings: Settings,
    layout: Layout,
    prepared: Prepared,
    *,
    reused: int,
    notes: Sequence[str] = (),
) -> Project:
    records, repository = prepared.records, prepared.repository
    shard = parse_shard(settings.shard) if settings.shard is not None else None
    if shard is not None:
        # Compiled whole first: keys read which packages every app makes (`local`).
        records, repository = [r for r in records if shard.holds(r.name)], []
    steps = [step for record in records for step in record.steps]
    graph = StepGraph([*steps, *repository], load_pipeline(settings.pipeline))
    return Project(
        settings,
        layout,
        [r.app for r in records if r.app is not None],
        graph,
        _context(settings, layout, prepared.key),
        [w for r in records for w in r.warnings],
        list(notes),
        reused,
        shard,
        len(records),
    )


def _context(settings: Settings, layout: Layout, key: tuple[str, str, str]) -> RunContext:
    return RunContext(
        layout=layout,
        key_file=key[0],
        key_name=key[1],
        mirror=mirror_url(settings),
        offline=settings.offline,
        require_deps=settings.require_deps,
        verbose=settings.verbose,
        alpine_keys=settings.alpine_keys or "",
        level=settings.level,
        build_on=settings.build_on,
        allow_rebuild=settings.allow_rebuild,
        run_id=uuid.uuid4().hex,
    )
