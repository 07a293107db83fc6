"""Fetching the packages of a lock's closure from a mirror into a cache, verified.

Each package is downloaded once from
`<mirror>/<branch>/<repository>/<arch>/<name>-<version>.apk` (the folder of the
lock's architecture, as apk takes it from the index's `A:`) into
`<cache>/<sha1 of its identity, hex>.apk`: the cache is addressed by the
package's identity (`C:`), so a package is never confused with another of the
same name and version. A package enters the cache only once checked, the way
apk checks it before installing:

- its signature must be by one of the trusted keys (Alpine's public keys,
  shipped with pakman in `pakman/apk/alpine_keys/` as apk-tools' `alpine-keys`
  package ships them, or a folder given with `--alpine-keys`), and sound;
- the SHA-1 of its control member (its identity) must equal the index's `C:`
  that the lock recorded, so the package is the one the index listed;
- its data must match the `datahash` the signed control section records.

A download goes to `<name>.part` beside the cache entry and resumes from where
it stopped (an HTTP Range request) when the connection drops, in this call or
a later one; the checked file is renamed into place. A cached file is checked
again each time it is used, and one that fails (damaged on disk) is fetched
again. Packages are fetched by a pool of threads; `TerminalProgress` shows
how far it got on a terminal.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pakman import __version__
from pakman.apk.errors import ArchiveError
from pakman.apk.gzipper import GzipMemberReader
from pakman.apk.keys import PublicKey, trusted_key_folder
from pakman.apk.reader import control_from, identity_digest, open_regular_file, read_signed_start
from pakman.apk.verify import signature_verdict
from pakman.errors import StepFailed

ALPINE_KEYS = Path(__file__).parent / "alpine_keys"
TIMEOUT = 30.0  # seconds without progress before a request is given up
ATTEMPTS = 4  # tries per package (each resumes what the last one got)
CHUNK = 1 << 16
DEFAULT_JOBS = 4


class PackageFetchError(StepFailed):
    """Packages could not be fetched or are not what the index said; one line per package."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class LockedPackage:
    """One package of a lock's closure: what to fetch and what it must be."""

    name: str
    version: str
    identity: str  # C: Q1 + base64(SHA-1 of the control member)
    repository: str
    size: int = 0  # S: of the index (0: unknown)

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.apk"

    @property
    def label(self) -> str:
        return f"{self.name} {self.version} ({self.repository})"

    @classmethod
    def from_lock(cls, entry: Mapping[str, Any]) -> LockedPackage:
        """A package as a lock file's `closure` lists it."""
        return cls(
            str(entry["name"]),
            str(entry["version"]),
            str(entry["identity"]),
            str(entry["repository"]),
            int(entry.get("size") or 0),
        )


def cache_path(cache_dir: Path, package: LockedPackage) -> Path:
    """Where a package is kept in the cache: by its identity."""
    return cache_dir / f"{identity_digest(package.identity)}.apk"


def package_url(mirror: str, branch: str, arch: str, package: LockedPackage) -> str:
    """`<mirror>/<branch>/<repository>/<arch>/<name>-<version>.apk`, as apk fetches it."""
    return f"{mirror.rstrip('/')}/{branch}/{package.repository}/{arch}/{package.filename}"


def trusted_package_keys(folder: str = "") -> dict[str, PublicKey]:
    """The keys packages must be signed with: those in `folder`, else Alpine's shipped with pakman."""
    return trusted_key_folder(folder or ALPINE_KEYS, "packages")


def check_package(path: Path, package: LockedPackage, keys: Mapping[str, PublicKey]) -> str:
    """Why the file is not the package the lock names, signed by a trusted key; "" when it is."""
    try:
        with open_regular_file(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            members = GzipMemberReader(handle)
            control = control_from(read_signed_start(members))
            verdict = signature_verdict(control.signed, keys, str(path))
            if verdict.signature == "bad":
                return f"BAD signature by {verdict.keyname} (tampered with or damaged)"
            if verdict.signature == "untrusted":
                return f"signed by {verdict.keyname}, which is not a trusted key"
            if verdict.signature != "trusted":
                return "not signed"
            if control.identity != package.identity:
                return (
                    f"its control checksum {control.identity} is not the index's "
                    f"C:{package.identity} (not the package the index lists)"
                )
            datahash = hashlib.sha256()
            data_size = members.hash_rest((datahash,))
    except ArchiveError as exc:
        return f"unreadable ({exc})"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    expected = control.first("datahash").lower()
    if not expected or not data_size or expected != datahash.hexdigest():
        return "its data does not match the signed datahash (damaged or tampered with)"
    if package.size and size != package.size:
        return f"{size} bytes where the index says {package.size}"
    return ""


@dataclass
class _Totals:
    packages: int
    total_bytes: int
    done: int = 0
    received: int = 0


ProgressCallback = Callable[[int, int, int, int], None]  # done, packages, bytes, total bytes


class TerminalProgress:
    """One line on a terminal, rewritten at most ten times a second: packages and bytes so far."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self._shown = 0.0
        self._lock = threading.Lock()

    def __call__(self, done: int, packages: int, received: int, total: int) -> None:
        if not self.enabled:
            return
        with self._lock:
            now = time.monotonic()
            if done < packages and now - self._shown < 0.1:
                return
            self._shown = now
            size = f"{received / 1e6:.1f}/{total / 1e6:.1f} MB" if total else ""
            end = "\n" if done == packages else ""
            self.stream.write(f"\rfetching packages: {done}/{packages} {size}\x1b[K{end}")
            self.stream.flush()


def fetch_packages(
    packages: Iterable[LockedPackage],
    *,
    mirror: str,
    branch: str,
    arch: str,
    cache_dir: Path,
    keys: Mapping[str, PublicKey],
    jobs: int = DEFAULT_JOBS,
    progress: ProgressCallback | None = None,
) -> dict[str, Path]:
    """Every package in the cache, checked: its path by identity.

    Raises PackageFetchError naming each package that could not be fetched or
    is not what the lock says (a bad or untrusted signature, a control
    checksum that is not the index's `C:`, damaged data).
    """
    wanted = sorted(set(packages), key=lambda p: (p.name, p.version, p.identity))
    cache_dir.mkdir(parents=True, exist_ok=True)
    totals = _Totals(len(wanted), sum(p.size for p in wanted))
    lock = threading.Lock()

    def report(received: int = 0, done: int = 0) -> None:
        with lock:
            totals.received += received
            totals.done += done
            if progress is not None:
                progress(totals.done, totals.packages, totals.received, totals.total_bytes)

    def one(package: LockedPackage) -> tuple[Path | None, str]:
        try:
            path = _fetch_one(package, mirror, branch, arch, cache_dir, keys, report)
        except _Refused as exc:
            return None, f"{package.label}: {exc}"
        report(done=1)
        return path, ""

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(wanted) or 1))) as pool:
        results = list(pool.map(one, wanted))
    problems = [problem for _, problem in results if problem]
    if problems:
        raise PackageFetchError(problems)
    return {p.identity: path for p, (path, _) in zip(wanted, results, strict=True) if path}


def fetch_closure(
    lock: Mapping[str, Any],
    cache_dir: Path,
    keys: Mapping[str, PublicKey],
    *,
    jobs: int = DEFAULT_JOBS,
    progress: ProgressCallback | None = None,
) -> dict[str, Path]:
    """Fetch the `closure` of a build lock (as fetch-deps-build writes it) from its mirror."""
    if lock.get("unresolved") or lock.get("closure") is None:
        raise StepFailed(
            "the build dependencies were not resolved (--offline, or the mirror could not be "
            f"reached: {lock.get('offline', '')}), so there is no closure to fetch"
        )
    packages = [LockedPackage.from_lock(entry) for entry in lock.get("closure", ())]
    return fetch_packages(
        packages,
        mirror=str(lock["mirror"]),
        branch=str(lock["branch"]),
        arch=str(lock["arch"]),
        cache_dir=cache_dir,
        keys=keys,
        jobs=jobs,
        progress=progress,
    )


class _Refused(Exception):
    """This package cannot be had (the message says why, without its name)."""


def _fetch_one(
    package: LockedPackage,
    mirror: str,
    branch: str,
    arch: str,
    cache_dir: Path,
    keys: Mapping[str, PublicKey],
    report: Callable[..., None],
) -> Path:
    try:
        target = cache_path(cache_dir, package)
    except ValueError as exc:
        raise _Refused(str(exc)) from None
    if target.exists():
        if not check_package(target, package, keys):
            report(received=target.stat().st_size)
            return target
        target.unlink(missing_ok=True)  # damaged in the cache: fetch it again
    url = package_url(mirror, branch, arch, package)
    part = target.with_name(target.name + ".part")
    fresh_start = False
    problem = ""
    for _ in range(ATTEMPTS):
        problem = _download(url, part, package, report)
        if problem:
            continue
        verdict = check_package(part, package, keys)
        if not verdict:
            with part.open("rb") as handle:
                os.fsync(handle.fileno())
            os.replace(part, target)
            return target
        part.unlink(missing_ok=True)
        if fresh_start:
            raise _Refused(f"{url}: {verdict}")
        # what was resumed may have been a stale partial download: once more from the start
        fresh_start = True
        problem = verdict
    raise _Refused(f"{url}: {problem}")


def _download(url: str, part: Path, package: LockedPackage, report: Callable[..., None]) -> str:
    """Fetch `url` into `part`, resuming what is there; "" when complete, else why not."""
    have = part.stat().st_size if part.exists() else 0
    if package.size and have >= package.size:
        have = 0  # whole already (then refused) or too long: start again
    headers = {"User-Agent": f"pakman/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            resumed = have and response.status == 206
            if resumed:
                report(received=have)
            with part.open("ab" if resumed else "wb") as out:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    report(received=len(chunk))
            expected = response.headers.get("Content-Length")
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416:  # the range is past the end: what we have is stale
            part.unlink(missing_ok=True)
            return "the partial download was longer than the file (HTTP 416)"
        if exc.code == 404:
            raise _Refused(
                f"{url}: not found (HTTP 404); the index lists it, so the mirror may be "
                "updating: fetch the indexes again (build again)"
            ) from None
        return f"HTTP {exc.code} {exc.reason}".rstrip()
    except ValueError as exc:
        raise _Refused(f"{url}: not a URL pakman can fetch ({exc})") from None
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return f"{reason or type(exc).__name__} (the download resumes where it stopped)"
    size = part.stat().st_size
    if package.size and size < package.size:
        return f"the connection ended after {size} of {package.size} bytes"
    if expected is not None and not package.size and not resumed and size != int(expected):
        return f"the connection ended after {size} of {expected} bytes"
    return ""
