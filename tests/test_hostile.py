"""A hostile checkout: what the error corpus (tests/errors/) cannot express.

The corpus holds most cases as data; these need a umask, a full file system
or a look at files a build leaves behind.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pakman.cli import main

BASE_APP = Path(__file__).resolve().parent / "errors" / "key-dev-zero" / "tree"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A workspace holding one small app (`app/`), as the current folder."""
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "PAKMAN_", "ABUILD_")) or name == "SOURCE_DATE_EPOCH":
            monkeypatch.delenv(name)
    ws = tmp_path / "ws"
    shutil.copytree(BASE_APP, ws, symlinks=True)
    monkeypatch.chdir(ws)
    yield ws


def test_the_workspace_keys_folder_is_private_whatever_the_umask(workspace: Path) -> None:
    previous = os.umask(0)
    try:
        assert main(["build", "--offline"]) == 0
    finally:
        os.umask(previous)
    assert (workspace / ".pakman" / "keys").stat().st_mode & 0o777 == 0o700


class _Payload:
    """Unpickling this creates a file: what a crafted cache could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_cache_files_from_elsewhere_run_no_code(workspace: Path, tmp_path: Path) -> None:
    import pickle

    assert main(["build", "--offline"]) == 0
    marker = tmp_path / "code-ran"
    payload = pickle.dumps(_Payload(marker))
    cache = workspace / ".pakman" / "cache"
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert len(files) >= 4  # the plan, the repository's steps, an app's record, a stat cache
    for path in files:
        path.write_bytes(payload)
        # Also where pickles were kept: nothing reads them any more.
        path.with_suffix(".pickle").write_bytes(payload)
    (cache / "project" / "plan.marshal").write_bytes(payload)
    assert main(["build", "--offline"]) == 0
    assert not marker.exists()
    assert main(["graph", "--format", "json"]) == 0  # reads every app's record in full
    assert not marker.exists()


def test_cache_files_are_data(workspace: Path) -> None:
    assert main(["build", "--offline"]) == 0
    for path in (workspace / ".pakman" / "cache").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert data[:1] in (b"{", b"[") or data[:4] == b"PKW1", path


def test_a_record_read_back_is_the_record_written(workspace: Path) -> None:
    from pakman import datafile
    from pakman.cli import _settings, build_parser
    from pakman.graph import Step
    from pakman.project import _AppRecord, _with_shared, _without_shared, load_project

    args = build_parser().parse_args(["build", "--offline"])
    project = load_project(_settings(args), use_snapshot=False)
    steps = [s for s in project.graph.order() if s.app is not None]
    (app,) = project.apps
    tree = next(s.source for s in steps if s.source is not None)
    record = _AppRecord(Path("app/instellar.yml"), ("", b""), app, tree, [], steps)
    kept = _without_shared(record)
    assert kept is not None
    back = _with_shared(datafile.loads(datafile.dumps(kept), _AppRecord))
    assert back.app == app
    assert back.steps == steps
    assert [s.source for s in back.steps] == [s.source for s in steps]
    repository = [s for s in project.graph.order() if s.app is None]
    assert datafile.loads(datafile.dumps(repository), list[Step]) == repository


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"[",
        b"{}",
        b'{"format": 4}',
        b"[1, 2, 3]",
        b"\x80\x05garbage",
        b'"' + b"x" * 100 + b'"',
        b"[" * 100_000,
    ],
)
def test_a_damaged_cache_is_a_miss(workspace: Path, damage: bytes) -> None:
    assert main(["build", "--offline"]) == 0
    for path in (workspace / ".pakman" / "cache").rglob("*"):
        if path.is_file():
            path.write_bytes(damage)
    assert main(["build", "--offline"]) == 0
    assert main(["graph", "--format", "json"]) == 0


def test_a_plan_naming_outputs_outside_the_workspace_is_not_used(workspace: Path) -> None:
    import json

    from pakman.layout import Layout
    from pakman.plan import PLAN_FILE, load_plan

    assert main(["build", "--offline"]) == 0
    path = workspace / ".pakman" / "cache" / "project" / PLAN_FILE
    layout = Layout.at(workspace)
    assert load_plan(path, layout)[0] is not None
    plan = json.loads(path.read_bytes())
    plan["apps"][0]["steps"][0][4] = ["/etc/"]
    path.write_text(json.dumps(plan))
    assert load_plan(path, layout)[0] is None
    assert load_plan(path)[0] is not None  # the shape is right: only where it points is not
