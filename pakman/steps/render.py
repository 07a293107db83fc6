"""Render steps: one generated file each (APKBUILD, service files, install scripts)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pakman.compile.graph import Step
from pakman.fileio import write_if_changed
from pakman.render.engine import HOOK_FILE_MODE, RENDERED_FILES, render_hook
from pakman.steps import RunContext

_BY_STAGE = {f"render-{k.kind.lower()}": k for k in RENDERED_FILES}


def render_file(step: Step, context: RunContext) -> None:
    """Render the step's file into the app's render/ folder (rewritten only when it changes)."""
    assert step.app is not None
    app, identity = step.app.config, step.app.identity
    if step.stage == "render-hook":
        assert step.item is not None
        text, mode = render_hook(app, identity, step.item), HOOK_FILE_MODE
    else:
        kind = _BY_STAGE[step.stage]
        if kind.kind == "APKBUILD":
            # The release is not an input of this step: packaging fills it in,
            # so a new run number re-packages without re-rendering.
            identity = dataclasses.replace(identity, release=0)
        text, mode = kind.render(app, identity), kind.mode
    write_if_changed(Path(step.outputs[0]), text.encode(), mode)
