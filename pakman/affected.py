"""`pakman affected`: the apps, and the steps, whose keys differ between a git revision and the working tree.

The working tree's graph is the one `pakman build` runs (pakman.project).
The revision's is compiled from its tree, written as data under
`.pakman/tmp/` (pakman.workspace.revision: no checkout, so none of the
repository's hooks, filters or attributes run) and removed after, with the
same options, and with what git says at that commit: its tags and each
app's commits for the version, its commit times for each app's SOURCE_DATE_EPOCH, its id for
`build.git` (pakman.config.identity and compile.project take a `Revision`).
Nothing is run or built. An app is affected when one of its steps' keys
differs, or it is on one side only (added, removed); an app that did not
change between the two comes out unaffected, since its keys are the same.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pakman.compile.project import prepare_project
from pakman.compile.settings import Settings, inputs_digest
from pakman.compile.shard import parse_shard
from pakman.errors import ConfigError, UsageError
from pakman.workspace.layout import REPOSITORY

DEFAULT_SINCE = "HEAD"


@dataclass(frozen=True)
class Affected:
    """What differs between `since` (the commit `commit`) and the working tree."""

    since: str
    commit: str
    apps: tuple[str, ...]  # sorted
    added: tuple[str, ...]  # in the working tree only
    removed: tuple[str, ...]  # at `since` only
    steps: dict[str, tuple[str, ...]]  # by app (`repo` for the repository's): the step ids
    warnings: tuple[str, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        """The --json form (documented in the README)."""
        return {
            "since": self.since,
            "commit": self.commit,
            "apps": list(self.apps),
            "added": list(self.added),
            "removed": list(self.removed),
            "steps": {name: list(ids) for name, ids in self.steps.items()},
        }


def find_affected(settings: Settings, since: str = DEFAULT_SINCE) -> Affected:
    """Compare the step keys of `since`'s tree with the working tree's.

    UsageError (exit 2) when the paths are not in a git repository or
    `since` names no commit; ConfigError when the working tree's apps are
    invalid. Apps that do not compile at `since` make every app affected,
    with a warning.
    """
    from pakman.config.gitmeta import GitMetadataError, Revision, repository_top
    from pakman.fileio import remove_tree
    from pakman.project import load_project
    from pakman.workspace.revision import resolve_commit, write_tree

    shard = parse_shard(settings.shard) if settings.shard is not None else None
    paths = [Path(p).resolve() for p in settings.paths]
    try:
        top = repository_top(paths[0])
    except GitMetadataError as exc:
        raise UsageError(f"pakman affected compares git revisions, but {exc}") from None
    outside = [str(p) for p in paths if not p.is_relative_to(top)]
    if outside:
        raise UsageError(f"{', '.join(outside)}: not in the git repository at {top}")
    commit = resolve_commit(top, since)

    now = load_project(settings)
    current = {s.id: s.key for s in now.graph.order()}
    layout = now.layout
    warnings: list[str] = []
    scratch_root = layout.state / "tmp"
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="affected-", dir=scratch_root))
    then: dict[str, str] | None
    try:
        tree = scratch / "tree"
        tree.mkdir()
        write_tree(top, commit, tree)
        given = [tree / p.relative_to(top) for p in paths]
        then_settings = replace(settings, paths=tuple(str(p) for p in given if p.exists()))
        try:
            if not then_settings.paths:
                raise ConfigError(f"{since}: none of the paths exists there")
            prepared = prepare_project(
                then_settings,
                layout,
                inputs_digest(then_settings, layout),
                [],
                Revision(top, commit, tree),
            )
        except ConfigError as exc:
            first = str(exc).splitlines()[0] if str(exc) else "invalid"
            first = first.replace(str(tree) + "/", "")
            warnings.append(
                f"warning: the apps at {since} do not compile ({first}): every app counts as affected"
            )
            then = None
        else:
            steps = [s for r in prepared.records for s in r.steps] + prepared.repository
            then = {s.id: s.key for s in steps}
    finally:
        remove_tree(scratch)
    if shard is not None and then is not None:
        # (the working tree's graph is the shard's already: pakman.project)
        then = {i: k for i, k in then.items() if _namespace(i) != REPOSITORY}
        then = {i: k for i, k in then.items() if shard.holds(_namespace(i))}
    return _compare(since, commit, current, then, tuple(warnings))


def _namespace(step_id: str) -> str:
    return step_id.partition(":")[0]


def _compare(
    since: str,
    commit: str,
    now: dict[str, str],
    then: dict[str, str] | None,
    warnings: tuple[str, ...],
) -> Affected:
    apps_now = {_namespace(i) for i in now} - {REPOSITORY}
    if then is None:  # nothing to compare with: all differ
        changed = sorted(now)
        added: set[str] = set()
        removed: set[str] = set()
    else:
        changed = sorted(i for i in now.keys() | then.keys() if now.get(i) != then.get(i))
        apps_then = {_namespace(i) for i in then} - {REPOSITORY}
        added, removed = apps_now - apps_then, apps_then - apps_now
    steps: dict[str, list[str]] = {}
    for step_id in changed:
        steps.setdefault(_namespace(step_id), []).append(step_id)
    apps = sorted((set(steps) - {REPOSITORY}) | added | removed)
    return Affected(
        since,
        commit,
        tuple(apps),
        tuple(sorted(added)),
        tuple(sorted(removed)),
        {name: tuple(ids) for name, ids in sorted(steps.items())},
        warnings,
    )
