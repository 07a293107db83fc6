"""The workspace lock: one build at a time, or any number of run-steps, never both."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from build_support import make_key, make_workspace, subprocess_env
from pakman.workspace.layout import Layout
from pakman.workspace.lock import LockBusy, run_lock


def test_steps_share_the_lock_and_a_build_cannot_join_them(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path)
    with (
        run_lock(layout, shared=True),
        run_lock(layout, shared=True),
        pytest.raises(LockBusy, match="pakman run-step"),
        run_lock(layout, wait=False),
    ):
        pass
    with run_lock(layout, wait=False):  # free again once the steps are done
        pass


def test_a_build_holds_it_alone_and_says_who_it_is(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path)
    with run_lock(layout):
        assert (layout.state / "lock").read_text().startswith("pid ")
        with pytest.raises(LockBusy, match=r"\(pid \d+\)"), run_lock(layout, wait=False):
            pass
        with pytest.raises(LockBusy), run_lock(layout, wait=False, shared=True):
            pass
    assert (layout.state / "lock").read_text() == ""  # nobody holds it now


def test_run_step_waits_for_a_build(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path, ["greet"])
    key = make_key(tmp_path)
    layout = Layout.at(workspace)
    command = [sys.executable, "-m", "pakman", "run-step", "greet:fetch-deps-build:noarch"]
    options = ["apps", "--offline", "--key", str(key.private)]
    with run_lock(layout):
        step = subprocess.Popen(
            [*command, *options],
            cwd=workspace,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        time.sleep(1.5)
        assert step.poll() is None  # still waiting
    out, err = step.communicate(timeout=60)
    assert step.returncode == 0, err
    assert "waiting for another build" in err
    assert out == "ran greet:fetch-deps-build:noarch\n"
