"""An Alpine mirror's package indexes: fetched, cached, read and their signatures checked.

For each repository (main, community) of a branch the index
`<mirror>/<branch>/<repository>/<arch>/APKINDEX.tar.gz` is fetched. Indexes
are cached under `.pakman/cache/apkindex/`: the bytes once per content
(`<sha256>.tar.gz`), and per URL a record of the content it last had, with
its ETag and Last-Modified, so that the next fetch is a conditional request a
304 answers. A cached copy whose bytes no longer match their digest is
dropped and fetched again; when the mirror cannot be reached the cached copy
is used (the caller warns). With trusted keys (`--alpine-keys DIR`) an index
is used only when it is signed by one of them (checked each time it is used,
cached or not). `cached_copy` gives the cached copy without asking the
mirror (--offline).

What the step does with the indexes (resolving names, the lock file) is
pakman.steps.deps; resolving a closure is pakman.apk.resolve.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pakman import __version__
from pakman.apk.errors import ArchiveError
from pakman.apk.index import IndexEntry, parse_index_entries
from pakman.apk.keys import PublicKey, trusted_key_folder
from pakman.apk.reader import SignedSection, read_index_file
from pakman.apk.verify import signature_verdict
from pakman.apk.version import satisfies
from pakman.errors import ConfigError, StepFailed
from pakman.fileio import write_atomic

TIMEOUT = 20.0  # seconds to wait for the mirror, per request
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


# In-process memos: indexes by content (safe forever), and fetches per build run
# (so that the steps of one run ask the mirror once per URL).
_parsed: dict[str, ParsedIndex] = {}
_fetched: dict[tuple[str, str, str], Fetched] = {}


def remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
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
    remember(_parsed, sha256, parsed)
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
        remember(_fetched, memo_key, fetched)
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


def cached_copy(url: str, cache_dir: Path) -> Fetched:
    """The cached copy of an index (--offline), without asking the mirror; no data when none."""
    record = _read_record(_record_path(cache_dir, url), url)
    data = cached_index(cache_dir, record.get("sha256"))
    if not data:
        return Fetched(url, problem=f"{url}: no cached copy")
    return Fetched(url, data, str(record["sha256"]), "cached")
