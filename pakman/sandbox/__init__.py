"""Build roots and the bubblewrap sandbox: Alpine as the build sees it, without Docker.

`root` installs a closure of .apk files into a folder the way apk does
(files, owners, links, `/lib/apk/db/installed`, install scripts and
triggers) and keeps it, immutable, under a name keyed by the lock. `bwrap`
runs a command with such a root as `/`, read-only, with the build's copy of
the source at `/home/build`, a clean environment and nothing else of the host.
"""

from __future__ import annotations

from pakman.sandbox.bwrap import (
    BUILD_DIR,
    Sandbox,
    SandboxError,
    SandboxUnavailable,
    check_arch,
    check_bwrap,
)
from pakman.sandbox.root import RootError, RootSpec, ensure_root, install_root

__all__ = [
    "BUILD_DIR",
    "RootError",
    "RootSpec",
    "Sandbox",
    "SandboxError",
    "SandboxUnavailable",
    "check_arch",
    "check_bwrap",
    "ensure_root",
    "install_root",
]
