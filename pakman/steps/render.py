"""Render steps: one generated file each (APKBUILD, service files, install scripts).

A render step's action is given exactly the slice of configuration its key
was made of (`step.reads`), never the app's whole configuration: the
template it reads names the declaration (render/files.py), or the hook.
"""

from __future__ import annotations

from pathlib import Path

from pakman.compile.graph import Step
from pakman.fileio import write_if_changed
from pakman.render import files
from pakman.render.engine import HOOK_FILE_MODE, render_generated, render_hook_script
from pakman.steps import RunContext


def render_file(step: Step, context: RunContext) -> None:
    """Render the step's file into the app's render/ folder (rewritten only when it changes)."""
    (template,) = step.reads["templates"]
    if template == "hook":
        assert step.item is not None
        text, mode = render_hook_script(step.reads["config"][f"hook.{step.item}"]), HOOK_FILE_MODE
    else:
        generated = next(f for f in files.GENERATED_FILES if f.template == template)
        text, mode = render_generated(generated, step.reads), generated.mode
    write_if_changed(Path(step.outputs[0]), text.encode(), mode)
