"""Render steps: the action renders from the slice its key was made of, not the app."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from pakman.compile.settings import Settings
from pakman.project import load_project
from pakman.render.engine import render_all
from pakman.steps import RunContext
from pakman.steps.render import render_file
from support import EXAMPLES


@pytest.mark.parametrize("stage", ["render-apkbuild", "render-initd", "render-run", "render-hook"])
def test_a_render_step_reads_only_its_slice(stage: str, tmp_path: Path, signing_key: Path) -> None:
    shutil.copytree(EXAMPLES / "pyweb", tmp_path / "apps/pyweb")
    settings = Settings(
        paths=(str(tmp_path / "apps"),),
        root=str(tmp_path),
        key_file=str(signing_key),
        offline=True,
        build_on="host",
    )
    project = load_project(settings, use_snapshot=False)
    step = next(s for s in project.graph.order() if s.stage == stage)
    # Without the app's configuration, the step writes what `pakman render` writes.
    out = tmp_path / "out" / Path(step.outputs[0]).name
    out.parent.mkdir()
    render_file(
        dataclasses.replace(step, app=None, outputs=(str(out),)), RunContext(project.layout)
    )
    assert step.app is not None
    app, identity = step.app.config, dataclasses.replace(step.app.identity, release=0)
    expected = render_all(app, identity)[out.name]
    assert out.read_text() == expected.text
    assert out.stat().st_mode & 0o777 == expected.mode
