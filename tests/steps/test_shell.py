"""The app's own shell: abuild's variables, a log, and never the signing secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from pakman.errors import StepFailed
from pakman.steps.shell import run_shell, shell_variables


def test_the_signing_key_and_passphrase_never_reach_the_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABUILD_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----secret")
    monkeypatch.setenv("PAKMAN_KEY_PASSPHRASE", "hunter2")
    monkeypatch.setenv("SOMETHING_ELSE", "kept")
    log = tmp_path / "log"
    run_shell("env", cwd=tmp_path, log=log, what="env")
    text = log.read_text()
    assert "SOMETHING_ELSE=kept" in text
    assert "secret" not in text and "hunter2" not in text


def test_a_failure_shows_the_status_and_the_tail(tmp_path: Path) -> None:
    script = shell_variables({"pkgname": "it's"}) + 'seq 1 40; echo "$pkgname"; exit 7'
    with pytest.raises(StepFailed) as failure:
        run_shell(script, cwd=tmp_path, log=tmp_path / "log", what="build of x")
    message = str(failure.value)
    assert "build of x failed with exit status 7" in message
    assert "  | it's" in message and "  | 17\n" in message and "  | 16\n" not in message
