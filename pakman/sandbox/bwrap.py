"""Running a command in bubblewrap with a build root as `/`.

What the command sees (`Sandbox.argv`): the root, read-only, as `/`; the
build's copy of the source read-write at `/home/build` (a fixed path, so
outputs never embed the workspace's); `/proc`; a minimal `/dev`; empty tmpfs
at `/tmp`, `/var/tmp`, `/run` and `HOME` (`/home/builder`); the host's
`/etc/resolv.conf` when the network is shared; the folders the caller binds
read-only (`ro_binds`: a repository's objects for `build.git: true`).
Nothing else of the host's files. The environment is exactly `base_environment` plus what the caller
passes; umask 022. Namespaces: all unshared (`--unshare-all`) except the
network, which is shared unless `network=False`. bwrap 0.8 (Debian 12) has
no overlay mounts, so writable places are those tmpfs, not an overlay on `/`.

Processes: bwrap runs with `--die-with-parent` and `--new-session`, in its
own PID namespace. When the runner is interrupted (Ctrl-C, or any exception
while it waits) it kills bwrap and the namespace's first process, and waits
until that process is gone: the kernel kills every other process of a PID
namespace before its first process can finish exiting, so nothing is left.

Architectures: `x86` runs natively on `x86_64`; any other architecture that
is not the host's runs only when binfmt_misc has a qemu handler for it
(`/proc/sys/fs/binfmt_misc/qemu-<cpu>`, enabled, with the F flag so the
interpreter works inside the root), as Debian's qemu-user-static registers.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

from pakman.alpine import NOARCH, abuild_arch_variables, host_arch
from pakman.errors import PakmanError

BUILD_DIR = "/home/build"
HOME_DIR = "/home/builder"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SCRIPT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # what apk gives install scripts
# Folders (and the one file) the sandbox mounts something on: a root must have them,
# since nothing can be created in it once it is mounted read-only.
MOUNT_POINTS = ("proc", "dev", "tmp", "var/tmp", "run", "home/build", "home/builder")
MOUNT_FILES = ("etc/resolv.conf",)
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")

# binfmt_misc handler names, as qemu-user-static registers them
_QEMU_CPU = {
    "aarch64": "aarch64",
    "armhf": "arm",
    "armv7": "arm",
    "loongarch64": "loongarch64",
    "ppc64le": "ppc64le",
    "riscv64": "riscv64",
    "s390x": "s390x",
    "x86": "i386",
    "x86_64": "x86_64",
}
# abuild 3.13's default.conf (Alpine 3.20), without the variables that name host folders
_ABUILD_FLAGS = {
    "CFLAGS": "-Os -fstack-clash-protection -Wformat -Werror=format-security",
    "CXXFLAGS": "-Os -fstack-clash-protection -Wformat -Werror=format-security "
    "-D_GLIBCXX_ASSERTIONS=1 -D_LIBCPP_ENABLE_THREAD_SAFETY_ANNOTATIONS=1 "
    "-D_LIBCPP_ENABLE_HARDENED_MODE=1",
    "LDFLAGS": "-Wl,--as-needed,-O1,--sort-common",
    "GOFLAGS": "-buildmode=pie -modcacherw -trimpath -buildvcs=false",
    "DFLAGS": "-Os",
    "CARGO_PROFILE_RELEASE_OPT_LEVEL": "s",
    "CARGO_PROFILE_RELEASE_PANIC": "abort",
    "CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "1",
    "CARGO_PROFILE_RELEASE_LTO": "true",
    "CARGO_REGISTRIES_CRATES_IO_PROTOCOL": "sparse",
}


class SandboxError(PakmanError):
    """A command could not be run in the sandbox."""


class SandboxUnavailable(SandboxError):
    """This machine cannot run the sandbox (no bwrap, no user namespaces, no qemu for an arch)."""


def base_environment(arch: str) -> dict[str, str]:
    """The environment every sandboxed command starts from: PATH, HOME, abuild's variables."""
    jobs = str(len(os.sched_getaffinity(0)) or 1)
    return {
        "PATH": PATH,
        "HOME": HOME_DIR,
        **abuild_arch_variables(arch),
        **_ABUILD_FLAGS,
        "JOBS": jobs,
        "MAKEFLAGS": f"-j{jobs}",
        "SAMUFLAGS": f"-j{jobs}",
        "CARGO_BUILD_JOBS": jobs,
        "CTEST_PARALLEL_LEVEL": jobs,
    }


@functools.lru_cache(maxsize=4)
def find_bwrap(bwrap: str = "bwrap") -> str:
    """The path of bwrap; SandboxUnavailable when it is not installed."""
    found = shutil.which(bwrap)
    if found is None:
        raise SandboxUnavailable(
            f"{bwrap} (bubblewrap) was not found: builds run in a bubblewrap sandbox; install it "
            "(Debian/Ubuntu: apt-get install bubblewrap; Alpine: apk add bubblewrap), or "
            "build on the host explicitly with --build-on host"
        )
    return found


@functools.lru_cache(maxsize=4)
def check_bwrap(bwrap: str = "bwrap") -> str:
    """The path of a bwrap that can make namespaces here; SandboxUnavailable says why not.

    Runs `true` in new namespaces (a process start), once per process. `Sandbox.run`
    does not need it first: it calls it only when bwrap fails before starting
    the command, to tell why.
    """
    found = find_bwrap(bwrap)
    probe = subprocess.run(
        [found, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
        env={},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    if probe.returncode != 0:
        lines = probe.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = lines[-1] if lines else f"exit status {probe.returncode}"
        raise SandboxUnavailable(
            f"bubblewrap cannot create namespaces on this machine ({detail}): "
            "enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
            "or on Ubuntu 24.04 kernel.apparmor_restrict_unprivileged_userns=0), run in a "
            "container that allows them, or build on the host explicitly with --build-on host"
        )
    return found


def check_arch(arch: str, *, binfmt_dir: Path = BINFMT_DIR) -> str:
    """The architecture commands run as (noarch: the host's); raises when this machine cannot run it."""
    host = host_arch()
    if arch in (NOARCH, host) or (arch == "x86" and host == "x86_64"):
        return host if arch == NOARCH else arch
    cpu = _QEMU_CPU.get(arch)
    if cpu is None:
        raise SandboxUnavailable(f"unknown architecture {arch!r}")
    handler = binfmt_dir / f"qemu-{cpu}"
    try:
        lines = handler.read_text().splitlines()
    except OSError:
        raise SandboxUnavailable(
            f"cannot build for {arch} on this {host} machine: no qemu-{cpu} handler is registered "
            f"in binfmt_misc ({handler}); install qemu-user-static (Debian/Ubuntu: apt-get "
            "install qemu-user-static binfmt-support), or leave it out of the architectures"
        ) from None
    flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")
    if not lines or lines[0].strip() != "enabled":
        raise SandboxUnavailable(
            f"cannot build for {arch}: the binfmt_misc handler {handler} is disabled "
            f"(enable it: echo 1 > {handler})"
        )
    if "F" not in flags:
        raise SandboxUnavailable(
            f"cannot build for {arch}: the binfmt_misc handler {handler} lacks the F flag, so its "
            "interpreter cannot be found inside the build root; install Debian's "
            "qemu-user-static, which registers it with F"
        )
    return arch


@dataclass(frozen=True)
class Sandbox:
    """How to run commands in one root: the root, the build folder, network and environment.

    `writable` mounts the root read-write: only for install scripts while a
    root is made (then the command also runs as root, as apk runs scripts).
    """

    root: Path
    arch: str = NOARCH
    build_dir: Path | None = None  # bound read-write at /home/build
    network: bool = True
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    writable: bool = False
    bwrap: str = "bwrap"
    # host folder -> where it appears, read-only (under a tmpfs: /run, /tmp or HOME)
    ro_binds: tuple[tuple[str, str], ...] = ()

    def environment(self) -> dict[str, str]:
        """The command's whole environment."""
        if self.writable:
            return {"PATH": SCRIPT_PATH, **self.env}
        return {**base_environment(self.arch), **self.env}

    def argv(self, command: Sequence[str], *, bwrap: str | None = None) -> list[str]:
        """The bwrap command line that runs `command` in this sandbox."""
        root = os.fspath(self.root)
        args = [bwrap or self.bwrap]
        if self.writable:
            if os.geteuid() == 0:
                # no user namespace: scripts may chown to any user, as under apk
                args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net"]
                args += ["--unshare-cgroup-try", "--cap-add", "ALL"]
            else:
                args += ["--unshare-all", "--unshare-user", "--uid", "0", "--gid", "0"]
            args += ["--bind", root, "/"]
        else:
            args += ["--unshare-all"]
            if os.geteuid() != 0:
                # the root's files belong to this user: inside they are root's, and so is the command
                args += ["--unshare-user", "--uid", "0", "--gid", "0"]
            if self.network:
                args.append("--share-net")
            args += ["--ro-bind", root, "/"]
        args += ["--die-with-parent", "--new-session", "--proc", "/proc", "--dev", "/dev"]
        if self.writable:
            args += ["--chdir", "/"]
        else:
            for folder in ("/tmp", "/var/tmp", "/run", HOME_DIR):
                args += ["--tmpfs", folder]
            if self.network and os.path.exists("/etc/resolv.conf"):
                args += ["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]
            for source, target in self.ro_binds:
                args += ["--ro-bind", source, target]
            if self.build_dir is not None:
                args += ["--bind", os.fspath(self.build_dir), BUILD_DIR, "--chdir", BUILD_DIR]
            else:
                args += ["--chdir", "/"]
        return [*args, "--", *command]

    def run(
        self,
        command: Sequence[str],
        *,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
        timeout: float | None = None,
    ) -> int:
        """Run `command`; its exit status. Interrupted, it leaves no process of the sandbox behind."""
        bwrap = find_bwrap(self.bwrap)
        check_arch(self.arch)
        if not self.writable and self.build_dir is not None and not self.build_dir.is_dir():
            raise SandboxError(f"{self.build_dir}: the build folder does not exist")
        info_read, info_write = os.pipe()
        argv = self.argv(command, bwrap=bwrap)
        argv[1:1] = ["--info-fd", str(info_write)]
        try:
            process = subprocess.Popen(
                argv,
                env=self.environment(),
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                pass_fds=(info_write,),
                umask=0o022,
            )
        except BaseException:
            os.close(info_read)
            raise
        finally:
            os.close(info_write)
        child = None
        try:
            child = _child_pidfd(info_read)
            started = child is not None  # bwrap made the namespaces and started the command
            status = process.wait(timeout)
        except BaseException:
            _stop(process, child)
            child = None
            raise
        finally:
            os.close(info_read)
            if child is not None:
                os.close(child)
        if not started and status != 0:
            # bwrap stopped before it started the command: say why, if namespaces are the cause
            check_bwrap(bwrap)
            raise SandboxError(
                f"bubblewrap could not set the sandbox up (exit status {status}; its message "
                "is above)"
            )
        return status


def _child_pidfd(info_read: int) -> int | None:
    """A pidfd of the namespace's first process, from bwrap's info (None if bwrap failed first)."""
    data = b""
    while b"}" not in data:
        chunk = os.read(info_read, 4096)
        if not chunk:
            return None
        data += chunk
    try:
        pid = int(json.loads(data[: data.index(b"}") + 1])["child-pid"])
        return os.pidfd_open(pid)
    except (ValueError, KeyError, TypeError, ProcessLookupError):
        return None


def _stop(process: subprocess.Popen[bytes], child: int | None) -> None:
    """Kill bwrap and the namespace's first process; wait until the namespace is empty."""
    if child is not None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(child, signal.SIGKILL)
    process.kill()
    process.wait()
    if child is not None:
        # readable once the process has exited, which needs all of its namespace gone
        select.select([child], [], [], 10.0)
        os.close(child)
