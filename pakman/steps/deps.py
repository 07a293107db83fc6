"""fetch-deps: resolve an app's dependencies against its stack's package index.

For each repository (main, community) of the stack's branch the step reads
the index through pakman.apk.mirror (fetched with conditional requests,
cached under `.pakman/cache/apkindex/`, its signature checked with
`--alpine-keys DIR`); a noarch app uses this machine's architecture. When the
mirror cannot be reached and a cached copy is used, the step warns and its
result is provisional (checked again next time).

Each dependency must be a package of the branch, or a name one provides (`p:`,
including `so:` and `cmd:`), or a package another app of the same build
produces. The lock file records, per name, the package, version, identity
(`C:`) and repository chosen. Every name that is missing, or whose constraint
no version meets, is reported at once (a ConfigError).

fetch-deps-build then resolves the build base set (the step's `base` read)
and `dependencies.build` into their closure, as apk's solver would
(pakman.apk.resolve), and records every package of it (`closure`: name,
version, identity, repository, arch, size, installed size): what a build
root is made of. A closure problem (a dependency missing deep down, a
conflict) is located at the dependency whose chain it is, or at `stack` for
the base set's. Offline (`--offline`,
or a mirror that cannot be reached and no cached copy) the names are left
unresolved with a warning; with --require-deps that fails the step.

On `--build-on alpine` (the default) the build needs the closure, so
fetch-deps-build never leaves it unresolved: with `--offline` it resolves
against the cached copies of the indexes (`.pakman/cache/apkindex/`, left
by an earlier build that reached the mirror) without asking the mirror; when
there is no such copy, or the mirror cannot be reached and nothing is
cached, the step fails saying what to do (build once with the mirror
reachable, point --mirror at a mirror that can be reached, or build with
--build-on host).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pakman.alpine import NOARCH, REPOSITORIES, host_arch
from pakman.apk.mirror import (
    Offer,
    RepositoryIndex,
    cached_copy,
    fetch_index,
    index_url,
    read_index,
    remember,
    trusted_keys,
)
from pakman.apk.resolve import (
    Candidate,
    Requirement,
    ResolveError,
    Universe,
    auto_selectable,
    prefer,
    resolve,
)
from pakman.compile.graph import Step
from pakman.config.model import AppConfig, AppType, Dependency
from pakman.errors import ConfigError, Diagnostic, KeyPath, StepFailed, format_path
from pakman.fileio import write_atomic
from pakman.steps import ProvisionalResult, RunContext

MAX_SUGGESTIONS = 3


@dataclass
class Wanted:
    """One name an app depends on, with every constraint written for it."""

    name: str
    constraints: list[str]
    written: list[str]  # as in instellar.yml, e.g. `nodejs>=20`
    path: KeyPath  # where it is written (the first time)


def dependencies_of(step: Step) -> tuple[str, list[tuple[Dependency, KeyPath]]]:
    """The config key a step resolves and its dependencies, each with where it is written."""
    assert step.app is not None
    config = step.app.config
    kind = "build" if step.stage.endswith("build") else "runtime"
    written = config.dependencies.build if kind == "build" else config.dependencies.runtime
    found: list[tuple[Dependency, KeyPath]] = [
        (d, ("dependencies", kind, i)) for i, d in enumerate(written)
    ]
    if (
        kind == "runtime"
        and config.type is AppType.STATIC
        and not any(d.name == "nginx" for d in written)
    ):
        found.append((Dependency("nginx"), ("type",)))  # a static site is served by nginx
    return f"dependencies.{kind}", found


def _wanted(found: Sequence[tuple[Dependency, KeyPath]]) -> list[Wanted]:
    by_name: dict[str, Wanted] = {}
    for dependency, path in found:
        if dependency.conflict:
            continue
        wanted = by_name.setdefault(dependency.name, Wanted(dependency.name, [], [], path))
        if dependency.constraint:
            wanted.constraints.append(dependency.constraint)
        wanted.written.append(str(dependency))
    return list(by_name.values())


def offers_for(name: str, indexes: Sequence[RepositoryIndex]) -> list[Offer]:
    """Every package of that name, and every package providing it, in the indexes."""
    return [
        dataclasses.replace(offer, repository=index.repository)
        for index in indexes
        for offer in index.offers.get(name, ())
    ]


def choose(offers: Sequence[Offer], constraints: Sequence[str]) -> Offer | None:
    """The offer apk would pick among those meeting every constraint, or None.

    As apk's solver (see pakman.apk.resolve.prefer): the highest version of
    the name asked for, then the provider priority (`k:`), then the first
    repository; a provides without a version only with a provider priority.
    """
    best: Offer | None = None
    best_candidate: Candidate | None = None
    for offer in offers:
        if not all(offer.fits(c) for c in constraints):
            continue
        candidate = _candidate(offer)
        if not auto_selectable(candidate):
            continue
        if best_candidate is None or prefer(candidate, best_candidate) > 0:
            best, best_candidate = offer, candidate
    return best


def _candidate(offer: Offer) -> Candidate:
    order = REPOSITORIES.index(offer.repository) if offer.repository in REPOSITORIES else 0
    return Candidate(offer.entry, offer.repository, order, offer.version)


def lock_entry(offer: Offer, wanted: Wanted) -> dict[str, Any]:
    """What the lock file says about one resolved name."""
    entry: dict[str, Any] = {
        "source": "index",
        "package": offer.entry.name,
        "version": offer.entry.version,
        "identity": offer.entry.identity,
        "repository": offer.repository,
    }
    if offer.provides:
        entry["provides"] = offer.provides
    if wanted.constraints:
        entry["constraints"] = list(wanted.constraints)
    return entry


def closest_names(name: str, indexes: Sequence[RepositoryIndex]) -> list[str]:
    """Up to three names in the indexes that look like `name` (`so:`/`cmd:` names among their kind)."""
    prefix = name.partition(":")[0] + ":" if ":" in name else ""
    pool = sorted(
        {
            n
            for index in indexes
            for n in index.offers
            if (n.startswith(prefix) if prefix else ":" not in n)
        }
    )
    return difflib.get_close_matches(name, pool, n=MAX_SUGGESTIONS, cutoff=0.6)


def fetch_deps(step: Step, context: RunContext) -> list[str] | ProvisionalResult:
    """Resolve the step's dependency list and write its lock file; returns warnings."""
    assert step.app is not None and step.arch is not None
    config = step.app.config
    key, found = dependencies_of(step)
    arch = host_arch() if step.arch == NOARCH else step.arch
    local = set(step.reads.get("local", ()))
    wanted = _wanted(found)
    needed = [w for w in wanted if w.name not in local]
    base = tuple(step.reads.get("base", ()))  # the build base set, for fetch-deps-build
    warnings: list[str] = []
    indexes: list[RepositoryIndex] = []
    unavailable: list[str] = []  # why an index could not be had
    lock: dict[str, Any] = {
        "stack": config.stack,
        "branch": config.branch,
        "arch": arch,
        "mirror": context.mirror,
        "indexes": {},
        "resolved": {},
        "conflicts": sorted({d.name for d, _ in found if d.conflict}),
        "unresolved": [],
    }
    stale_copy = False
    # on alpine the build needs the closure: offline, it comes from the cached indexes
    closure_needed = bool(base) and context.build_on == "alpine"
    from_cache = context.offline and closure_needed
    if base:
        lock["base"] = list(base)
        lock["closure"] = None  # null until resolved: offline, or an index missing
        lock["install_order"] = []
    if (needed or base) and (not context.offline or from_cache):
        keys = trusted_keys(context.alpine_keys)
        cache_dir = context.layout.state / "cache" / "apkindex"
        for repository in REPOSITORIES:
            url = index_url(context.mirror, config.branch, repository, arch)
            if from_cache:
                fetched = cached_copy(url, cache_dir)
            else:
                fetched = fetch_index(url, cache_dir, context.run_id)
            if not fetched.data:
                unavailable.append(fetched.problem)
                continue
            index = read_index(fetched, repository, keys, context.alpine_keys)
            indexes.append(index)
            lock["indexes"][repository] = {"url": url, "sha256": fetched.sha256}
            if index.signed_by:
                lock["indexes"][repository]["signed_by"] = index.signed_by
            if fetched.how == "cached":
                warnings.append(f"{fetched.problem}; used the cached copy of that index")
                stale_copy = True

    where = f"alpine {config.branch} ({', '.join(REPOSITORIES)}) for {arch}"
    if closure_needed and unavailable:
        raise StepFailed(_no_closure(step, key, where, unavailable, from_cache))
    if from_cache:
        warnings.append(
            f"--offline: {key} resolved against the cached index of {where}, as an earlier "
            "build fetched it"
        )
    problems: list[tuple[KeyPath, str]] = []
    for item in wanted:
        if item.name in local:
            lock["resolved"][item.name] = {"source": "local"}
            continue
        if context.offline and not from_cache:
            lock["unresolved"].extend(item.written)
            continue
        offers = offers_for(item.name, indexes)
        chosen = choose(offers, item.constraints)
        if chosen is not None:
            lock["resolved"][item.name] = lock_entry(chosen, item)
        elif unavailable:
            lock["unresolved"].extend(item.written)  # it may be in the index we could not get
        elif not offers:
            close = closest_names(item.name, indexes)
            hint = f"; did you mean: {', '.join(close)}?" if close else ""
            problems.append(
                (
                    item.path,
                    f"`{item.name}` is not a package of {where}, nor provided by one{hint}",
                )
            )
        elif fitting := [o for o in offers if all(o.fits(c) for c in item.constraints)]:
            names = ", ".join(sorted({o.entry.name for o in fitting}))
            problems.append(
                (
                    item.path,
                    f"`{item.name}` is provided by {names}, none with a provider priority or "
                    "a version, so apk would not choose; name the one wanted",
                )
            )
        else:
            has = ", ".join(sorted({o.describe() for o in offers}))
            problems.append(
                (item.path, f"`{' '.join(item.written)}`: no version in {where} fits; it has {has}")
            )
    if problems:
        raise ConfigError(_located(config, key, problems))
    if base and indexes and not unavailable and (not context.offline or from_cache):
        problems = _close(lock, base, found, indexes, where)
        if problems:
            raise ConfigError(_located(config, key, problems))

    if lock["unresolved"]:
        why = "--offline" if context.offline else "; ".join(unavailable)
        lock["offline"] = why
        if context.require_deps:
            raise StepFailed(
                f"{key} of {step.app.name} cannot be checked against {where} "
                f"({', '.join(lock['unresolved'])}): {why}; --require-deps needs every "
                "dependency checked"
            )
        unchecked = f"not checked ({why}): {', '.join(lock['unresolved'])}"
        warnings.insert(0, str(config.diagnostic(tuple(key.split(".")), unchecked)))
    elif base and lock["closure"] is None:
        # only the base set was left unchecked: no warning (as with no dependencies), but the
        # lock says why it has no closure
        lock["offline"] = "--offline" if context.offline else "; ".join(unavailable)
    write_atomic(Path(step.outputs[0]), json.dumps(lock, indent=1, sort_keys=True).encode())
    if (unavailable or stale_copy) and warnings:
        # The mirror failed and a dependency was left unchecked, or checked against a stale
        # copy: good enough for this build, checked again next time. When only the base set
        # was left unchecked (on the host, which does not build in the closure) the step is
        # done, quietly, as with no dependencies.
        return ProvisionalResult(warnings)
    return warnings


def _no_closure(step: Step, key: str, where: str, unavailable: list[str], offline: bool) -> str:
    """Why a build on alpine cannot have its closure, and what to do."""
    assert step.app is not None
    if offline:
        why = (
            f"--offline and no cached index of {where} in .pakman/cache/apkindex/ "
            f"({'; '.join(unavailable)})"
        )
    else:
        why = f"the mirror could not be reached and no copy is cached ({'; '.join(unavailable)})"
    return (
        f"{key} of {step.app.name}: --build-on alpine (the default) builds in a root of the "
        f"closure of {key} and the build base set, resolved against the stack's index, and "
        f"there is none: {why}. Build once with the mirror reachable (the indexes and packages "
        "are then kept under .pakman/cache/ for --offline builds), point --mirror (or "
        "PAKMAN_MIRROR) at a mirror this machine can reach, e.g. a local one with "
        "--alpine-keys, or build with --build-on host"
    )


BASE_ORIGIN = "the build base set"


def universe_of(indexes: Sequence[RepositoryIndex]) -> Universe:
    """The providers of every name in the indexes (memoized by their digests)."""
    memo_key = tuple((index.repository, index.sha256) for index in indexes)
    universe = _universes.get(memo_key)
    if universe is None:
        universe = Universe((i.repository, i.offers, i.entries) for i in indexes)
        remember(_universes, memo_key, universe)
    return universe


_universes: dict[tuple[tuple[str, str], ...], Universe] = {}


def _close(
    lock: dict[str, Any],
    base: Sequence[str],
    found: Sequence[tuple[Dependency, KeyPath]],
    indexes: Sequence[RepositoryIndex],
    where: str,
) -> list[tuple[KeyPath, str]]:
    """Put the closure of the base set and the dependencies into the lock; the problems, located."""
    requests: list[tuple[Requirement, str]] = []
    paths: list[KeyPath] = []
    for word in base:
        try:
            requests.append((Requirement.parse(word), BASE_ORIGIN))
        except ValueError as exc:
            return [
                (("stack",), f"{BASE_ORIGIN} (--build-base-packages, PAKMAN_BUILD_BASE): {exc}")
            ]
        paths.append(("stack",))
    for dependency, path in found:
        requirement = Requirement(dependency.name, dependency.constraint, dependency.conflict)
        requests.append((requirement, format_path(path)))
        paths.append(path)
    try:
        closure = resolve(requests, universe_of(indexes), where)
    except ResolveError as exc:
        located: list[tuple[KeyPath, str]] = []
        for problem in exc.problems:
            if 0 <= problem.request < len(base):
                message = (
                    f"{BASE_ORIGIN} (--build-base-packages, PAKMAN_BUILD_BASE): {problem.message}"
                )
                located.append((("stack",), message))
            elif problem.request >= 0:
                located.append((paths[problem.request], problem.message))
            else:
                located.append((("dependencies", "build"), problem.message))
        return located
    lock["closure"] = [
        {
            "name": p.entry.name,
            "version": p.entry.version,
            "identity": p.entry.identity,
            "repository": p.repository,
            "arch": p.entry.arch,
            "size": p.entry.size,
            "installed_size": p.entry.installed_size,
            "requires": list(closure.requires.get(p.name, ())),
        }
        for p in closure.packages
    ]
    lock["install_order"] = closure.install_order()
    chosen = {p.name: p for p in closure.packages}
    for position, package in closure.met.items():
        name = requests[position][0].name
        entry = lock["resolved"].get(name)
        if position >= len(base) and entry is not None and entry.get("package") != package:
            # the closure chose another provider (one the requests name): the lock says which
            picked = chosen[package]
            entry.update(
                package=package,
                version=picked.entry.version,
                identity=picked.entry.identity,
                repository=picked.repository,
            )
            provides = next((w for w in picked.entry.provides if w.partition("=")[0] == name), "")
            entry.pop("provides", None)
            if provides:
                entry["provides"] = provides
    return []


def _located(config: AppConfig, key: str, problems: list[tuple[KeyPath, str]]) -> list[Diagnostic]:
    """Diagnostics at the place each dependency is written in instellar.yml."""
    diagnostics = []
    for path, message in problems:
        if path == ("type",):
            message += f" ({key} of a static site gets nginx, which serves it)"
        diagnostics.append(config.diagnostic(path, message))
    return diagnostics
