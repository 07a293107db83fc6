"""The records of done (docs/state.md): which one decides when they disagree.

Each test builds, removes one record, and checks what `pakman build`, plain
doit, `pakman explain` and `pakman run-step` then do.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from build_support import (
    KeyPair,
    build,
    make_key,
    make_workspace,
    subprocess_env,
    working_directory,
)
from pakman.cli import main

STEP = "pyweb:render-run"
MANIFEST = ".pakman/steps/pyweb/render-run.json"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture
def workspace(tmp_path: Path, key: KeyPair) -> Path:
    root = make_workspace(tmp_path, ["pyweb"])
    first = build(root, key)
    assert first.code == 0, first.messages()
    return root


def plain_doit(workspace: Path, key: KeyPair) -> tuple[set[str], set[str]]:
    """Run plain doit (dodo.py importing pakman.dodo): the steps it ran and those it restored."""
    (workspace / "dodo.py").write_text("from pakman.dodo import *  # noqa: F403\n")
    env = subprocess_env(PAKMAN_PATH="apps", PAKMAN_OFFLINE="1", PAKMAN_KEY=str(key.private))
    run = subprocess.run(
        [sys.executable, "-m", "doit"], cwd=workspace, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    ran = {line.split()[1] for line in lines if line.startswith("ran ")}
    restored = {line.split()[1] for line in lines if line.startswith("restored ")}
    return ran, restored


def will_run(workspace: Path, key: KeyPair) -> list[str]:
    out = io.StringIO()
    with working_directory(workspace), contextlib.redirect_stdout(out):
        code = main(["explain", "-p", "apps", "--offline", "--key", str(key.private)])
    assert code == 0
    lines = out.getvalue().splitlines()
    return [line.split()[0] for line in lines if line.startswith(("pyweb:", "repo:"))]


def run_step(workspace: Path, key: KeyPair, step: str) -> tuple[int, str]:
    err = io.StringIO()
    with working_directory(workspace), contextlib.redirect_stderr(err):
        code = main(["run-step", step, "apps", "--offline", "--key", str(key.private)])
    return code, err.getvalue()


def test_a_deleted_manifest_the_journal_decides_for_build_and_explain(
    workspace: Path, key: KeyPair
) -> None:
    (workspace / MANIFEST).unlink()
    again = build(workspace, key)
    assert again.code == 0 and again.ran == set()
    assert not any(e["event"] == "restored" for e in again.events)
    assert not (workspace / MANIFEST).exists()  # build neither needs nor writes it back
    assert will_run(workspace, key) == []  # explain says what build does


def test_a_deleted_manifest_run_step_and_plain_doit_go_by_the_manifest(
    workspace: Path, key: KeyPair
) -> None:
    (workspace / MANIFEST).unlink()
    # make and ninja's `pakman run-step` trusts only manifests: the step after refuses
    code, err = run_step(workspace, key, "pyweb:package:x86_64")
    assert code == 1 and f"{STEP} has not run" in err
    # the manifest is one of doit's targets: plain doit runs the step (restored from the store)
    ran, restored = plain_doit(workspace, key)
    assert (ran, restored) == (set(), {STEP})
    assert (workspace / MANIFEST).exists()


def test_a_deleted_journal_every_step_runs_again_restored_from_the_store(
    workspace: Path, key: KeyPair
) -> None:
    (workspace / ".pakman/journal").unlink()
    again = build(workspace, key)
    assert again.code == 0 and again.ran == set()  # nothing built: the store has every key
    restored = {e["step"] for e in again.events if e["event"] == "restored"}
    assert len(restored) == 20 and STEP in restored
    assert len((workspace / ".pakman/journal").read_text().splitlines()) == 20
    assert build(workspace, key).events[-1]["up_to_date"] == 20


def test_a_deleted_journal_explain_and_plain_doit_run_every_step_and_run_step_runs(
    workspace: Path, key: KeyPair
) -> None:
    (workspace / ".pakman/journal").unlink()
    assert len(will_run(workspace, key)) == 20
    assert run_step(workspace, key, "pyweb:package:x86_64") == (0, "")
    ran, restored = plain_doit(workspace, key)  # run-step wrote the journal line of its step
    assert ran == set() and len(restored) == 19 and "pyweb:package:x86_64" not in restored


def test_a_deleted_doit_database_build_does_not_need_it_plain_doit_runs_every_step(
    workspace: Path, key: KeyPair
) -> None:
    (workspace / ".pakman/doit.sqlite3").unlink()
    again = build(workspace, key)
    assert again.code == 0 and again.ran == set()
    assert again.events[-1]["up_to_date"] == 20
    assert not (workspace / ".pakman/doit.sqlite3").exists()  # doit was not even started
    ran, restored = plain_doit(workspace, key)  # config_changed has nothing to compare with
    assert ran == set() and len(restored) == 20


def test_a_deleted_plan_is_prepared_again_and_nothing_runs(workspace: Path, key: KeyPair) -> None:
    shutil.rmtree(workspace / ".pakman/cache/project")
    again = build(workspace, key)
    assert again.code == 0 and again.ran == set()
    assert again.events[-1]["up_to_date"] == 20
    assert (workspace / ".pakman/cache/project/plan.json").exists()
