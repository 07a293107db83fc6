"""Facts about Alpine Linux that every layer may use: architectures, OpenRC, the app's folder.

This module imports nothing of pakman's, so the configuration layer, the
step graph, the steps and the sandbox can all share it.
"""

from __future__ import annotations

import platform

# Alpine's architecture names (apk's `arch`), and `noarch` for packages of no machine code.
ARCHITECTURES = (
    "x86_64",
    "aarch64",
    "armv7",
    "armhf",
    "x86",
    "ppc64le",
    "s390x",
    "riscv64",
    "loongarch64",
    "noarch",
)
NOARCH = "noarch"
# Where dependencies come from unless --mirror or PAKMAN_MIRROR says otherwise.
DEFAULT_MIRROR = "https://dl-cdn.alpinelinux.org/alpine"
# The repositories of a branch pakman reads, in apk's order of preference.
REPOSITORIES = ("main", "community")
_MACHINE_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "i686": "x86", "i386": "x86"}


def host_arch() -> str:
    """This machine's Alpine architecture name."""
    machine = platform.machine().lower()
    return _MACHINE_ARCH.get(machine, machine or "x86_64")


# abuild's arch_to_hostspec (functions.sh)
_HOSTSPEC = {
    "aarch64": "aarch64-alpine-linux-musl",
    "armhf": "armv6-alpine-linux-musleabihf",
    "armv7": "armv7-alpine-linux-musleabihf",
    "loongarch64": "loongarch64-alpine-linux-musl",
    "ppc64le": "powerpc64le-alpine-linux-musl",
    "riscv64": "riscv64-alpine-linux-musl",
    "s390x": "s390x-alpine-linux-musl",
    "x86": "i586-alpine-linux-musl",
    "x86_64": "x86_64-alpine-linux-musl",
}


def abuild_arch_variables(arch: str) -> dict[str, str]:
    """abuild's CARCH, CBUILD, CHOST and CTARGET for a build of `arch`.

    abuild derives them from the machine it runs on (`apk --print-arch`),
    never from the APKBUILD's `arch`: a noarch package is built with the
    machine's CARCH, and a build of another architecture runs on a machine
    (qemu) of that architecture.
    """
    arch = host_arch() if arch == NOARCH else arch
    hostspec = _HOSTSPEC.get(arch, f"{arch}-alpine-linux-musl")
    return {"CARCH": arch, "CBUILD": hostspec, "CHOST": hostspec, "CTARGET": hostspec}


# OpenRC's own actions (openrc-run(8)): every service has them.
OPENRC_ACTIONS = frozenset(
    {
        "start",
        "stop",
        "restart",
        "status",
        "zap",
        "describe",
        "help",
        "pause",
        "broken",
        "ineed",
        "iuse",
        "iwant",
        "iafter",
        "ibefore",
        "iprovide",
        "needsme",
        "usesme",
        "wantsme",
        "afterme",
        "beforeme",
        "providedby",
    }
)


def app_home(name: str) -> str:
    """The app's folder on the installed system: `/var/lib/<name>`."""
    return f"/var/lib/{name}"
