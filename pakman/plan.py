"""The plan: the small part of a prepared project's snapshot, and checking it.

`pakman build` starts here: the plan (plain data, read with marshal) holds
the signature of every path the project was prepared from, the steps' ids,
keys and outputs, and the warnings to repeat. Checking it costs one lstat per
watched path and reading the journal, with none of the heavier modules
imported, which keeps a build with nothing to do fast.
"""

from __future__ import annotations

import marshal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pakman import __version__
from pakman.fingerprint import unchanged
from pakman.journal import is_done, read_journal
from pakman.layout import Layout
from pakman.settings import Settings, inputs_digest

PLAN_FORMAT = 2

# The plan: the small part of the snapshot, plain data (read with marshal,
# several times faster than unpickling objects), enough to tell that nothing
# changed and to stand in for the apps that did not.
Plan = dict[str, Any]


def snapshot_dir(layout: Layout) -> Path:
    return layout.state / "cache" / "project"


def read_plan(layout: Layout, inputs: str) -> Plan | None:
    """The plan, when this pakman made it with these inputs and its shared files are as they were."""
    try:
        plan = marshal.loads((snapshot_dir(layout) / "plan.marshal").read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if (
        not isinstance(plan, dict)
        or plan.get("format") != PLAN_FORMAT
        or plan.get("version") != __version__
        or plan.get("inputs") != inputs
        or not unchanged(plan["watched"])
    ):
        return None
    return plan


def all_done(steps: Sequence[Sequence[Any]], journal: dict[str, str]) -> bool:
    return all(is_done(journal, step_id, key, outputs) for step_id, _, _, key, outputs in steps)


# ---------------------------------------------------------------------------
# Preparing from scratch


@dataclass
class Inspection:
    """The snapshot's plan checked against the workspace (one lstat per watched path)."""

    layout: Layout
    inputs: str
    plan: Plan | None  # None: nothing usable, prepare from scratch
    changed: list[int] = field(default_factory=list)  # apps whose files changed
    done: set[int] = field(default_factory=set)  # unchanged apps whose steps are all done
    repository_done: bool = False

    @property
    def nothing_to_do(self) -> bool:
        """Nothing changed and every step is done with its current key."""
        return (
            self.plan is not None
            and not self.changed
            and len(self.done) == len(self.plan["apps"])
            and self.repository_done
        )

    def step_ids(self) -> list[str]:
        assert self.plan is not None
        steps = [s for app in self.plan["apps"] for s in app["steps"]] + self.plan["repository"]
        return [s[0] for s in steps]

    def warnings(self) -> list[str]:
        assert self.plan is not None
        return [w for app in self.plan["apps"] for w in app["warnings"]]


def inspect(settings: Settings) -> Inspection:
    """Read the small plan and check it: what changed, what is done.

    Reads no config, no source and no step objects: the plan, the journal,
    an lstat per watched path and whether each output exists.
    """

    layout = Layout.at(Path(settings.root), Path(settings.repo) if settings.repo else None)
    inputs = inputs_digest(settings, layout)
    plan = read_plan(layout, inputs)
    if plan is None:
        return Inspection(layout, inputs, None)
    journal = read_journal(layout)
    changed: list[int] = []
    done: set[int] = set()
    for index, app in enumerate(plan["apps"]):
        if not unchanged(app["watched"]):
            changed.append(index)
        elif all_done(app["steps"], journal):
            done.add(index)
    repository_done = not changed and all_done(plan["repository"], journal)
    return Inspection(layout, inputs, plan, changed, done, repository_done)
