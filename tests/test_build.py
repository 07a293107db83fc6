"""`pakman build` end to end: one build of the examples, many checks on its result."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
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
from pakman.apk import PublicKey, verify_file
from pakman.apk.reader import read_package_control
from pakman.cli import main


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, key: KeyPair) -> Path:
    workspace = make_workspace(tmp_path_factory.mktemp("workspace"))
    run = build(workspace, key)
    assert run.code == 0, run.messages()
    return workspace


EXPECTED = {
    "x86_64": {
        "greet-0.0.0-r0.apk",
        "heartbeat-0.0.0-r0.apk",
        "heartbeat-openrc-0.0.0-r0.apk",
        "pyweb-0.0.0-r0.apk",
        "pyweb-openrc-0.0.0-r0.apk",
        "static-site-0.0.0-r0.apk",
    },
}


def trusted(key: KeyPair) -> dict[str, PublicKey]:
    public = PublicKey.from_file(key.public)
    return {public.keyname: public}


def members(package: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(package, "r:gz") as archive:
        return {m.name: m for m in archive.getmembers()}


def test_repository_holds_every_package_signed(built: Path, key: KeyPair) -> None:
    repo = built / ".pakman" / "repo"
    for arch, names in EXPECTED.items():
        assert {p.name for p in (repo / arch).glob("*.apk")} == names
        for path in [*(repo / arch).glob("*.apk"), repo / arch / "APKINDEX.tar.gz"]:
            verdict = verify_file(path, trusted(key))
            assert verdict.status == "ok", verdict.problems


def test_index_lists_the_packages(built: Path) -> None:
    with tarfile.open(built / ".pakman/repo/x86_64/APKINDEX.tar.gz", "r:gz") as archive:
        member = archive.extractfile("APKINDEX")
        assert member is not None
        text = member.read().decode()
    assert {line[2:] for line in text.splitlines() if line.startswith("P:")} == {
        "greet",
        "heartbeat",
        "heartbeat-openrc",
        "pyweb",
        "pyweb-openrc",
        "static-site",
    }
    # noarch packages (greet, the -openrc splits) are listed under the folder's arch
    assert "P:greet\nV:0.0.0-r0\nA:x86_64\n" in text


def test_default_package_tree(built: Path) -> None:
    entries = members(built / ".pakman/repo/x86_64/pyweb-0.0.0-r0.apk")
    home = entries["var/lib/pyweb"]
    assert (home.uname, home.gname, home.mode) == ("pyweb", "pyweb", 0o755)
    assert entries["var/lib/pyweb/bin/pyweb"].mode == 0o755
    assert "var/lib/pyweb/src/main.py" in entries
    assert entries["var/lib/pyweb/service/run"].mode == 0o755
    assert "etc/profile.d/pyweb.sh" in entries
    assert "etc/init.d/pyweb" not in entries  # moved to the -openrc split
    openrc = members(built / ".pakman/repo/x86_64/pyweb-openrc-0.0.0-r0.apk")
    assert "etc/init.d/pyweb" in openrc
    with (built / ".pakman/repo/x86_64/pyweb-0.0.0-r0.apk").open("rb") as handle:
        pkginfo = read_package_control(handle).pkginfo_text
    assert "depend = pyweb-openrc\n" in pkginfo and "depend = /bin/sh\n" in pkginfo


def test_static_and_custom_trees(built: Path) -> None:
    site = members(built / ".pakman/repo/x86_64/static-site-0.0.0-r0.apk")
    assert "etc/static-site/default.conf" in site
    assert "var/lib/static-site/public/index.html" in site
    greet = members(built / ".pakman/repo/x86_64/greet-0.0.0-r0.apk")
    assert greet["usr/bin/greet"].mode == 0o755
    assert "usr/share/man/man1/greet.1" in greet


def test_the_build_ran_the_app_build(built: Path) -> None:
    html = built / ".pakman/build/static-site/build-noarch/public/index.html"
    assert "<h1>Hello from a static site</h1>" in html.read_text()
    apkbuild = built / ".pakman/build/pyweb/packages/x86_64/APKBUILD"
    assert "pkgrel=0\n" in apkbuild.read_text()


def test_second_build_runs_nothing(built: Path, key: KeyPair) -> None:
    again = build(built, key)
    assert again.code == 0
    assert again.ran == set()
    summary = again.events[-1]
    assert summary["event"] == "summary" and summary["built"] == 0


def test_always_runs_every_step_for_real(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["heartbeat"])
    assert build(workspace, key).code == 0
    log = workspace / ".pakman/logs/heartbeat/build/x86_64.log"
    log.unlink()
    run = build(workspace, key, "--always")
    assert run.code == 0, run.messages()
    assert not [e for e in run.events if e["event"] == "restored"]
    assert "heartbeat:build:x86_64" in run.ran and log.exists()  # the build command ran


def test_same_bytes_from_another_folder_and_in_parallel(
    built: Path, key: KeyPair, tmp_path: Path
) -> None:
    other = make_workspace(tmp_path)
    time.sleep(0.01)
    run = build(other, key, "-j", "2")
    assert run.code == 0, run.messages()
    for arch, names in EXPECTED.items():
        for name in [*names, "APKINDEX.tar.gz"]:
            first = (built / ".pakman/repo" / arch / name).read_bytes()
            assert (other / ".pakman/repo" / arch / name).read_bytes() == first, name


def test_jobs_start_worker_processes_only_for_steps_that_can_run_at_once(
    tmp_path: Path, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    from doit import runner

    workspace = make_workspace(tmp_path, ["greet", "heartbeat"])
    assert build(workspace, key).code == 0
    started: list[int] = []
    parallel_runner = runner.MRunner.__init__

    def counted(self: object, *args: object, **kwargs: object) -> None:
        started.append(1)
        parallel_runner(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner.MRunner, "__init__", counted)
    # Only the repository's steps (one after the other): no worker process.
    for path in (workspace / ".pakman/repo/x86_64").glob("APKINDEX*"):
        path.unlink()
    run = build(workspace, key, "-j", "2")
    assert run.code == 0, run.messages()
    handed = {str(e["step"]) for e in run.events if e["event"] == "start"}
    assert handed and all(s.startswith("repo:") for s in handed) and started == []
    # Two apps' steps: worker processes run them side by side.
    for app in ("greet", "heartbeat"):
        with (workspace / "apps" / app / "README.md").open("a") as readme:
            readme.write("more\n")
    run = build(workspace, key, "-j", "2")
    assert run.code == 0, run.messages()
    assert {"greet:build:noarch", "heartbeat:build:x86_64"} <= run.ran and started == [1]


def test_failing_build_step_shows_its_log_tail(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["heartbeat"])
    config = workspace / "apps/heartbeat/instellar.yml"
    config.write_text(
        config.read_text().replace(
            "    sh -n bin/heartbeat\n",
            "    sh -n bin/heartbeat\n    echo compiling the thing\n    exit 7\n",
        )
    )
    run = build(workspace, key)
    assert run.code == 1
    assert run.failed == {"heartbeat:build:x86_64"}
    message = run.messages()
    assert "failed with exit status 7" in message
    assert "| compiling the thing" in message
    assert not (workspace / ".pakman/repo/x86_64/heartbeat-0.0.0-r0.apk").exists()


def running(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for its reaper does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_build_stops_the_build_command_and_keeps_nothing_half_done(
    tmp_path: Path, key: KeyPair, sig: signal.Signals, code: int
) -> None:
    workspace = make_workspace(tmp_path, ["heartbeat"])
    config = workspace / "apps/heartbeat/instellar.yml"
    text = config.read_text()
    marker = tmp_path / "started"
    config.write_text(
        text.replace(
            "    sh -n bin/heartbeat\n",
            f"    sh -n bin/heartbeat\n    sleep 600 & echo $! > {marker}; wait\n",
        )
    )
    command = [sys.executable, "-m", "pakman", "build", "apps", "--offline", "--key"]
    process = subprocess.Popen(
        [*command, str(key.private)],
        cwd=workspace,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
        # A shell's background job starts with SIGINT ignored (so would pakman):
        # give it the default, as a terminal does.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    sleeper = int(marker.read_text())
    process.send_signal(sig)
    try:
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(sleeper, signal.SIGKILL)

    assert process.returncode == code, err
    assert "pakman: interrupted" in err
    assert "0 failed" not in out  # no summary that reads like success
    assert not running(sleeper)  # the build command's children were stopped too
    config.write_text(text)
    run = build(workspace, key)
    assert run.code == 0, run.messages()
    assert "heartbeat:build:x86_64" in run.ran


def test_invalid_config_exits_3_before_anything_runs(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["heartbeat"])
    (workspace / "apps/heartbeat/instellar.yml").write_text("dependencies: {}\nbuild: []\n")
    run = build(workspace, key)
    assert run.code == 3
    assert "build: expected a mapping, got a list" in run.stderr
    assert run.events == []


def test_a_bad_key_is_refused_before_packing(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path, ["heartbeat"])
    bad = KeyPair(tmp_path / "missing.rsa", tmp_path / "missing.rsa.pub")
    run = build(workspace, bad)
    assert run.code == 3
    assert "missing.rsa" in run.stderr and run.events == []


def test_a_public_key_beside_the_key_that_is_not_its_half_is_refused(
    tmp_path: Path, key: KeyPair
) -> None:
    workspace = make_workspace(tmp_path, ["heartbeat"])
    other = make_key(tmp_path / "other")
    private = tmp_path / "mixed" / "org.rsa"
    private.parent.mkdir()
    private.write_bytes(key.private.read_bytes())
    Path(f"{private}.pub").write_bytes(other.public.read_bytes())
    run = build(workspace, KeyPair(private, Path(f"{private}.pub")))
    assert run.code == 3
    assert "the two keys do not match" in run.stderr and run.events == []


def test_without_a_key_a_workspace_key_is_made_once(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path, ["greet"])
    first = subprocess.run(
        [sys.executable, "-m", "pakman", "build", "apps", "--offline"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=False,
        env=subprocess_env(),
    )
    assert first.returncode == 0, first.stderr
    assert "created a signing key for this workspace: .pakman/keys/pakman-" in first.stderr
    keys = sorted((workspace / ".pakman/keys").iterdir())
    assert len(keys) == 2 and re.fullmatch(r"pakman-[0-9a-f]{8}\.rsa", keys[0].name), keys
    assert keys[1].name == keys[0].name + ".pub"
    again = subprocess.run(
        [sys.executable, "-m", "pakman", "build", "apps", "--offline"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=False,
        env=subprocess_env(),
    )
    assert "created a signing key" not in again.stderr
    assert sorted((workspace / ".pakman/keys").iterdir()) == keys


def test_a_second_build_waits_for_the_first(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["greet"])
    (workspace / ".pakman").mkdir()
    with (workspace / ".pakman/lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        busy = build(workspace, key, "--no-wait")
        assert busy.code == 1
        assert "another build is running" in busy.stderr
        waiting = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pakman",
                "build",
                "apps",
                "--offline",
                "--key",
                str(key.private),
            ],
            cwd=workspace,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        time.sleep(1.5)
        assert waiting.poll() is None  # still waiting
        fcntl.flock(lock, fcntl.LOCK_UN)
    _, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert "waiting for another build" in err


def test_plain_doit_runs_the_same_tasks(built: Path, key: KeyPair) -> None:
    (built / "dodo.py").write_text("from pakman.dodo import *  # noqa: F403\n")
    env = subprocess_env(PAKMAN_PATH="apps", PAKMAN_OFFLINE="1", PAKMAN_KEY=str(key.private))
    run = subprocess.run(
        [sys.executable, "-m", "doit"],
        cwd=built,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 steps ran" in run.stdout  # the same database: everything is up to date
    listing = subprocess.run(
        [sys.executable, "-m", "doit", "list", "--all"],
        cwd=built,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pyweb:build:x86_64" in listing and "repo:sign:x86_64" in listing
    hook = built / "apps/greet/instellar.yml"
    hook.write_text(hook.read_text().replace("greet installed", "greet is installed"))
    run = subprocess.run(
        [sys.executable, "-m", "doit"],
        cwd=built,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    ran = {line.split()[1] for line in run.stdout.splitlines() if line.startswith("ran ")}
    assert ran == {
        "greet:render-hook:post-install",
        "greet:package:noarch",
        "repo:index:x86_64",
        "repo:sign:x86_64",
    }
    assert build(built, key).ran == set()  # and pakman build agrees


def test_json_events(built: Path, key: KeyPair) -> None:
    out = io.StringIO()
    with working_directory(built), contextlib.redirect_stdout(out):
        code = main(["build", "apps", "--offline", "--key", str(key.private), "--json"])
    assert code == 0
    # Every line of stdout is one JSON object naming its event, nothing else.
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(isinstance(e, dict) and isinstance(e.get("event"), str) for e in events)
    assert {e["event"] for e in events} == {"up-to-date", "summary"}
    assert events[-1]["event"] == "summary"
    up_to_date = [e["step"] for e in events if e["event"] == "up-to-date"]
    assert len(up_to_date) == len(set(up_to_date)) == events[-1]["up_to_date"]


def test_a_damaged_doit_database_is_replaced(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["greet"])
    assert build(workspace, key).code == 0
    (workspace / ".pakman/doit.sqlite3").write_bytes(b"garbage, not a database" * 100)
    (workspace / ".pakman/repo/x86_64/greet-0.0.0-r0.apk").unlink()  # something to do
    run = build(workspace, key)
    assert run.code == 0, run.messages()
    assert "doit.sqlite3 is damaged" in run.stderr
    assert (workspace / ".pakman/repo/x86_64/greet-0.0.0-r0.apk").exists()


def _as_checked_out_under(root: Path, umask: int) -> None:
    """Modes as a checkout made under `umask` has them (git keeps only the executable bit)."""
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o777 & ~umask)
        for name in files:
            path = os.path.join(folder, name)
            executable = os.stat(path).st_mode & 0o100
            os.chmod(path, (0o777 if executable else 0o666) & ~umask)


def test_the_builders_umask_does_not_change_a_byte(tmp_path: Path, key: KeyPair) -> None:
    packages: dict[int, dict[str, bytes]] = {}
    for umask in (0o022, 0o002, 0o077):
        old = os.umask(umask)
        try:
            workspace = make_workspace(tmp_path / f"umask-{umask:03o}")
            _as_checked_out_under(workspace / "apps", umask)
            run = build(workspace, key)
        finally:
            os.umask(old)
        assert run.code == 0, run.messages()
        repo = workspace / ".pakman/repo"
        packages[umask] = {
            p.relative_to(repo).as_posix(): p.read_bytes() for p in sorted(repo.glob("[!.]*/*"))
        }
    assert len(packages[0o022]) == 7
    for umask in (0o002, 0o077):
        different = [p for p in packages[0o022] if packages[umask].get(p) != packages[0o022][p]]
        assert different == [], f"umask {umask:03o}"
    # What the service user runs is readable and executable by it (and by everyone, as abuild makes it).
    with tarfile.open(workspace / ".pakman/repo/x86_64/pyweb-0.0.0-r0.apk", "r:gz") as archive:
        modes = {m.name: m.mode for m in archive.getmembers() if not m.name.startswith(".")}
    assert modes["var"] == modes["var/lib"] == modes["var/lib/pyweb/bin"] == 0o755
    assert modes["var/lib/pyweb/bin/pyweb"] == 0o755
    assert modes["var/lib/pyweb/src/main.py"] == 0o644


def test_build_and_graph_print_warnings_located_as_check_does(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["heartbeat"])
    config = workspace / "apps/heartbeat/instellar.yml"
    text = config.read_text()
    assert "    rc-update add heartbeat\n" in text
    config.write_text(
        text.replace("    rc-update add heartbeat\n", "    rc-service heartbeat frobnicate\n", 1)
    )

    def warnings(*args: str) -> list[str]:
        out, err = io.StringIO(), io.StringIO()
        with (
            working_directory(workspace),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            assert main(list(args)) == 0
        said = (out.getvalue() + err.getvalue()).splitlines()
        return [line for line in said if "frobnicate" in line]

    built = ("apps", "--offline", "--key", str(key.private))
    checked = warnings("check", "apps")
    assert len(checked) == 1, checked
    assert re.match(r"apps/heartbeat/instellar\.yml:\d+:\d+: warning: hook\.", checked[0])
    assert warnings("build", *built) == checked
    assert warnings("build", *built) == checked  # the no-op build, from the plan
    assert warnings("graph", *built, "--format", "json", "-o", "graph.json") == checked
