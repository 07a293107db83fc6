"""The buildroot stage (--build-on alpine): the build lock's closure, fetched and installed into a root.

The packages of the closure that fetch-deps-build locked are fetched from the
stack's mirror into `.pakman/cache/apk/` (by identity, verified against
Alpine's keys or `--alpine-keys`), then installed into a root under
`.pakman/roots/<digest>/root`, where `<digest>` is made of the closure
(each package's identity, in install order), the architecture, and what
goes into `/etc/apk` (the repositories, the keys). Apps whose closures are
equal share one root; a root is never changed once made. The step's output
is a small record naming the root; the build and package steps run their
shell in it (`sandbox_for`).

The root's `/etc/apk/world` lists every package of the closure, so a root
depends on the closure alone (not on which names an app asked for).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pakman.alpine import REPOSITORIES
from pakman.compile.graph import Step
from pakman.errors import PakmanError, StepFailed
from pakman.fileio import write_atomic
from pakman.steps import RunContext, upstream_output, upstream_outputs


def roots_dir(context: RunContext) -> Path:
    return context.layout.state / "roots"


def _closure(lock: Mapping[str, Any], step: Step) -> list[dict[str, Any]]:
    closure = lock.get("closure")
    if not isinstance(closure, list):
        why = lock.get("offline") or "the closure of the build dependencies was not resolved"
        raise StepFailed(
            f"{step.id}: --build-on alpine needs the closure of dependencies.build and the build "
            f"base set in the build lock, and it has none ({why}); build without --offline, with "
            "the mirror reachable, so that fetch-deps-build resolves it (or build with "
            "--build-on host)"
        )
    return closure


def _key_files(context: RunContext) -> list[Path]:
    from pakman.apk.fetch import ALPINE_KEYS

    folder = Path(context.alpine_keys) if context.alpine_keys else ALPINE_KEYS
    return sorted(folder.glob("*.pub"))


def root_digest(lock: Mapping[str, Any], closure: list[dict[str, Any]], context: RunContext) -> str:
    """The key of the root a lock's closure makes: the closure, the arch, and /etc/apk's contents."""
    by_name = {str(p["name"]): str(p["identity"]) for p in closure}
    order = [str(n) for n in lock.get("install_order") or sorted(by_name)]
    payload = {
        "format": 1,
        "arch": lock.get("arch"),
        "packages": [[name, by_name.get(name, "")] for name in order],
        "repositories": _repositories(lock),
        "keys": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in _key_files(context)},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _repositories(lock: Mapping[str, Any]) -> list[str]:
    mirror = str(lock.get("mirror", "")).rstrip("/")
    return [f"{mirror}/{lock.get('branch')}/{repository}" for repository in REPOSITORIES]


def ensure_lock_root(lock: Mapping[str, Any], step: Step, context: RunContext) -> Path:
    """The root of the lock's closure: fetched and made unless it exists already."""
    from pakman.sandbox.root import ROOT_FOLDER

    closure = _closure(lock, step)
    digest = root_digest(lock, closure, context)
    existing = roots_dir(context) / digest / ROOT_FOLDER
    if existing.is_dir():
        return existing
    cache = context.layout.state / "cache" / "apk"
    cache.mkdir(parents=True, exist_ok=True)
    # Steps running at once (-j, make -j) for apps of one closure would write
    # the same downloads: one makes the root, the others wait and find it made.
    with (cache / ".lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if existing.is_dir():
            return existing
        return _make(lock, closure, digest, step, context)


def _make(
    lock: Mapping[str, Any],
    closure: list[dict[str, Any]],
    digest: str,
    step: Step,
    context: RunContext,
) -> Path:
    from pakman.apk.fetch import TerminalProgress, fetch_closure, trusted_package_keys
    from pakman.sandbox import RootError, RootSpec, ensure_root

    if context.offline:
        _check_cached(lock, step, context)
    progress = TerminalProgress() if sys.stderr.isatty() else None
    fetched = fetch_closure(
        lock,
        context.layout.state / "cache" / "apk",
        trusted_package_keys(context.alpine_keys),
        progress=progress,
    )
    by_name = {str(p["name"]): fetched[str(p["identity"])] for p in closure}
    order = [str(n) for n in lock.get("install_order") or sorted(by_name)]
    spec = RootSpec(
        packages=tuple(by_name[name] for name in order),
        arch=str(lock["arch"]),
        world=tuple(sorted(by_name)),
        repositories=tuple(_repositories(lock)),
        keys=tuple(_key_files(context)),
    )
    try:
        return ensure_root(roots_dir(context), digest, spec)
    except (RootError, PakmanError) as exc:
        if isinstance(exc, StepFailed):
            raise
        raise StepFailed(f"{step.id}: the build root could not be made: {exc}") from None


def _check_cached(lock: Mapping[str, Any], step: Step, context: RunContext) -> None:
    """--offline: every package of the closure must be in the cache already (none is fetched)."""
    from pakman.apk.fetch import LockedPackage, cache_path

    cache = context.layout.state / "cache" / "apk"
    missing = []
    for entry in lock.get("closure") or ():
        package = LockedPackage.from_lock(entry)
        try:
            cached = cache_path(cache, package).is_file()
        except ValueError:  # an identity that names no cache entry: the fetch says why
            cached = True
        if not cached:
            missing.append(package.label)
    if missing:
        raise StepFailed(
            f"{step.id}: --offline and {len(missing)} package(s) of the build root's closure "
            f"are not in .pakman/cache/apk/ ({', '.join(missing)}); build once with the mirror "
            "reachable, point --mirror at a mirror this machine can reach, or build with "
            "--build-on host"
        )


def check_sandbox(step: Step) -> None:
    """Stop the step with the sandbox's own message when this machine cannot run it."""
    from pakman.sandbox import SandboxUnavailable, check_arch, check_bwrap

    try:
        check_bwrap()
        check_arch(step.arch or "noarch")
    except SandboxUnavailable as exc:
        raise StepFailed(f"{step.id}: {exc}") from None


def make_root(step: Step, context: RunContext) -> None:
    """Fetch the build lock's closure and make its root (shared by equal closures); record its key."""
    lock = json.loads(Path(upstream_output(step, "fetch-deps-build")).read_text())
    closure = _closure(lock, step)
    check_sandbox(step)
    root = ensure_lock_root(lock, step, context)
    record = {
        "root": root.parent.name,
        "arch": lock.get("arch"),
        "packages": len(closure),
    }
    write_atomic(Path(step.outputs[0]), (json.dumps(record, indent=1) + "\n").encode())


def root_for(step: Step, context: RunContext) -> Path:
    """The root a build or package step runs in (made again if it was removed since)."""
    from pakman.sandbox.root import ROOT_FOLDER

    record = json.loads(Path(upstream_output(step, "buildroot")).read_text())
    root = roots_dir(context) / str(record["root"]) / ROOT_FOLDER
    if root.is_dir():
        return root
    locks = upstream_outputs(step, "fetch-deps-build")
    if not locks:
        raise StepFailed(
            f"{step.id}: the build root {root} was removed since the build; build again "
            "(pakman build --always, or remove .pakman/build/ of this app)"
        )
    lock = json.loads(Path(locks[0]).read_text())
    return ensure_lock_root(lock, step, context)


@dataclass(frozen=True)
class Unused:
    """A root or a cached package no current lock references: what gc removes."""

    kind: str  # "root", "package" or "leftover" (of an interrupted run)
    path: Path
    size: int


def unused_roots_and_packages(state: Path) -> tuple[list[Unused], int]:
    """What under `state` (.pakman) no current lock references, and how many are kept.

    A root is kept when a buildroot record (`build/<app>/buildroot-<arch>.json`)
    names it, a cached .apk (or its partial download) when a build lock
    (`build/<app>/deps/build-<arch>.json`) has its identity in its closure.
    Half-made roots of interrupted runs are unused too. A removed root is
    made again by the next build that needs it (`root_for`).
    """
    from pakman.apk.reader import identity_digest
    from pakman.fileio import tree_size

    build = state / "build"
    roots_kept: set[str] = set()
    for record in build.glob("*/buildroot-*.json"):
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            roots_kept.add(str(json.loads(record.read_text())["root"]))
    packages_kept: set[str] = set()
    for lock in build.glob("*/deps/build-*.json"):
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            closure = json.loads(lock.read_text()).get("closure") or []
            for package in closure:
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    packages_kept.add(f"{identity_digest(str(package['identity']))}.apk")
    unused: list[Unused] = []
    kept = 0
    for entry in _entries(state / "roots"):
        if entry.name in roots_kept and not entry.name.startswith("."):
            kept += 1
        else:
            kind = "leftover" if entry.name.startswith(".") else "root"
            unused.append(Unused(kind, entry, tree_size(entry)))
    for entry in _entries(state / "cache" / "apk"):
        if entry.name == ".lock":
            continue
        if entry.name.removesuffix(".part") in packages_kept:
            kept += 1
        else:
            unused.append(Unused("package", entry, entry.lstat().st_size))
    return unused, kept


def _entries(folder: Path) -> list[Path]:
    """The entries of a real folder (none when it is missing or a link)."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    return sorted(folder.iterdir())


def remove_unused(unused: list[Unused], state: Path) -> None:
    """Remove what `unused_roots_and_packages` found, holding the lock roots are made under."""
    from pakman.fileio import remove_tree

    cache = state / "cache" / "apk"
    if not unused:
        return
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # no root is being made meanwhile
        for item in unused:
            remove_tree(item.path)
