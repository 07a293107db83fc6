"""A remote cache of step outputs on Bazel's HTTP cache protocol, feeding the local store.

Any HTTP/1.1 server with GET, PUT and HEAD serves it (nginx with WebDAV PUT,
bazel-remote, a bucket behind a proxy): `{URL}/ac/<sha256>` holds a small
JSON record per step (keyed by the step's portable key, see
pakman.compile.graph.portable_keys) naming each output by the sha256 of its
content, and `{URL}/cas/<sha256>` holds each content. A 404 is a miss.

The remote cache is a way to fill the local store (pakman.workspace.store),
not a second way to restore outputs: `fill` writes complete store entries,
which the build then restores as it restores any other; `upload` sends what a
store entry holds, blobs first, so a reader never finds a record whose blobs
are missing.

Trust: every blob is checked against its digest, a record naming a path
that is absolute, has `..`, goes through a link or names anything but a
file, folder or link is a miss (with a warning); nothing fetched is run.
The auth header (PAKMAN_REMOTE_CACHE_HEADER) is sent and never said.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pakman.errors import PakmanError
from pakman.workspace.fingerprint import file_sha256
from pakman.workspace.remote_options import DEFAULT_TIMEOUT, cache_address
from pakman.workspace.store import RECORD, Store

FORMAT = "pakman-ac/1"  # the `format` of an ac record; another format is a miss
DEFAULT_CONCURRENCY = 16
PROBE_TIMEOUT = 0.8  # seconds the first request may take before the cache counts as unreachable
_RETRIES = 3  # attempts of a request answered 5xx or cut off, once the server has answered
_DIGEST = re.compile(r"[0-9a-f]{64}\Z")
_CHUNK = 1 << 20
_IN_MEMORY = 4 << 20  # a blob up to this size is kept in memory between download and use
_MEMORY_BUDGET = 256 << 20  # ... while all kept so far fit in this; the others go to files


class RemoteError(PakmanError):
    """A request to the remote cache failed (after its retries)."""


class Unreachable(RemoteError):
    """The remote cache could not be reached at all."""


@dataclass(frozen=True)
class Wanted:
    """A step whose outputs the build would like from the remote cache."""

    step_id: str
    remote_key: str  # the portable key: the ac record's name
    local_key: str  # the local store entry to write
    outputs: int  # how many outputs the step has
    # The signing key fingerprint the step's packages must carry ("": none signed).
    signer: str = ""


@dataclass
class Report:
    """What one phase did with the remote cache."""

    restored: list[str] = field(default_factory=list)  # step ids
    uploaded: list[str] = field(default_factory=list)
    misses: int = 0
    warnings: list[str] = field(default_factory=list)


class HttpCache:
    """A client of one cache URL: one keep-alive connection per thread, retries, timeouts."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        header: tuple[str, str] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        address = cache_address(url)
        self.https = address.https
        self.host = address.host
        self.port = address.port
        self.base = address.base
        # What messages show: never a user or password in the URL, never the header.
        self.shown = address.shown
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self._headers = {"Connection": "keep-alive"}
        if header is not None:
            self._headers[header[0]] = header[1]
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.failed = False  # a request failed after its retries: the rest fail at once

    # connections -------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            if self.https:
                connection = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout)
            else:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    # requests ----------------------------------------------------------------

    def probe(self) -> None:
        """One request, no retry, answered within PROBE_TIMEOUT: raises Unreachable if not.

        So a cache that is down, unknown or silent costs a build one short wait,
        not a timeout per step.
        """
        connection = self._connection()
        connection.timeout = min(self.timeout, PROBE_TIMEOUT)
        try:
            self._once("HEAD", "/ac/" + "0" * 64, None, None)
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            raise Unreachable(f"{self.shown}: {_reason(exc)}") from None
        connection.timeout = self.timeout
        if connection.sock is not None:
            connection.sock.settimeout(self.timeout)

    def get(self, path: str, sink: Callable[[bytes], None] | None = None) -> bytes | None:
        """The body at `path` (or fed to `sink`, then b""); None when the server has none (404)."""
        status, body = self._request("GET", path, None, sink)
        if status == 404:
            return None
        if status != 200:
            raise RemoteError(f"GET {self.shown}{path}: HTTP {status}")
        return body

    def has(self, path: str) -> bool:
        status, _ = self._request("HEAD", path, None, None)
        if status in (200, 204):
            return True
        if status == 404:
            return False
        raise RemoteError(f"HEAD {self.shown}{path}: HTTP {status}")

    def put(self, path: str, body: bytes | Path) -> None:
        status, _ = self._request("PUT", path, body, None)
        if status not in (200, 201, 204):
            raise RemoteError(f"PUT {self.shown}{path}: HTTP {status}")

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | Path | None,
        sink: Callable[[bytes], None] | None,
    ) -> tuple[int, bytes]:
        if self.failed:
            raise RemoteError(f"{method} {self.shown}{path}: not tried after earlier failures")
        problem = ""
        delivered = 0

        def counted(chunk: bytes) -> None:
            nonlocal delivered
            delivered += len(chunk)
            assert sink is not None
            sink(chunk)

        for attempt in range(_RETRIES):
            if attempt:
                time.sleep(0.05 * 2**attempt)
            try:
                status, data = self._once(method, path, body, counted if sink else None)
            except (OSError, http.client.HTTPException) as exc:
                # (A keep-alive connection the server closed meanwhile: tried again.)
                self._drop_connection()
                problem = _reason(exc)
                if delivered:
                    # Part of the body went to the sink: this blob is a miss.
                    raise RemoteError(f"{method} {self.shown}{path}: {problem}") from None
                continue
            if status >= 500:
                problem = f"HTTP {status}"
                continue
            return status, data
        self.failed = True
        raise RemoteError(f"{method} {self.shown}{path}: {problem}")

    def _once(
        self,
        method: str,
        path: str,
        body: bytes | Path | None,
        sink: Callable[[bytes], None] | None,
    ) -> tuple[int, bytes]:
        connection = self._connection()
        headers = dict(self._headers)
        if isinstance(body, Path):
            headers["Content-Length"] = str(body.stat().st_size)
            with body.open("rb") as handle:
                connection.request(method, self.base + path, handle, headers)
        else:
            if body is not None:
                headers["Content-Length"] = str(len(body))
            connection.request(method, self.base + path, body, headers)
        response = connection.getresponse()
        if method == "HEAD":
            response.read()
            return response.status, b""
        if sink is None or response.status != 200:
            data = response.read()
        else:
            while chunk := response.read(_CHUNK):
                sink(chunk)
            data = b""
        if response.will_close:
            self._drop_connection()
        return response.status, data


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


# ac records ---------------------------------------------------------------------


def describe_entry(store: Store, key: str) -> tuple[dict[str, Any], dict[str, Path]] | None:
    """The ac record of a local store entry and the files of each digest; None without an entry."""
    entry = store.entry(key)
    try:
        record = json.loads((entry / RECORD).read_text())
    except (OSError, ValueError):
        return None
    blobs: dict[str, Path] = {}
    outputs: list[dict[str, Any]] = []
    for index, info in enumerate(record.get("outputs", [])):
        slot = entry / str(index)
        if info["kind"] == "file":
            digest = file_sha256(slot)
            blobs[digest] = slot
            outputs.append({"kind": "file", "mode": info["mode"], "digest": digest})
            outputs[-1].update(size=info["size"], mtime_ns=info["mtime_ns"])
            continue
        entries: list[list[Any]] = []
        for relative, kind, mode, size, mtime_ns in info["entries"]:
            path = slot / relative
            if kind == "f":
                detail = file_sha256(path)
                blobs[detail] = path
            elif kind == "l":
                detail = os.readlink(path)
            else:
                detail = ""
            entries.append([relative, kind, mode, size, mtime_ns, detail])
        mode = stat.S_IMODE(slot.stat().st_mode)
        outputs.append({"kind": "dir", "mode": mode, "entries": entries})
    return {"format": FORMAT, "outputs": outputs}, blobs


def record_problem(record: Any, outputs: int) -> str | None:
    """Why an ac record cannot be used (None: it can): its shape, and every path it names."""
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return "not a record of this format"
    described = record.get("outputs")
    if not isinstance(described, list) or len(described) != outputs:
        return f"names {len(described) if isinstance(described, list) else 'no'} outputs, not {outputs}"
    for output in described:
        if not isinstance(output, dict) or not isinstance(output.get("mode"), int):
            return "an output without a kind or mode"
        if output.get("kind") == "file":
            if not _DIGEST.match(str(output.get("digest"))):
                return "a file without a sha256 digest"
            continue
        if output.get("kind") != "dir" or not isinstance(output.get("entries"), list):
            return "an output that is neither a file nor a folder"
        folders = {""}
        for entry in output["entries"]:
            problem = _entry_problem(entry, folders)
            if problem:
                return problem
    return None


def _entry_problem(entry: Any, folders: set[str]) -> str | None:
    if not (isinstance(entry, list) and len(entry) == 6):
        return "a folder entry of the wrong shape"
    relative, kind, mode, size, mtime_ns, detail = entry
    if not (isinstance(relative, str) and isinstance(mode, int) and isinstance(mtime_ns, int)):
        return "a folder entry of the wrong shape"
    if not isinstance(size, int) or not isinstance(detail, str):
        return "a folder entry of the wrong shape"
    parts = relative.split("/")
    if relative.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in relative:
        return f"the path {relative!r} is absolute or has `..`"
    parent = relative.rpartition("/")[0]
    if parent not in folders:
        # Its folder is a link it made, or not made before it: it would write elsewhere.
        return f"the path {relative!r} is not inside a folder the record makes first"
    if kind == "d":
        folders.add(relative)
    elif kind == "f":
        if not _DIGEST.match(detail):
            return f"{relative!r} has no sha256 digest"
    elif kind != "l" or not detail or "\0" in detail:
        return f"{relative!r} is not a file, folder or link"
    return None


def record_digests(record: Mapping[str, Any]) -> set[str]:
    """The blobs a (checked) record needs."""
    digests: set[str] = set()
    for output in record["outputs"]:
        if output["kind"] == "file":
            digests.add(output["digest"])
        else:
            digests.update(e[5] for e in output["entries"] if e[1] == "f")
    return digests


Blob = bytes | Path  # a checked blob: its content, or (a large one) a file holding it


def _write(blob: Blob, target: Path, mode: int, mtime_ns: int) -> None:
    if isinstance(blob, Path):
        shutil.copyfile(blob, target)
        os.chmod(target, mode & 0o7777)
        os.utime(target, ns=(mtime_ns, mtime_ns))
        return
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(blob)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode & 0o7777)
        os.utime(fd, ns=(mtime_ns, mtime_ns))
    finally:
        os.close(fd)


def _materialize(record: Mapping[str, Any], blobs: Mapping[str, Blob], folder: Path) -> None:
    """The record's outputs under `folder` (0, 1, ...), files from the checked blobs."""
    for index, output in enumerate(record["outputs"]):
        slot = folder / str(index)
        if output["kind"] == "file":
            _write(blobs[output["digest"]], slot, output["mode"], output.get("mtime_ns", 0))
            continue
        slot.mkdir()
        folders: list[tuple[Path, int]] = []
        for relative, kind, mode, _size, mtime_ns, detail in output["entries"]:
            target = slot / relative
            if kind == "d":
                target.mkdir()
                folders.append((target, mode))
            elif kind == "l":
                os.symlink(detail, target)
            else:
                _write(blobs[detail], target, mode, mtime_ns)
        for target, mode in folders:
            os.chmod(target, (mode & 0o7777) | stat.S_IRWXU)
        os.chmod(slot, output["mode"] & 0o7777)


# the two phases -------------------------------------------------------------------


def fill(
    cache: HttpCache,
    store: Store,
    wanted: Sequence[Wanted],
    resign: Callable[[Path], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Look the steps up, fetch and check their blobs, and write local store entries.

    All lookups, then all blob downloads, run in parallel. `resign` re-signs
    an .apk file with the local key: packages a step's record says were
    signed by another key (its `signer`) get the local signature.
    """
    report = Report()
    if not wanted:
        return report
    # Steps of one key (apps with the same dependencies, say) are one entry:
    # looked up, made and adopted once; the others are restored from it.
    alike: dict[tuple[str, str], list[Wanted]] = {}
    for item in wanted:
        alike.setdefault((item.local_key, item.remote_key), []).append(item)
    wanted = [items[0] for items in alike.values()]
    pool = ThreadPoolExecutor(max_workers=cache.concurrency)
    scratch = store.root / "tmp" / f"remote.{uuid.uuid4().hex}"
    try:
        records = _lookup(cache, wanted, alike, report, pool, progress)
        digests = sorted(set().union(*(record_digests(r) for r in records.values())))
        (scratch / "blobs").mkdir(parents=True)
        blobs = _download(cache, digests, scratch / "blobs", report, pool, progress)

        def make_entry(item: Wanted, record: dict[str, Any]) -> bool:
            folder = scratch / item.step_id.replace(":", "_")
            folder.mkdir()
            _materialize(record, blobs, folder)
            if item.signer and record.get("signer") != item.signer and resign is not None:
                for package in sorted(folder.rglob("*.apk")):
                    resign(package)
            return store.adopt(item.local_key, folder, len(record["outputs"]))

        # The entries are written in parallel too: most of it is making files.
        making = []
        for item in wanted:
            record = records.get(item.step_id)
            if record is None:
                continue
            if not record_digests(record) <= blobs.keys():
                report.misses += len(alike[item.local_key, item.remote_key])
                continue
            making.append((item, pool.submit(make_entry, item, record)))
        for item, future in making:
            if future.result():
                report.restored += [i.step_id for i in alike[item.local_key, item.remote_key]]
    except OSError as exc:
        report.warnings.append(f"cannot write what the remote cache sent: {_reason(exc)}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return report


def _lookup(
    cache: HttpCache,
    wanted: Sequence[Wanted],
    alike: Mapping[tuple[str, str], Sequence[Wanted]],
    report: Report,
    pool: ThreadPoolExecutor,
    progress: Callable[[str], None] | None,
) -> dict[str, dict[str, Any]]:
    def one(item: Wanted) -> dict[str, Any] | None:
        body = cache.get(f"/ac/{item.remote_key}")
        if body is None:
            return None
        try:
            record = json.loads(body)
        except ValueError:
            record = None
        problem = record_problem(record, item.outputs)
        if problem:
            raise RemoteError(f"the record of {item.step_id} is unusable: {problem}")
        assert isinstance(record, dict)
        return record

    records: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    futures = [(item, pool.submit(one, item)) for item in wanted]
    for done, (item, future) in enumerate(futures, 1):
        try:
            record = future.result()
        except RemoteError as exc:
            failures.append(str(exc))
            record = None
        if record is None:
            report.misses += len(alike[item.local_key, item.remote_key])
        else:
            records[item.step_id] = record
        if progress:
            progress(f"remote cache: looked up {done}/{len(wanted)} steps")
    _summarise(failures, report, "lookup")
    return records


def _download(
    cache: HttpCache,
    digests: Sequence[str],
    folder: Path,
    report: Report,
    pool: ThreadPoolExecutor,
    progress: Callable[[str], None] | None,
) -> dict[str, Blob]:
    held = 0  # bytes of blobs kept in memory
    lock = threading.Lock()

    def one(digest: str) -> Blob:
        nonlocal held
        hasher = hashlib.sha256()
        parts: list[bytes] = []
        size = 0
        spill: BinaryIO | None = None
        partial = folder / f".{digest}.part"

        def sink(chunk: bytes) -> None:
            # Small blobs stay in memory (most are); a large one goes to a file.
            nonlocal size, spill
            hasher.update(chunk)
            size += len(chunk)
            if spill is None and (size > _IN_MEMORY or held + size > _MEMORY_BUDGET):
                spill = partial.open("wb")
                spill.write(b"".join(parts))
                parts.clear()
            elif spill is None:
                parts.append(chunk)
                return
            spill.write(chunk)

        try:
            found = cache.get(f"/cas/{digest}", sink)
        finally:
            if spill is not None:
                spill.close()
        if found is None:
            raise RemoteError(f"blob {digest} is missing from the cache")
        if hasher.hexdigest() != digest:
            partial.unlink(missing_ok=True)
            raise RemoteError(f"blob {digest} does not match its digest: not used")
        if spill is None:
            with lock:
                held += size
            return b"".join(parts)
        return partial.rename(folder / digest)

    got: dict[str, Blob] = {}
    failures: list[str] = []
    futures = [(digest, pool.submit(one, digest)) for digest in digests]
    for done, (digest, future) in enumerate(futures, 1):
        try:
            blob = future.result()
        except RemoteError as exc:
            failures.append(str(exc))
        else:
            got[digest] = blob
        if progress:
            progress(f"remote cache: downloaded {done}/{len(digests)} blobs")
    _summarise(failures, report, "download")
    return got


def upload(
    cache: HttpCache,
    store: Store,
    ran: Iterable[tuple[str, str, str, str]],
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Send the store entries of steps that ran: (step id, local key, remote key, signer).

    Blobs first (those the server lacks), then, for each step whose blobs
    all made it, its ac record: no record ever names a blob the server lacks.
    """
    report = Report()
    records: list[tuple[str, str, dict[str, Any], set[str]]] = []
    blobs: dict[str, Path] = {}
    for step_id, local_key, remote_key, signer in ran:
        described = describe_entry(store, local_key)
        if described is None:
            continue
        record, files = described
        if signer:
            record["signer"] = signer
        records.append((step_id, remote_key, record, set(files)))
        blobs.update(files)
    if not records:
        return report
    pool = ThreadPoolExecutor(max_workers=cache.concurrency)
    try:

        def send_blob(digest: str) -> None:
            if not cache.has(f"/cas/{digest}"):
                cache.put(f"/cas/{digest}", blobs[digest])

        sent: set[str] = set()
        failures: list[str] = []
        futures = [(d, pool.submit(send_blob, d)) for d in sorted(blobs)]
        for done, (digest, future) in enumerate(futures, 1):
            try:
                future.result()
            except (RemoteError, OSError) as exc:
                failures.append(str(exc))
            else:
                sent.add(digest)
            if progress:
                progress(f"remote cache: uploaded {done}/{len(blobs)} blobs")
        complete = [(s, k, r) for s, k, r, needs in records if needs <= sent]

        def send_record(remote_key: str, record: dict[str, Any]) -> None:
            text = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
            cache.put(f"/ac/{remote_key}", text)

        record_futures = [(s, pool.submit(send_record, k, r)) for s, k, r in complete]
        for step_id, sending in record_futures:
            try:
                sending.result()
            except RemoteError as exc:
                failures.append(str(exc))
            else:
                report.uploaded.append(step_id)
        _summarise(failures, report, "upload")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return report


def _summarise(failures: Sequence[str], report: Report, what: str) -> None:
    if not failures:
        return
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    report.warnings.append(f"remote cache {what}: {failures[0]}{more}")
