"""fetch-deps: resolve an app's dependencies against its stack's package index.

The index of each repository (main, community) of the stack's branch is
fetched from the mirror (`<mirror>/<branch>/<repo>/<arch>/APKINDEX.tar.gz`),
cached under `.pakman/cache/apkindex/` by content, and read. Each dependency
must be a package of that branch, or a name one provides (`p:` entries,
including `so:` and `cmd:`), or a package another app of the same build
produces. The result is a lock file: name -> version and identity (`C:`).
Offline, the lock is written unresolved with a warning (an error with
--require-deps); a cached index is used when the mirror cannot be reached.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import io
import json
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pakman.apk.version import compare_versions, satisfies
from pakman.errors import ConfigError, Diagnostic, StepFailed
from pakman.fsutil import write_atomic
from pakman.graph import NOARCH, Step, host_arch
from pakman.model import AppType, Dependency
from pakman.steps import RunContext

REPOSITORIES = ("main", "community")
TIMEOUT = 20.0
_memo: dict[str, IndexFetch] = {}  # one fetch per URL and process


@dataclass(frozen=True)
class IndexEntry:
    name: str
    version: str
    identity: str  # C: Q1...
    provides: tuple[str, ...] = ()
    repository: str = ""


@dataclass
class IndexFetch:
    url: str
    entries: list[IndexEntry] = field(default_factory=list)
    sha256: str = ""
    offline: str = ""  # why the index could not be had, when it could not
    from_cache: bool = False


def parse_apkindex(text: str, repository: str = "") -> list[IndexEntry]:
    """The package blocks of an APKINDEX text."""
    entries: list[IndexEntry] = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if len(line) > 2 and line[1] == ":":
                fields.setdefault(line[0], line[2:])
        if "P" in fields and "V" in fields:
            entries.append(
                IndexEntry(
                    name=fields["P"],
                    version=fields["V"],
                    identity=fields.get("C", ""),
                    provides=tuple(fields.get("p", "").split()),
                    repository=repository,
                )
            )
    return entries


def read_apkindex_archive(data: bytes) -> str:
    """The APKINDEX text inside an APKINDEX.tar.gz (signature member and all)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as archive:
            member = archive.extractfile("APKINDEX")
            if member is None:
                raise KeyError("APKINDEX")
            return member.read().decode("utf-8")
    except (OSError, tarfile.TarError, KeyError, EOFError, UnicodeDecodeError) as exc:
        raise StepFailed(f"not a readable APKINDEX.tar.gz: {exc}") from None


def index_url(mirror: str, branch: str, repository: str, arch: str) -> str:
    return f"{mirror.rstrip('/')}/{branch}/{repository}/{arch}/APKINDEX.tar.gz"


def fetch_index(url: str, cache_dir: Path, repository: str = "") -> IndexFetch:
    """Fetch (or revalidate) an index, keeping its bytes in the cache by content."""
    if url in _memo:
        return _memo[url]
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta_path = cache_dir / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".json")
    meta: dict[str, Any] = {}
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        meta = {}
    cached = cache_dir / f"{meta.get('sha256', '-')}.tar.gz"
    request = urllib.request.Request(url, headers={"User-Agent": "pakman"})
    if cached.exists() and meta.get("etag"):
        request.add_header("If-None-Match", meta["etag"])
    if cached.exists() and meta.get("last_modified"):
        request.add_header("If-Modified-Since", meta["last_modified"])
    result = IndexFetch(url)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            data = response.read()
            digest = hashlib.sha256(data).hexdigest()
            write_atomic(cache_dir / f"{digest}.tar.gz", data)
            meta = {
                "url": url,
                "sha256": digest,
                "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified"),
            }
            write_atomic(meta_path, json.dumps(meta).encode())
    except urllib.error.HTTPError as exc:
        if exc.code != 304:
            if exc.code == 404:
                raise StepFailed(
                    f"{url}: not found (404); is the stack's branch or the architecture right?"
                ) from None
            result.offline = f"{url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        result.offline = f"{url}: {reason}"
    if result.offline and not cached.exists():
        _memo[url] = result
        return result
    path = cache_dir / f"{meta['sha256']}.tar.gz"
    result.from_cache = bool(result.offline)
    result.sha256 = meta["sha256"]
    result.entries = parse_apkindex(read_apkindex_archive(path.read_bytes()), repository)
    _memo[url] = result
    return result


def resolve(
    dependency: Dependency, entries: list[IndexEntry], local: Iterable[str] = ()
) -> dict[str, Any] | str:
    """The lock entry for a dependency, or why it cannot be resolved."""
    if dependency.conflict:
        return {"conflict": True}
    if dependency.name in set(local):
        return {"source": "local"}
    candidates: list[tuple[str, IndexEntry, str]] = []  # (version, entry, how)
    for entry in entries:
        if entry.name == dependency.name:
            candidates.append((entry.version, entry, "name"))
        for provided in entry.provides:
            name, _, version = provided.partition("=")
            if name == dependency.name:
                candidates.append((version or entry.version, entry, f"provided by {entry.name}"))
    if not candidates:
        return "missing"
    fitting = [c for c in candidates if satisfies(c[0], dependency.constraint)]
    if not fitting:
        found = ", ".join(sorted({f"{c[1].name} {c[0]}" for c in candidates}))
        return f"no version satisfies {dependency.constraint} (the index has {found})"
    best = fitting[0]
    for candidate in fitting[1:]:
        if compare_versions(candidate[0], best[0]) > 0:
            best = candidate
    version, entry, how = best
    lock: dict[str, Any] = {
        "package": entry.name,
        "version": entry.version,
        "identity": entry.identity,
        "repository": entry.repository,
    }
    if how != "name":
        lock["provided"] = version
    return lock


def closest_names(name: str, entries: list[IndexEntry]) -> list[str]:
    names = {e.name for e in entries} | {p.partition("=")[0] for e in entries for p in e.provides}
    return difflib.get_close_matches(name, sorted(names), n=3, cutoff=0.6)


def dependencies_of(step: Step) -> tuple[str, list[Dependency]]:
    assert step.app is not None
    config = step.app.config
    if step.stage.endswith("build"):
        return "dependencies.build", list(config.dependencies.build)
    runtime = list(config.dependencies.runtime)
    if config.type is AppType.STATIC and not any(d.name == "nginx" for d in runtime):
        runtime.append(Dependency("nginx"))
    return "dependencies.runtime", runtime


def fetch_deps(step: Step, context: RunContext) -> list[str]:
    """Resolve the step's dependency list and write its lock file; warn when offline."""
    assert step.app is not None and step.arch is not None
    config = step.app.config
    key, wanted = dependencies_of(step)
    arch = host_arch() if step.arch == NOARCH else step.arch
    local: Mapping[str, Any] = {n: True for n in step.reads.get("local", ())}
    lock: dict[str, Any] = {
        "stack": config.stack,
        "branch": config.branch,
        "arch": arch,
        "mirror": context.mirror,
        "indexes": {},
        "resolved": {},
        "unresolved": [],
    }
    entries: list[IndexEntry] = []
    offline_reasons: list[str] = []
    needs_index = any(not d.conflict and d.name not in local for d in wanted)
    if needs_index and not context.offline:
        cache = context.layout.state / "cache" / "apkindex"
        for repository in REPOSITORIES:
            fetched = fetch_index(
                index_url(context.mirror, config.branch, repository, arch), cache, repository
            )
            if fetched.sha256:
                lock["indexes"][repository] = {"url": fetched.url, "sha256": fetched.sha256}
                entries.extend(fetched.entries)
            if fetched.offline:
                offline_reasons.append(
                    fetched.offline + (" (used the cached copy)" if fetched.from_cache else "")
                )
    resolvable = bool(entries)
    problems: list[Diagnostic] = []
    for dependency in wanted:
        if not resolvable and not dependency.conflict and dependency.name not in local:
            lock["unresolved"].append(str(dependency))
            continue
        outcome = resolve(dependency, entries, local)
        if isinstance(outcome, dict):
            lock["resolved"][str(dependency)] = outcome
            continue
        if outcome == "missing":
            close = closest_names(dependency.name, entries)
            outcome = (
                f"`{dependency.name}` is not a package of alpine {config.branch} "
                f"({', '.join(REPOSITORIES)}) for {arch}"
                + (f"; did you mean: {', '.join(close)}?" if close else "")
            )
        else:
            outcome = f"`{dependency}`: {outcome}"
        problems.append(Diagnostic(str(config.file), 0, 0, key, outcome))
    if problems:
        raise ConfigError(problems)
    if lock["unresolved"]:
        why = "offline (--offline)" if context.offline else "; ".join(offline_reasons) or "no index"
        lock["offline"] = why
        if context.require_deps:
            raise StepFailed(
                f"cannot resolve {key} of {step.app.name} ({', '.join(lock['unresolved'])}): {why}"
            )
    write_atomic(Path(step.outputs[0]), json.dumps(lock, indent=1, sort_keys=True).encode())
    warnings = (
        [f"{key} not checked ({lock['offline']}): {', '.join(lock['unresolved'])}"]
        if lock["unresolved"]
        else []
    )
    warnings += [
        f"{reason}; used the cached index" for reason in offline_reasons if lock["resolved"]
    ]
    return warnings
