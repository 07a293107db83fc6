"""A remote cache of step outputs on Bazel's HTTP cache protocol, feeding the local store.

Any HTTP/1.1 server with GET, PUT and HEAD serves it (nginx with WebDAV PUT,
bazel-remote, a bucket behind a proxy): `{URL}/ac/<sha256>` holds a small
JSON record per step (keyed by the step's portable key, see
pakman.compile.graph.portable_keys) naming each output by the sha256 of its
content, and `{URL}/cas/<sha256>` holds each content. A 404 is a miss.

The remote cache is a way to fill the local store (pakman.workspace.store),
not a second way to restore outputs: `fill` writes complete store entries,
which are then restored as any other (`on_entry` lets the caller do it at
once); `upload` sends what a store entry holds, blobs first, so a reader
never finds a record whose blobs are missing. Requests go through
pakman.workspace.remote_http.

Trust: every blob is checked against its digest, a record naming a path
that is absolute, has `..`, goes through a link or names anything but a
file, folder or link is a miss (with a warning); nothing fetched is run.
The auth header (PAKMAN_REMOTE_CACHE_HEADER) is sent and never said.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pakman.workspace.fingerprint import file_sha256
from pakman.workspace.remote_http import (
    DEFAULT_CONCURRENCY,
    PROBE_TIMEOUT,
    Exchange,
    HttpCache,
    RemoteError,
    Unreachable,
)
from pakman.workspace.store import RECORD, Blob, Store, materialize, record_digests

__all__ = [
    "DEFAULT_CONCURRENCY",
    "FORMAT",
    "PROBE_TIMEOUT",
    "HttpCache",
    "RemoteError",
    "Report",
    "Unreachable",
    "Wanted",
    "fill",
    "record_digests",
    "upload",
]

FORMAT = "pakman-ac/1"  # the `format` of an ac record; another format is a miss
_DIGEST = re.compile(r"[0-9a-f]{64}\Z")
_IN_MEMORY = 4 << 20  # a blob up to this size is kept in memory between download and use
_MEMORY_BUDGET = 256 << 20  # ... while all kept so far fit in this; the others go to files
# One thread writes the store entries (and puts them in place) while the
# downloads go on: more writers were slower, measured, as folders and files are
# made one at a time by the file system anyway, and threads add GIL contention.
_WRITERS = 1


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
        seen: set[str] = set()
        for entry in output["entries"]:
            problem = _entry_problem(entry, folders)
            if problem:
                return problem
            if entry[0] in seen:
                # A link, then a file of the same name: it would be written through the link.
                return f"the path {entry[0]!r} is named twice"
            seen.add(entry[0])
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


# the two phases -------------------------------------------------------------------


class _Download:
    """One blob arriving: hashed as it comes, kept in memory, or (large) written to a file."""

    def __init__(self, digest: str, blobs: _Blobs) -> None:
        self.digest = digest
        self.blobs = blobs
        self.hasher = hashlib.sha256()
        self.parts: list[bytes] = []
        self.size = 0
        self.spill: BinaryIO | None = None

    @property
    def partial(self) -> Path:
        return self.blobs.folder / f".{self.digest}.part"

    def sink(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        self.size += len(chunk)
        if self.spill is None and (
            self.size > _IN_MEMORY or self.blobs.held + self.size > _MEMORY_BUDGET
        ):
            self.spill = self.partial.open("wb")
            self.spill.write(b"".join(self.parts))
            self.parts.clear()
        elif self.spill is None:
            self.parts.append(chunk)
            return
        self.spill.write(chunk)

    def settle(self, done: Exchange, shown: str) -> Blob:
        """The checked blob; raises RemoteError when it is missing, cut short or not what it says."""
        if self.spill is not None:
            self.spill.close()
        if done.error:
            self.partial.unlink(missing_ok=True)
            raise RemoteError(done.error)
        if done.status != 200:
            self.partial.unlink(missing_ok=True)
            if done.status == 404:
                raise RemoteError(f"blob {self.digest} is missing from the cache")
            raise RemoteError(f"GET {shown}{done.path}: HTTP {done.status}")
        if self.hasher.hexdigest() != self.digest:
            self.partial.unlink(missing_ok=True)
            raise RemoteError(f"blob {self.digest} does not match its digest: not used")
        if self.spill is None:
            self.blobs.held += self.size
            return b"".join(self.parts)
        return self.partial.rename(self.blobs.folder / self.digest)


@dataclass
class _Blobs:
    """The checked blobs of one fill, and where the large ones are."""

    folder: Path
    held: int = 0  # bytes kept in memory
    got: dict[str, Blob] = field(default_factory=dict)


def fill(
    cache: HttpCache,
    store: Store,
    wanted: Sequence[Wanted],
    resign: Callable[[Path], None] | None = None,
    progress: Callable[[str], None] | None = None,
    on_entry: Callable[[Wanted], None] | None = None,
    packed: Collection[str] = (),
) -> Report:
    """Look the steps up, fetch and check their blobs, and write local store entries.

    One stream of requests: each record, once checked, queues the blobs it
    needs that are not on their way yet; a step whose blobs have all arrived
    is written (by a writer thread, while the downloads go on) and adopted
    into the store, then handed to `on_entry` (in that thread); the steps
    named in `packed` are kept as one file each (Store.pack), made into
    entries when first restored. `resign`
    re-signs an .apk file with the local key: packages a step's record says
    were signed by another key (its `signer`) get the local signature.
    """
    report = Report()
    if not wanted:
        return report
    # Steps of one key (apps with the same dependencies, say) are one entry:
    # looked up, made and adopted once; the others are restored from it.
    alike: dict[tuple[str, str], list[Wanted]] = {}
    for item in wanted:
        alike.setdefault((item.local_key, item.remote_key), []).append(item)
    firsts = [items[0] for items in alike.values()]
    scratch = store.root / "tmp" / f"remote.{uuid.uuid4().hex}"
    blobs = _Blobs(scratch / "blobs")
    writers = ThreadPoolExecutor(max_workers=_WRITERS)
    failures: dict[str, list[str]] = {"lookup": [], "download": []}

    def group(item: Wanted) -> list[Wanted]:
        return alike[item.local_key, item.remote_key]

    def make_entry(item: Wanted, record: dict[str, Any]) -> bool:
        resigned = bool(item.signer and record.get("signer") != item.signer and resign)
        if not resigned and all(each.step_id in packed for each in group(item)):
            if not store.pack(item.local_key, record, blobs.got):
                return False
            if on_entry is not None:
                for each in group(item):
                    on_entry(each)
            return True
        folder = scratch / item.step_id.replace(":", "_")
        folder.mkdir()
        materialize(record, blobs.got, folder)
        if item.signer and record.get("signer") != item.signer and resign is not None:
            for package in sorted(folder.rglob("*.apk")):
                resign(package)
        if not store.adopt(item.local_key, folder, len(record["outputs"])):
            return False
        if on_entry is not None:
            for each in group(item):
                on_entry(each)
        return True

    making: list[tuple[Wanted, Future[bool]]] = []
    try:
        blobs.folder.mkdir(parents=True)
        queue = deque(Exchange("GET", f"/ac/{item.remote_key}", tag=item) for item in firsts)
        records: dict[Wanted, dict[str, Any]] = {}
        needs: dict[Wanted, set[str]] = {}  # the blobs a step still waits for
        waiting: dict[str, list[Wanted]] = {}  # the steps waiting for a blob on its way
        looked = fetched = 0
        shown = 0.0
        for done in cache.run(queue):
            if isinstance(done.tag, Wanted):
                item = done.tag
                looked += 1
                record = _record_of(done, item, cache.shown, failures["lookup"])
                if record is None:
                    report.misses += len(group(item))
                    continue
                missing = record_digests(record) - blobs.got.keys()
                if not missing:
                    making.append((item, writers.submit(make_entry, item, record)))
                    continue
                records[item] = record
                needs[item] = missing
                for digest in missing:
                    if digest not in waiting:
                        waiting[digest] = []
                        download = _Download(digest, blobs)
                        queue.append(
                            Exchange("GET", f"/cas/{digest}", sink=download.sink, tag=download)
                        )
                    waiting[digest].append(item)
            else:
                assert isinstance(done.tag, _Download)
                digest = done.tag.digest
                fetched += 1
                try:
                    blobs.got[digest] = done.tag.settle(done, cache.shown)
                except RemoteError as exc:
                    failures["download"].append(str(exc))
                for item in waiting.pop(digest):
                    if item not in needs:
                        continue  # another of its blobs failed
                    if digest not in blobs.got:
                        del needs[item], records[item]
                        report.misses += len(group(item))
                        continue
                    needs[item].discard(digest)
                    if not needs[item]:
                        del needs[item]
                        making.append((item, writers.submit(make_entry, item, records.pop(item))))
            if progress and time.monotonic() - shown > 0.1:
                shown = time.monotonic()
                progress(
                    f"remote cache: looked up {looked}/{len(firsts)} steps, "
                    f"downloaded {fetched}/{len(waiting) + fetched} blobs, "
                    f"wrote {sum(f.done() for _, f in making)} entries"
                )
        for item, future in making:
            try:
                made = future.result()
            except OSError as exc:
                report.warnings.append(f"cannot write what the remote cache sent: {_reason(exc)}")
                made = False
            if made:
                report.restored += [each.step_id for each in group(item)]
            else:
                report.misses += len(group(item))
    except OSError as exc:
        report.warnings.append(f"cannot write what the remote cache sent: {_reason(exc)}")
    finally:
        writers.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(scratch, ignore_errors=True)
    _summarise(failures["lookup"], report, "lookup")
    _summarise(failures["download"], report, "download")
    return report


def _record_of(
    done: Exchange, item: Wanted, shown: str, failures: list[str]
) -> dict[str, Any] | None:
    """The checked record a lookup found; None for a miss (a failure said in `failures`)."""
    if done.error or done.status not in (200, 404):
        failures.append(done.error or f"GET {shown}{done.path}: HTTP {done.status}")
        return None
    if done.status == 404:
        return None
    try:
        record = json.loads(done.answer)
    except ValueError:
        record = None
    problem = record_problem(record, item.outputs)
    if problem:
        failures.append(f"the record of {item.step_id} is unusable: {problem}")
        return None
    assert isinstance(record, dict)
    return record


def _reason(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)


def upload(
    cache: HttpCache,
    store: Store,
    ran: Iterable[tuple[str, str, str, str]],
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Send the store entries of steps that ran: (step id, local key, remote key, signer).

    Blobs first (those the server lacks: a HEAD, then a PUT), then, for each
    step whose blobs all made it, its ac record: no record ever names a
    blob the server lacks.
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
    sent: set[str] = set()
    failures: list[str] = []
    queue = deque(Exchange("HEAD", f"/cas/{digest}", tag=digest) for digest in sorted(blobs))
    shown = 0.0
    for done in cache.run(queue):
        digest = str(done.tag)
        if done.error:
            failures.append(done.error)
        elif done.method == "HEAD" and done.status == 404:
            queue.append(Exchange("PUT", done.path, blobs[digest], tag=digest))
        elif done.status in ((200, 204) if done.method == "HEAD" else (200, 201, 204)):
            sent.add(digest)
        else:
            failures.append(f"{done.method} {cache.shown}{done.path}: HTTP {done.status}")
        if progress and time.monotonic() - shown > 0.1:
            shown = time.monotonic()
            progress(f"remote cache: uploaded {len(sent)}/{len(blobs)} blobs")
    puts = deque(
        Exchange(
            "PUT",
            f"/ac/{remote_key}",
            json.dumps(record, sort_keys=True, separators=(",", ":")).encode(),
            tag=step_id,
        )
        for step_id, remote_key, record, needs in records
        if needs <= sent
    )
    for done in cache.run(puts):
        if done.error or done.status not in (200, 201, 204):
            failures.append(done.error or f"PUT {cache.shown}{done.path}: HTTP {done.status}")
        else:
            report.uploaded.append(str(done.tag))
    _summarise(failures, report, "upload")
    return report


def _summarise(failures: Sequence[str], report: Report, what: str) -> None:
    if not failures:
        return
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    report.warnings.append(f"remote cache {what}: {failures[0]}{more}")
