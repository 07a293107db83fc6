"""The remote cache's settings are checked on every build, and only running tasks asks it.

A bad --remote-cache value is refused (exit 3, one line, no traceback) also
when nothing is to run; plain `doit list` (or any doit command that runs no
task) never talks to the cache nor fills the store.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from build_support import KeyPair, build, make_key, subprocess_env, write_apps
from nginx_support import Nginx

APPS = ("alpha", "beta")


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


BAD = [
    (("--remote-cache", "ftp://cache.example"), {}, "expected an http:// or https:// URL"),
    (("--remote-cache", "cache.example:8080"), {}, "expected an http:// or https:// URL"),
    (("--remote-cache", "http://127.0.0.1:99999"), {}, "port"),
    (
        ("--remote-cache", "http://127.0.0.1:1"),
        {"PAKMAN_REMOTE_CACHE_HEADER": "Bearer s3cret"},
        "expected `Name: value`",
    ),
    (
        ("--remote-cache", "http://127.0.0.1:1", "--remote-cache-timeout", "soon"),
        {},
        "--remote-cache-timeout",
    ),
]


@pytest.mark.parametrize(
    ("args", "env", "said"), BAD, ids=["ftp", "no-scheme", "port", "header", "timeout"]
)
@pytest.mark.parametrize("no_op", [False, True], ids=["first-build", "no-op"])
def test_a_bad_remote_cache_value_is_refused(
    tmp_path: Path,
    key: KeyPair,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    env: dict[str, str],
    said: str,
    no_op: bool,
) -> None:
    workspace = write_apps(tmp_path, APPS)
    if no_op:
        assert build(workspace, key).code == 0  # then nothing is left to run
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run = build(workspace, key, *args)
    assert run.code == 3, run.messages()
    (line,) = run.stderr.splitlines()
    assert said in line and "Traceback" not in run.stderr
    assert "s3cret" not in run.stderr  # the header's value is never said


def test_a_good_remote_cache_value_on_a_no_op_build(tmp_path: Path, key: KeyPair) -> None:
    workspace = write_apps(tmp_path, APPS)
    assert build(workspace, key).code == 0
    run = build(
        workspace, key, "--remote-cache", "http://127.0.0.1:1", "--remote-cache-timeout", "2"
    )
    assert run.code == 0, run.messages()
    assert run.ran == set() and run.stderr == ""  # nothing asked of the cache


def settled_log(server: Nginx) -> str:
    """nginx's access log once it stopped growing (it writes a line after answering)."""
    log = server.access_log()
    while True:
        time.sleep(0.3)
        if (again := server.access_log()) == log:
            return log
        log = again


@pytest.mark.parametrize(
    "command",
    [["list"], ["list", "--all"], ["-f", "dodo.py", "list"], ["info", "alpha"], ["clean", "-n"]],
)
def test_doit_commands_that_run_no_task_leave_the_cache_alone(
    tmp_path: Path, key: KeyPair, nginx: Nginx, command: list[str]
) -> None:
    first = write_apps(tmp_path / "a", APPS)
    assert build(first, key, "--remote-cache", nginx.url).code == 0
    asked = settled_log(nginx)

    workspace = write_apps(tmp_path / "b", APPS)
    (workspace / "dodo.py").write_text("from pakman.dodo import *  # noqa: F403\n")
    variables = subprocess_env(
        PAKMAN_PATH="apps",
        PAKMAN_OFFLINE="1",
        PAKMAN_KEY=str(key.private),
        PAKMAN_REMOTE_CACHE=nginx.url,
    )
    run = subprocess.run(
        [sys.executable, "-m", "doit", *command],
        cwd=workspace,
        env=variables,
        capture_output=True,
        text=True,
        check=False,
    )
    # (`doit info` says 1 for a task that is not up to date)
    assert run.returncode in ((0, 1) if command[0] == "info" else (0,)), run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert settled_log(nginx) == asked  # not one request
    store = workspace / ".pakman/store"
    assert not store.exists() or not [p for p in store.iterdir() if p.name != "tmp"]
    assert "remote cache" not in run.stderr

    # `doit run` (and plain `doit`) does use it.
    ran = subprocess.run(
        [sys.executable, "-m", "doit", "run"],
        cwd=workspace,
        env=variables,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "restored from the remote cache, 0 uploaded, 0 misses" in ran.stderr
    assert nginx.access_log() != asked


@pytest.mark.parametrize(
    ("variables", "said"),
    [
        ({"PAKMAN_REMOTE_CACHE": "ftp://cache.example"}, "expected an http:// or https:// URL"),
        (
            {"PAKMAN_REMOTE_CACHE": "http://127.0.0.1:1", "PAKMAN_REMOTE_CACHE_HEADER": "s3cret"},
            "expected `Name: value`",
        ),
        (
            {"PAKMAN_REMOTE_CACHE": "http://127.0.0.1:1", "PAKMAN_REMOTE_CACHE_TIMEOUT": "0"},
            "seconds",
        ),
    ],
    ids=["url", "header", "timeout"],
)
def test_plain_doit_refuses_a_bad_setting_in_one_line(
    tmp_path: Path, key: KeyPair, variables: dict[str, str], said: str
) -> None:
    workspace = write_apps(tmp_path, APPS)
    (workspace / "dodo.py").write_text("from pakman.dodo import *  # noqa: F403\n")
    env = subprocess_env(
        PAKMAN_PATH="apps", PAKMAN_OFFLINE="1", PAKMAN_KEY=str(key.private), **variables
    )
    run = subprocess.run(
        [sys.executable, "-m", "doit"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 3, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and said in run.stderr
    assert "s3cret" not in run.stdout + run.stderr
    assert not (workspace / ".pakman/repo").exists()  # nothing ran


def test_plain_doit_says_a_bad_instellar_yml_in_one_line(tmp_path: Path, key: KeyPair) -> None:
    workspace = write_apps(tmp_path, APPS)
    (workspace / "apps/alpha/instellar.yml").write_text("stack: [\n")
    (workspace / "dodo.py").write_text("from pakman.dodo import *  # noqa: F403\n")
    env = subprocess_env(PAKMAN_PATH="apps", PAKMAN_OFFLINE="1", PAKMAN_KEY=str(key.private))
    run = subprocess.run(
        [sys.executable, "-m", "doit"], cwd=workspace, env=env, capture_output=True, text=True
    )
    assert run.returncode == 3, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert "apps/alpha/instellar.yml:2:1: invalid YAML" in run.stderr


def test_a_bad_remote_cache_value_is_refused_with_always(tmp_path: Path, key: KeyPair) -> None:
    # --always asks no cache; its value is still checked.
    workspace = write_apps(tmp_path, APPS)
    run = build(workspace, key, "--always", "--remote-cache", "ftp://cache.example")
    assert run.code == 3, run.messages()
    assert "expected an http:// or https:// URL" in run.stderr
    assert run.ran == set()
