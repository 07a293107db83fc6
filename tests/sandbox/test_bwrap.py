"""Running commands in bubblewrap on a build root: what they see, and what they leave behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from alpine_fixture import AlpineRepository
from pakman.alpine import host_arch
from pakman.sandbox import BUILD_DIR, Sandbox, SandboxError, SandboxUnavailable, check_arch
from pakman.sandbox.bwrap import check_bwrap


def run(sandbox: Sandbox, script: str) -> tuple[int, str]:
    """Run `sh -c script` in the sandbox; (exit status, stdout and stderr)."""
    with tempfile.TemporaryFile() as output:
        status = sandbox.run(["sh", "-c", script], stdout=output, stderr=output)
        output.seek(0)
        return status, output.read().decode()


@pytest.fixture
def build_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "build"
    folder.mkdir()
    return folder


def test_the_command_sees_alpine_and_not_the_host(
    alpine_root: Path, build_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAKMAN_HOST_ONLY", "leaked")
    sandbox = Sandbox(alpine_root, build_dir=build_dir, env={"SOURCE_DATE_EPOCH": "1700000000"})
    status, output = run(
        sandbox,
        "cat /etc/alpine-release; test -e /usr/bin/python3 || echo no-python; "
        "echo pwd=$(pwd); umask; greet sandbox; env | sort",
    )
    assert status == 0, output
    lines = output.splitlines()
    assert lines[:5] == ["3.20.3", "no-python", f"pwd={BUILD_DIR}", "0022", "hello, sandbox"]
    env = dict(line.split("=", 1) for line in lines[5:])
    assert "PAKMAN_HOST_ONLY" not in env
    assert os.environ["PATH"] != env["PATH"]
    assert env["HOME"] == "/home/builder"
    assert env["CARCH"] == "x86_64" and env["CHOST"] == "x86_64-alpine-linux-musl"
    assert env["SOURCE_DATE_EPOCH"] == "1700000000"
    # nothing else: what the sandbox sets, what was passed, what sh adds
    assert set(env) - {"PWD", "SHLVL", "_"} == set(sandbox.environment())


def test_the_root_is_read_only_and_the_build_folder_writable(
    alpine_root: Path, build_dir: Path
) -> None:
    (build_dir / "source.txt").write_text("from the host\n")
    status, output = run(
        Sandbox(alpine_root, build_dir=build_dir),
        "cat source.txt; touch /etc/changed || echo root-read-only; "
        "echo made > /home/build/out.txt; echo tmp > /tmp/t && cat /tmp/t; touch ~/h && echo home",
    )
    assert status == 0, output
    assert output.splitlines()[0] == "from the host"
    assert "root-read-only" in output
    assert output.splitlines()[-2:] == ["tmp", "home"]
    assert (build_dir / "out.txt").read_text() == "made\n"
    assert not (alpine_root / "etc/changed").exists()
    assert not list((alpine_root / "tmp").iterdir())


def test_network_none_leaves_only_loopback(alpine_root: Path, build_dir: Path) -> None:
    status, output = run(
        Sandbox(alpine_root, build_dir=build_dir, network=False), "cat /proc/net/dev"
    )
    assert status == 0, output
    interfaces = {line.split(":")[0].strip() for line in output.splitlines()[2:]}
    assert interfaces == {"lo"}
    host = {
        line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]
    }
    if host != {"lo"}:  # the default shares the host's network
        status, output = run(Sandbox(alpine_root, build_dir=build_dir), "cat /proc/net/dev")
        shared = {line.split(":")[0].strip() for line in output.splitlines()[2:]}
        assert shared == host


@pytest.mark.parametrize("link", ["-static", "-dynamic"])
def test_a_program_compiled_with_musl_gcc_runs_inside(
    alpine_root: Path, build_dir: Path, link: str
) -> None:
    source = build_dir / "hello.c"
    source.write_text('#include <stdio.h>\nint main(void) { puts("hi from musl"); return 0; }\n')
    flags = ["-static"] if link == "-static" else []
    subprocess.run(
        ["musl-gcc", *flags, "-o", build_dir / "hello", source], check=True, capture_output=True
    )
    status, output = run(Sandbox(alpine_root, build_dir=build_dir), "./hello")
    assert (status, output) == (0, "hi from musl\n")


_INTERRUPTED = """
import sys
from pathlib import Path
from pakman.sandbox import Sandbox
sandbox = Sandbox(Path(sys.argv[1]), build_dir=Path(sys.argv[2]))
seconds = sys.argv[3]
try:
    sandbox.run(["sh", "-c", f"sleep {seconds}1 & sleep {seconds}2 & touch started; wait"])
except KeyboardInterrupt:
    # a tool goes on after Ctrl-C (to clean up, report): the sandbox must be gone by now
    print("interrupted", flush=True)
    sys.stdin.readline()
"""


def _processes_with(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_ctrl_c_leaves_no_process_behind(alpine_root: Path, build_dir: Path) -> None:
    # sleeps of a length of their own: other runs of this test on the machine have theirs
    seconds = str(100000 + os.getpid())
    runner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_INTERRUPTED), alpine_root, build_dir, seconds],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert runner.stdin is not None and runner.stdout is not None
    try:
        deadline = time.monotonic() + 20
        while not (build_dir / "started").exists():
            assert time.monotonic() < deadline and runner.poll() is None, (
                "the sandbox did not start"
            )
            time.sleep(0.02)
        assert len(_processes_with(f"sleep\x00{seconds}1")) == 1
        runner.send_signal(signal.SIGINT)
        assert runner.stdout.readline() == b"interrupted\n"
        assert _processes_with(f"sleep\x00{seconds}") == []
    finally:
        if runner.poll() is None:
            runner.send_signal(signal.SIGINT)  # the runner stops its sandbox, then reads a line
        runner.communicate(b"\n", timeout=20)


def test_foreign_architectures_need_a_qemu_binfmt_handler(tmp_path: Path) -> None:
    foreign = "s390x" if host_arch() != "s390x" else "aarch64"
    cpu = {"s390x": "s390x", "aarch64": "aarch64"}[foreign]
    with pytest.raises(SandboxUnavailable, match="install qemu-user-static"):
        check_arch(foreign, binfmt_dir=tmp_path)
    (tmp_path / f"qemu-{cpu}").write_text("disabled\ninterpreter /usr/bin/qemu\nflags: F\n")
    with pytest.raises(SandboxUnavailable, match="disabled"):
        check_arch(foreign, binfmt_dir=tmp_path)
    (tmp_path / f"qemu-{cpu}").write_text("enabled\ninterpreter /usr/bin/qemu\nflags: P\n")
    with pytest.raises(SandboxUnavailable, match="F flag"):
        check_arch(foreign, binfmt_dir=tmp_path)
    (tmp_path / f"qemu-{cpu}").write_text("enabled\ninterpreter /usr/bin/qemu\nflags: PF\n")
    assert check_arch(foreign, binfmt_dir=tmp_path) == foreign
    assert check_arch("noarch", binfmt_dir=tmp_path) == host_arch()
    assert check_arch(host_arch(), binfmt_dir=tmp_path) == host_arch()


def test_a_sandbox_for_an_unrunnable_arch_stops_before_running(
    alpine_root: Path, build_dir: Path
) -> None:
    foreign = "s390x" if host_arch() != "s390x" else "aarch64"
    if Path(f"/proc/sys/fs/binfmt_misc/qemu-{foreign}").exists():
        pytest.skip(f"this machine can run {foreign}")
    with pytest.raises(SandboxUnavailable, match="qemu-user-static"):
        Sandbox(alpine_root, arch=foreign, build_dir=build_dir).run(["touch", "ran"])
    assert not (build_dir / "ran").exists()


def test_no_bwrap_or_no_namespaces_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailable, match=r"bubblewrap\) was not found.*--build-on host"):
        check_bwrap(str(tmp_path / "bwrap"))
    fake = tmp_path / "fake-bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(SandboxUnavailable, match=r"cannot create namespaces.*No permissions"):
        check_bwrap(str(fake))
    # a run finds out when bwrap stops before starting the command, then says why
    with pytest.raises(SandboxUnavailable, match=r"cannot create namespaces.*No permissions"):
        Sandbox(tmp_path, bwrap=str(fake)).run(["true"], stderr=subprocess.DEVNULL)
    with pytest.raises(SandboxUnavailable, match=r"bubblewrap\) was not found"):
        Sandbox(tmp_path, bwrap=str(tmp_path / "bwrap")).run(["true"])


def test_a_missing_build_folder_is_an_error(alpine_root: Path, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="does not exist"):
        Sandbox(alpine_root, build_dir=tmp_path / "nowhere").run(["true"])


AS_NOBODY = ("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups")
_UNPRIVILEGED = """
import sys
from pathlib import Path
from pakman.sandbox import RootSpec, Sandbox, install_root
work = Path(sys.argv[1])
root = install_root(work / "root", RootSpec(tuple(map(Path, sys.argv[2:])), "x86_64"))
(work / "build").mkdir()
script = "id -u; cat /etc/hello-setup.txt; stat -c %u:%a /var/lib/hello; touch /etc/x || echo ro"
sys.exit(Sandbox(root, build_dir=work / "build").run(["sh", "-c", script]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_a_user_who_is_not_root_makes_and_uses_a_root(alpine_repository: AlpineRepository) -> None:
    work = Path(tempfile.mkdtemp(prefix="pakman-unprivileged-"))
    try:
        work.chmod(0o755)
        packages = []
        for package in alpine_repository.packages():
            packages.append(work / package.name)
            shutil.copyfile(package, work / package.name)
        os.chown(work, 65534, 65534)
        result = subprocess.run(
            [*AS_NOBODY, sys.executable, "-c", _UNPRIVILEGED, work, *packages],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        # inside, the user is root and so are the files; the scripts ran as root
        assert result.stdout.splitlines() == ["0", "hello, 2.0-r0", "0:750", "ro"]
        assert (work / "root/bin/busybox").stat().st_uid == 65534
    finally:
        shutil.rmtree(work)
