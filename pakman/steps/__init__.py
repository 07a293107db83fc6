"""The actions that steps run, and the one entry point that runs any of them.

Each stage of a pipeline names an action `module:function` taking
`(step, context)`. Actions are module-level functions so that doit's
parallel mode can run them in worker processes. They write their outputs
atomically (a temporary name, then a rename) and raise `StepFailed` or
`ConfigError` with a message a person can act on.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pakman import __version__
from pakman.alpine import DEFAULT_MIRROR
from pakman.compile.graph import Step, StepGraph
from pakman.compile.settings import PASSPHRASE_VARIABLE
from pakman.errors import StepFailed
from pakman.fileio import write_atomic
from pakman.workspace.journal import journal_line
from pakman.workspace.layout import Layout
from pakman.workspace.publication import Repository
from pakman.workspace.trash import workspace_trash

if TYPE_CHECKING:
    from pakman.apk import SigningKey


@dataclass(frozen=True)
class RunContext:
    """Settings of one build run, shared by every step (picklable, holds no secrets)."""

    layout: Layout
    key_file: str = ""  # the signing key's path, or "" to read ABUILD_PRIVATE_KEY
    key_name: str = ""  # the key's name (public key file name) when it comes from the environment
    mirror: str = DEFAULT_MIRROR
    offline: bool = False
    require_deps: bool = False
    verbose: bool = False
    alpine_keys: str = ""  # folder of public keys that fetched indexes must be signed with
    level: int | None = None  # gzip level for packages (None: the packer's default)
    use_store: bool = True  # restore outputs of keys built before instead of running
    # --build-on: on "alpine" fetch-deps-build must resolve the closure (or fail)
    build_on: str = "alpine"
    # --allow-rebuild: sign may replace a published package with other bytes
    allow_rebuild: bool = False
    # Names one build run, so that steps in one process share what they fetched
    # (see pakman.apk.mirror.fetch_index); never part of a step's key.
    run_id: str = ""

    def signing_key(self) -> SigningKey:
        """The signing key, loaded where the step runs (it never travels in arguments)."""
        from pakman.apk import load_signing_key

        return load_signing_key(
            private_key=self.key_file or None,
            keyname=self.key_name or None,
            passphrase=os.environ.get(PASSPHRASE_VARIABLE) or None,
        )

    def repository(self) -> Repository:
        """The repository, whose architecture folders are published whole."""
        return Repository(self.layout.repo, workspace_trash(self.layout).discard)

    def log_path(self, step: Step) -> Path:
        return self.layout.state / "logs" / (step.id.replace(":", "/") + ".log")


# An action may return warnings to show the user (e.g. dependencies left unchecked).
Action = Callable[[Step, RunContext], "list[str] | ProvisionalResult | None"]


def resolve_action(name: str) -> Action:
    """Import `module:function`."""
    module, _, function = name.partition(":")
    action: Action = getattr(importlib.import_module(module), function)
    return action


@dataclass(frozen=True)
class Outcome:
    """What running a step did."""

    warnings: tuple[str, ...] = ()
    restored: bool = False  # its outputs came from the store instead of running it
    provisional: bool = False  # done for this build only: it runs again next time


@dataclass(frozen=True)
class ProvisionalResult:
    """What an action returns, instead of its warnings, when its result rests on something
    outside its key.

    fetch-deps when the mirror could not be reached: its lock serves this
    build, with these warnings, but it is not recorded as done (no manifest,
    no journal line, no store entry), so the next build checks again.
    """

    warnings: list[str]


def execute_step(step: Step, context: RunContext) -> Outcome:
    """Run one step, or restore its outputs from the store when its key was built before.

    Then record its manifest (key, what it read, outputs) and add it to the
    journal; a step that fails or is interrupted leaves neither, and so does
    a provisional one (see `ProvisionalResult`).
    """
    from pakman.workspace.store import Store

    layout = context.layout
    layout.manifest(step.id).unlink(missing_ok=True)
    outputs = [Path(o.rstrip("/")) for o in step.outputs]
    store = Store(layout.state / "store")
    # A repository step under --only also keeps packages its key does not cover
    # (the other apps'): what it made is not reused by key.
    use_store = context.use_store and "only" not in step.reads
    repository = context.repository()
    restored = use_store and store.restore(step.key, outputs, repository)
    warnings: list[str] = []
    if not restored:
        result = resolve_action(step.action)(step, context)
        if isinstance(result, ProvisionalResult):
            return Outcome(tuple(result.warnings), provisional=True)
        warnings = result or []
        if use_store:
            # A published folder is stored as what its link points to.
            store.save(step.key, [o.resolve() if repository.holds(o) else o for o in outputs])
    line = record_done(step, layout, restored)
    with (layout.state / "journal").open("a", encoding="utf-8") as journal:
        journal.write(line)
    return Outcome(tuple(warnings), restored)


def restore_step(step: Step, layout: Layout, *, fresh: bool = False) -> str | None:
    """Restore a step of the app's (not the repository's) from the store, as a build would.

    Its outputs put in place and its manifest written; returns its journal
    line for the caller to append (one write for many steps), or None when
    the store has no usable entry of its key. `fresh`: the entry was just
    written by this process (see `Store.restore`). Safe in several threads at
    once for different steps. For the remote cache, whose entries a build
    restores without handing the steps to doit (pakman.doit.remote).
    """
    from pakman.workspace.store import Store

    layout.manifest(step.id).unlink(missing_ok=True)
    outputs = [Path(o.rstrip("/")) for o in step.outputs]
    if not Store(layout.state / "store").restore(step.key, outputs, fresh=fresh):
        return None
    return record_done(step, layout, restored=True)


def record_done(step: Step, layout: Layout, restored: bool) -> str:
    """Write the manifest of a step that is done; returns its journal line (not yet written)."""
    record = {
        "id": step.id,
        "key": step.key,
        "pakman": __version__,
        "reads": step.reads,
        "upstream": dict(step.upstream_keys),
        "outputs": [layout.relative_str(o) for o in step.outputs],
        "restored": restored,
    }
    if step.source is not None:
        record["source_files"] = {f.path: f.digest for f in step.source.files}
    # One line: json's C encoder (an indented dump is pure Python, and a fresh
    # clone restoring from the remote cache writes thousands).
    text = json.dumps(record, sort_keys=True)
    write_atomic(layout.manifest(step.id), text.encode(), durable=False)
    return journal_line(step.id, step.key, step.outputs)


def record_provisional(step: Step, layout: Layout) -> None:
    """Let the steps after a provisional one run, as in the build it served, and not more.

    For `pakman run-step` (make, ninja), where the next step is another
    process that finds what ran by its manifest: the manifest says
    `provisional` and is dated 1970, so make and ninja find it older than
    what it reads and run the step again next time; it gets no journal
    line, so a build runs it again too.
    """
    manifest = layout.manifest(step.id)
    record = {"id": step.id, "key": step.key, "pakman": __version__, "provisional": True}
    write_atomic(manifest, json.dumps(record, indent=1, sort_keys=True).encode(), durable=False)
    os.utime(manifest, (0, 0))


def recorded_key(layout: Layout, step_id: str) -> str | None:
    """The key in a step's manifest, or None when it has not run (or its record is unreadable)."""
    try:
        record = json.loads(layout.manifest(step_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    key = record.get("key") if isinstance(record, dict) else None
    return key if isinstance(key, str) else None


def require_upstream(step: Step, graph: StepGraph, layout: Layout) -> None:
    """Refuse to run a step unless the steps before it ran with the keys this graph gives them.

    make and ninja decide by file times what to run; this catches what they
    cannot see (other options or environment, another pakman, files added
    since the graph was exported) instead of mixing old outputs with new.
    """
    recorded = {u: recorded_key(layout, u) for u in step.upstream}
    missing = [u for u, key in recorded.items() if key is None]
    stale = [u for u, key in recorded.items() if key is not None and key != graph[u].key]
    if missing:
        them = "it" if len(missing) == 1 else "them"
        raise StepFailed(
            f"{step.id} cannot run yet: {', '.join(missing)} "
            f"{'has' if len(missing) == 1 else 'have'} not run (or failed); run {them} "
            "first. (An exported Makefile or build.ninja that lacks a step is out of date: "
            "export it again.)"
        )
    if stale:
        them = "it" if len(stale) == 1 else "them"
        raise StepFailed(
            f"{step.id} cannot run: {', '.join(stale)} ran with other inputs than this graph "
            f"gives {them} (other options or environment, such as GITHUB_RUN_NUMBER or "
            "SOURCE_DATE_EPOCH, another pakman version, or files added since the graph was "
            f"exported); run {them} again: `pakman build`, `make -B`, or "
            "`ninja -t clean && ninja`"
        )


def upstream_outputs(step: Step, stage: str) -> list[str]:
    """The outputs of the step's upstream steps of one stage."""
    return [path for step_id, path in step.inputs if step_id.split(":")[1] == stage]


def upstream_output(step: Step, stage: str) -> str:
    """The single output of the step's upstream step of `stage`."""
    (path,) = upstream_outputs(step, stage)
    return path


def discard(path: Path, context: RunContext) -> None:
    """Remove what is at `path` now; a folder's files are deleted in the background."""
    workspace_trash(context.layout).discard(path)


def replace_dir(tmp: Path, final: Path, context: RunContext) -> None:
    """Move a finished folder into place, replacing the old one."""
    discard(final.with_name(final.name + ".old"), context)  # left by an older pakman
    discard(final, context)
    os.replace(tmp, final)


def fresh_dir(path: Path, context: RunContext) -> Path:
    """An empty folder at `path` (what was there removed first)."""
    discard(path, context)
    path.mkdir(parents=True)
    return path
