"""The snapshot: a prepared project kept in `.pakman/cache/project/` for the next run.

Preparing 200 apps means reading 200 configs and looking at every source
file, so the result is kept together with the signature (lstat) of
everything it was made from: the folders searched, each config and source
file and folder, the pipeline, the templates, the key, git's refs, and the
options and environment that shape names and keys. The next run checks
those signatures (pakman.fastpath.plan, one lstat each, or the watcher's
answer) and prepares again only the apps whose files changed; when nothing
did, it reuses everything. The plan is the snapshot's small part; each app's
record (its model, source tree and steps) is kept in a file of its own.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pakman import __version__
from pakman.compile.graph import Step
from pakman.compile.pipeline import Pipeline
from pakman.compile.project import Prepared, _AppRecord
from pakman.fastpath.plan import (
    PLAN_FILE,
    PLAN_FORMAT,
    Plan,
    dump_plan,
    plan_signature,
    prune_watched,
    snapshot_dir,
    watched_dir,
    write_token,
    write_watched,
)
from pakman.fastpath.protocol import Token
from pakman.fileio import open_atomic, write_atomic
from pakman.workspace.layout import Layout


def _record_file(config_path: Path) -> str:
    return hashlib.sha256(str(config_path).encode()).hexdigest()[:24] + ".json"


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


def read_snapshot(
    layout: Layout, plan: Plan, summarised: set[int], pipeline: Pipeline
) -> Prepared | None:
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
    return Prepared(plan["inputs"], plan["watched"], records, repository, key)


def write_snapshot(
    layout: Layout,
    prepared: Prepared,
    changed: Iterable[int],
    token: Token | None,
    previous: Plan | None = None,
    done: Iterable[int] = (),
    journal: object = None,
) -> None:
    """Keep the records of the apps that changed, the repository's steps, then the plan.

    `token` is the watcher's answer from before anything was looked at (see
    pakman.fastpath.protocol). The other apps' entries are taken from the `previous`
    plan, which the snapshot was read from. `done`: the apps found with
    every step done after the token, when the journal was at `journal`.
    """
    folder = snapshot_dir(layout)
    changed = set(changed)
    for index in changed:
        record = prepared.records[index]
        target = folder / "apps" / _record_file(record.config_path)
        kept = _without_shared(record)
        if kept is None:
            target.unlink(missing_ok=True)
        else:
            _write_data(target, kept)
    _write_data(folder / "repository.json", prepared.repository)

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

    apps = [entry(index, r) for index, r in enumerate(prepared.records)]
    plan = {
        # (A plan is read back only when of this format and this version.)
        "format": PLAN_FORMAT,
        "version": __version__,
        "inputs": prepared.inputs,
        "watched": prepared.watched,
        "key": list(prepared.key),
        "apps": apps,
        "repository": [_step_summary(s) for s in prepared.repository],
    }
    with open_atomic(folder / PLAN_FILE, durable=False) as handle:
        handle.write(dump_plan(plan))
        handle.flush()
        signature = plan_signature(os.fstat(handle.fileno()))  # renaming keeps it
    if token is not None:
        write_token(layout, signature, token, done, journal)
    if changed:
        prune_watched(watched_dir(layout), {app["watched"] for app in apps})
