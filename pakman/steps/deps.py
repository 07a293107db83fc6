"""fetch-deps: resolve an app's dependencies against its stack's package index.

For each repository (main, community) of the stack's branch the index
`<mirror>/<branch>/<repository>/<arch>/APKINDEX.tar.gz` is fetched; a noarch
app uses this machine's architecture. Indexes are cached under
`.pakman/cache/apkindex/`: the bytes once per content (`<sha256>.tar.gz`),
and per URL a record of the content it last had, with its ETag and
Last-Modified, so that the next fetch is a conditional request a 304 answers.
A cached copy whose bytes no longer match their digest is dropped and fetched
again; when the mirror cannot be reached the cached copy is used, with a
warning. With `--alpine-keys DIR` an index is used only when it is signed by
one of the keys in DIR (checked each time it is used, cached or not).

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
import hashlib
import http.client
import io
import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pakman import __version__
from pakman.alpine import NOARCH, host_arch
from pakman.apk.errors import ArchiveError
from pakman.apk.index import IndexEntry, parse_index_entries
from pakman.apk.keys import PublicKey, trusted_key_folder
from pakman.apk.reader import SignedSection, read_index_file
from pakman.apk.resolve import (
    Candidate,
    Requirement,
    ResolveError,
    Universe,
    auto_selectable,
    prefer,
    resolve,
)
from pakman.apk.verify import signature_verdict
from pakman.apk.version import satisfies
from pakman.compile.graph import Step
from pakman.config.model import AppConfig, AppType, Dependency
from pakman.errors import ConfigError, Diagnostic, KeyPath, StepFailed, format_path
from pakman.fileio import write_atomic
from pakman.steps import Provisional, RunContext

REPOSITORIES = ("main", "community")
TIMEOUT = 20.0  # seconds to wait for the mirror, per request
MAX_SUGGESTIONS = 3
_MEMO_SIZE = 8  # indexes kept in memory per process (Alpine's are a few MB each)
_DIGEST = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class Fetched:
    """An index as the mirror gave it, or the cached copy when the mirror failed."""

    url: str
    data: bytes = field(default=b"", repr=False)  # the APKINDEX.tar.gz; b"" when there is none
    sha256: str = ""
    how: str = ""  # downloaded, not modified (a 304), cached (the mirror failed), or "" (none)
    problem: str = ""  # why the mirror gave nothing usable ("" when it answered)


@dataclass(frozen=True)
class Offer:
    """One way an index meets a name: a package of that name, or one that provides it."""

    entry: IndexEntry
    version: str  # of the name: the package's, or the provided one ("" for a bare provides)
    provides: str = ""  # the `p:` word that matched, when provided
    repository: str = ""

    def fits(self, constraint: str) -> bool:
        # As apk: a provides without a version only meets a dependency without one.
        if self.provides and not self.version:
            return not constraint
        return satisfies(self.version, constraint)

    def describe(self) -> str:
        where = f"{self.entry.name} {self.entry.version} ({self.repository})"
        return f"{self.provides} from {where}" if self.provides else where


@dataclass(frozen=True)
class ParsedIndex:
    """An index read: its signatures, its entries and every name it offers (packages and provides)."""

    signed: SignedSection
    offers: Mapping[str, tuple[Offer, ...]]
    entries: tuple[IndexEntry, ...] = ()


@dataclass(frozen=True)
class RepositoryIndex:
    """One repository's index, read (and its signature judged when keys are given)."""

    repository: str
    url: str
    sha256: str
    offers: Mapping[str, tuple[Offer, ...]]
    signed_by: str = ""  # the trusted key it is signed with, when signatures are checked
    entries: tuple[IndexEntry, ...] = ()


@dataclass
class Wanted:
    """One name an app depends on, with every constraint written for it."""

    name: str
    constraints: list[str]
    written: list[str]  # as in instellar.yml, e.g. `nodejs>=20`
    path: KeyPath  # where it is written (the first time)


# In-process memos: indexes by content (safe forever), and fetches per build run
# (so that the steps of one run ask the mirror once per URL).
_parsed: dict[str, ParsedIndex] = {}
_fetched: dict[tuple[str, str, str], Fetched] = {}


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    memo.pop(key, None)
    memo[key] = value
    while len(memo) > _MEMO_SIZE:
        del memo[next(iter(memo))]


def index_url(mirror: str, branch: str, repository: str, arch: str) -> str:
    """Where a repository's index is on a mirror."""
    return f"{mirror.rstrip('/')}/{branch}/{repository}/{arch}/APKINDEX.tar.gz"


def parse_index(data: bytes, sha256: str) -> ParsedIndex:
    """Read an APKINDEX.tar.gz (memoized by its digest); raises ArchiveError when unreadable."""
    if sha256 in _parsed:
        return _parsed[sha256]
    content = read_index_file(io.BytesIO(data))
    offers: dict[str, list[Offer]] = {}
    entries = tuple(parse_index_entries(content.text))
    for entry in entries:
        offers.setdefault(entry.name, []).append(Offer(entry, entry.version))
        for word in entry.provides:
            name, _, version = word.partition("=")
            offers.setdefault(name, []).append(Offer(entry, version, word))
    parsed = ParsedIndex(content.signed, {n: tuple(o) for n, o in offers.items()}, entries)
    _remember(_parsed, sha256, parsed)
    return parsed


def fetch_index(url: str, cache_dir: Path, run_id: str = "") -> Fetched:
    """Fetch an index, revalidating the cached copy; fall back on that copy when the mirror fails.

    Raises StepFailed when the mirror has no such index (404) or sends one that
    cannot be read. Within one build run (`run_id`) a URL is asked for once.
    """
    memo_key = (run_id, str(cache_dir), url)
    if run_id and memo_key in _fetched:
        return _fetched[memo_key]
    fetched = _fetch(url, cache_dir)
    if run_id:
        _remember(_fetched, memo_key, fetched)
    return fetched


def _record_path(cache_dir: Path, url: str) -> Path:
    return cache_dir / f"url-{hashlib.sha256(url.encode()).hexdigest()[:32]}.json"


def _read_record(path: Path, url: str) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or record.get("url") != url:
        return {}
    return record


def cached_index(cache_dir: Path, sha256: object) -> bytes:
    """The cached bytes of an index by digest; b"" (and the file removed) when missing or damaged."""
    if not isinstance(sha256, str) or not _DIGEST.match(sha256):
        return b""
    path = cache_dir / f"{sha256}.tar.gz"
    try:
        data = path.read_bytes()
    except OSError:
        return b""
    try:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ArchiveError("the bytes do not match their digest")
        parse_index(data, sha256)
    except ArchiveError:
        path.unlink(missing_ok=True)  # damaged: fetch it again
        return b""
    return data


def _fetch(url: str, cache_dir: Path) -> Fetched:
    record_path = _record_path(cache_dir, url)
    record = _read_record(record_path, url)
    cached = cached_index(cache_dir, record.get("sha256"))
    headers = {"User-Agent": f"pakman/{__version__}"}
    if cached and isinstance(record.get("etag"), str):
        headers["If-None-Match"] = record["etag"]
    if cached and isinstance(record.get("last_modified"), str):
        headers["If-Modified-Since"] = record["last_modified"]
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            data = response.read()
            etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 304 and cached:
            return Fetched(url, cached, record["sha256"], "not modified")
        if exc.code == 404:
            raise StepFailed(
                f"{url}: not found (HTTP 404); is the stack's Alpine version right, and does "
                "the mirror carry that repository and architecture?"
            ) from None
        return _fall_back(url, cached, record, f"HTTP {exc.code} {exc.reason}".rstrip())
    except ValueError as exc:
        raise ConfigError(
            f"{url}: not a URL pakman can fetch ({exc}); the mirror (--mirror or PAKMAN_MIRROR) "
            "is a URL such as https://dl-cdn.alpinelinux.org/alpine"
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        # URLError (refused, no such host), timeouts, a dropped connection
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return _fall_back(url, cached, record, str(reason) or type(exc).__name__)
    digest = hashlib.sha256(data).hexdigest()
    try:
        parse_index(data, digest)
    except ArchiveError as exc:
        raise StepFailed(
            f"{url}: what the mirror sent is not a readable APKINDEX.tar.gz ({exc})"
        ) from None
    _store(cache_dir, record_path, url, data, digest, etag, modified, record.get("sha256"))
    return Fetched(url, data, digest, "downloaded")


def _fall_back(url: str, cached: bytes, record: Mapping[str, Any], reason: str) -> Fetched:
    problem = f"{url}: {reason}"
    if cached:
        return Fetched(url, cached, record["sha256"], "cached", problem)
    return Fetched(url, problem=problem)


def _store(
    cache_dir: Path,
    record_path: Path,
    url: str,
    data: bytes,
    digest: str,
    etag: str | None,
    modified: str | None,
    previous: object,
) -> None:
    """Keep the bytes under their digest (once), point the URL's record at them, drop what no record uses."""
    content = cache_dir / f"{digest}.tar.gz"
    if not (content.is_file() and content.stat().st_size == len(data)):
        write_atomic(content, data)
    record = {"url": url, "sha256": digest, "etag": etag, "last_modified": modified}
    write_atomic(record_path, json.dumps(record, indent=1, sort_keys=True).encode(), durable=False)
    if isinstance(previous, str) and previous != digest and _DIGEST.match(previous):
        in_use = set()
        for other in cache_dir.glob("url-*.json"):
            try:
                in_use.add(json.loads(other.read_text()).get("sha256"))
            except (OSError, ValueError, AttributeError):
                continue
        if previous not in in_use:
            (cache_dir / f"{previous}.tar.gz").unlink(missing_ok=True)


def trusted_keys(folder: str) -> dict[str, PublicKey] | None:
    """The keys indexes must be signed with (`--alpine-keys`), or None when not checking."""
    return trusted_key_folder(folder, "indexes") if folder else None


def read_index(
    fetched: Fetched, repository: str, keys: Mapping[str, PublicKey] | None, keys_dir: str = ""
) -> RepositoryIndex:
    """The offers of a fetched index; with `keys`, only when it is signed by one of them."""
    parsed = parse_index(fetched.data, fetched.sha256)
    signed_by = ""
    if keys is not None:
        verdict = signature_verdict(parsed.signed, keys, fetched.url)
        where = f" in {keys_dir}" if keys_dir else ""
        if verdict.signature == "bad":
            raise StepFailed(
                f"{fetched.url}: BAD signature by {verdict.keyname}: the index is not what that "
                "key signed (tampered with or damaged); not using it"
            )
        if verdict.signature == "untrusted":
            raise StepFailed(
                f"{fetched.url}: untrusted: signed by {verdict.keyname}, which is not one of the "
                f"keys{where} (--alpine-keys); is the mirror right, or is its key missing?"
            )
        if verdict.signature != "trusted":
            raise StepFailed(
                f"{fetched.url}: untrusted: the index is not signed, and --alpine-keys requires "
                f"a signature by one of the keys{where}"
            )
        signed_by = verdict.keyname or ""
    return RepositoryIndex(
        repository, fetched.url, fetched.sha256, parsed.offers, signed_by, parsed.entries
    )


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


def fetch_deps(step: Step, context: RunContext) -> list[str]:
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
    if unavailable or stale_copy:
        # The mirror failed: good enough for this build, checked again next time.
        return Provisional(warnings)
    return warnings


def cached_copy(url: str, cache_dir: Path) -> Fetched:
    """The cached copy of an index (--offline), without asking the mirror; no data when none."""
    record = _read_record(_record_path(cache_dir, url), url)
    data = cached_index(cache_dir, record.get("sha256"))
    if not data:
        return Fetched(url, problem=f"{url}: no cached copy")
    return Fetched(url, data, str(record["sha256"]), "cached")


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
        _remember(_universes, memo_key, universe)
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
