"""Why a step will run (or ran): what it reads, compared with its last successful run.

Each step that succeeded left a manifest (.pakman/steps/...) with its key,
the slice it read, the keys of its upstream steps and, for a build, every
source file's digest. Comparing that with the step as it is now says, in
words, which input changed: a file, a config key, a template, an upstream
step, the release, the key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pakman import __version__
from pakman.compile.graph import Step, StepGraph
from pakman.errors import show
from pakman.workspace.journal import changed_outputs, read_journal
from pakman.workspace.layout import Layout

LISTED_FILES = 5


@dataclass(frozen=True)
class Explanation:
    step: str
    will_run: bool
    reasons: tuple[str, ...] = ()
    restorable: bool = False  # the store holds outputs for its current key
    notes: tuple[str, ...] = ()  # what to know about the step whether it runs or not

    def text(self) -> str:
        notes = [f"  note: {note}" for note in self.notes]
        if not self.will_run:
            return "\n".join([f"{self.step}: up to date", *notes])
        how = " (its outputs will be restored from the store)" if self.restorable else ""
        lines = [f"{self.step} will run{how}:"] + [f"  - {reason}" for reason in self.reasons]
        return "\n".join(lines + notes)

    def as_dict(self) -> dict[str, Any]:
        data = {
            "step": self.step,
            "will_run": self.will_run,
            "reasons": list(self.reasons),
            "restorable": self.restorable,
        }
        if self.notes:
            data["notes"] = list(self.notes)
        return data


@dataclass
class _Diff:
    reasons: list[str] = field(default_factory=list)

    def add(self, reason: str) -> None:
        self.reasons.append(reason)


def select(graph: StepGraph, targets: Iterable[str]) -> list[Step]:
    """The steps named by targets (`app`, `app:stage`, a full step id); all when none."""
    wanted = list(targets)
    steps = graph.order()
    if not wanted:
        return steps
    chosen = [
        s
        for s in steps
        if any(s.id == t or s.namespace == t or s.id.startswith(t + ":") for t in wanted)
    ]
    return chosen


HOST_NOTE = (
    "it builds on the host (--build-on host): its binaries are linked against the host's "
    "libraries, not the stack's Alpine (--build-on alpine builds in it)"
)


def explain_steps(
    graph: StepGraph, layout: Layout, steps: Iterable[Step], *, build_on: str = "alpine"
) -> list[Explanation]:
    """An explanation for each step: will it run, and why (and, on the host, what a build links)."""
    from pakman.workspace.store import Store

    store = Store(layout.state / "store")
    journal = read_journal(layout)
    out = []
    for step in steps:
        reasons = _reasons(step, _manifest(layout.manifest(step.id)), graph, journal)
        restorable = bool(reasons) and store.has(step.key)
        notes = (HOST_NOTE,) if build_on == "host" and step.stage == "build" else ()
        out.append(Explanation(step.id, bool(reasons), tuple(reasons), restorable, notes))
    return out


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def _reasons(
    step: Step, manifest: Mapping[str, Any] | None, graph: StepGraph, journal: Mapping[str, str]
) -> list[str]:
    if manifest is None:
        if changed_outputs(journal, step.id, step.key, step.outputs) == []:
            # The journal says done and a build goes by it (docs/state.md): no reason.
            return []
        return ["it has not run here yet (or its last run failed or was interrupted)"]
    if manifest.get("provisional") and manifest.get("key") == step.key:
        return ["its last run could not reach the mirror: it checks the dependencies again"]
    if manifest.get("key") == step.key:
        missing = [o for o in step.outputs if not Path(o.rstrip("/")).exists()]
        if missing:
            return [f"its output {o} is missing" for o in missing]
        changed = changed_outputs(journal, step.id, step.key, step.outputs)
        if changed is None:
            return ["its last run is not in .pakman/journal (interrupted before it was recorded)"]
        return [
            f"its output {o} changed since it ran (replaced, or a file in it deleted or added)"
            for o in changed
        ]
    diff = _Diff()
    if manifest.get("pakman") != __version__:
        diff.add(f"pakman changed ({manifest.get('pakman')} -> {__version__})")
    # Compared as JSON, as the manifest holds them (tuples there are lists).
    old, new = manifest.get("reads", {}), json.loads(json.dumps(step.reads))
    _compare_mapping(
        diff, old.get("config", {}), new.get("config", {}), "config `{}` changed: {} -> {}"
    )
    _compare_mapping(
        diff, old.get("identity", {}), new.get("identity", {}), "the package's {} changed: {} -> {}"
    )
    for name in sorted(set(old.get("templates", {})) | set(new.get("templates", {}))):
        if old.get("templates", {}).get(name) != new.get("templates", {}).get(name):
            diff.add(f"template `{name}` changed")
    if old.get("source") != new.get("source"):
        diff.add(_source_changes(manifest.get("source_files") or {}, step))
    for what, label in (
        ("key", "the signing key changed"),
        ("epoch", "SOURCE_DATE_EPOCH changed"),
        ("mirror", "the mirror or offline mode changed"),
        ("local", "which dependencies other apps of the build provide changed"),
        ("base", "the build base set changed (--build-base-packages, PAKMAN_BUILD_BASE)"),
    ):
        if old.get(what) != new.get(what):
            diff.add(label)
    _compare_git(diff, old.get("git"), new.get("git"))
    previous = manifest.get("upstream", {})
    for upstream_id, key in step.upstream_keys:
        if previous.get(upstream_id) != key:
            diff.add(f"upstream step {upstream_id} changed")
    for upstream_id in sorted(set(previous) - {u for u, _ in step.upstream_keys}):
        diff.add(f"it no longer depends on {upstream_id}")
    if not diff.reasons:
        diff.add("its key changed")
    return diff.reasons


def _compare_git(diff: _Diff, old: Any, new: Any) -> None:
    """What changed of the git metadata a `build.git: true` build sees."""
    if old == new:
        return
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        diff.add(f"`build.git: true` was {'removed' if old else 'added'}")
        return
    if old.get("commit") != new.get("commit"):
        diff.add(f"the git commit changed: {str(old.get('commit'))[:12]} -> {new['commit'][:12]}")
    if old.get("tags") != new.get("tags"):
        diff.add("the repository's git tags changed")


def _compare_mapping(
    diff: _Diff, old: Mapping[str, Any], new: Mapping[str, Any], template: str
) -> None:
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            where, before, after = _first_difference(old.get(key), new.get(key))
            diff.add(template.format(key + where, _short(before), _short(after)))


def _first_difference(old: Any, new: Any, where: str = "") -> tuple[str, Any, Any]:
    """Where two values first differ (`[0].start.call`, `line 2`) and the parts that differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{where}.{key}")
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{where}[{index}]")
    if isinstance(old, str) and isinstance(new, str) and ("\n" in old or "\n" in new):
        old_lines, new_lines = old.splitlines(), new.splitlines()
        for index in range(max(len(old_lines), len(new_lines))):
            a = old_lines[index] if index < len(old_lines) else None
            b = new_lines[index] if index < len(new_lines) else None
            if a != b:
                return f"{where} (line {index + 1})", a, b
    return where, old, new


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return show(text, limit=50)


def _source_changes(before: Mapping[str, str], step: Step) -> str:
    now = {f.path: f.digest for f in step.source.files} if step.source else {}
    changed = sorted(p for p in set(before) & set(now) if before[p] != now[p])
    added = sorted(set(now) - set(before))
    removed = sorted(set(before) - set(now))
    parts = []
    for label, paths in (("changed", changed), ("added", added), ("removed", removed)):
        if paths:
            listed = ", ".join(paths[:LISTED_FILES])
            more = f" and {len(paths) - LISTED_FILES} more" if len(paths) > LISTED_FILES else ""
            parts.append(f"{label}: {listed}{more}")
    return "source files " + ("; ".join(parts) if parts else "changed (mode or kind)")
