"""A local content-addressed store of step outputs, keyed by step key.

When a step's key was built before, its outputs are restored from
`.pakman/store/` instead of running it again, so reverting a change
(A -> B -> A) rebuilds nothing. Entries hold hard links to the outputs
(outputs are only ever replaced, never edited in place) and a record of
each file's size, time and mode, checked before an entry is trusted. An
entry appears by one rename, after its record is written: a killed build
leaves at most a temporary folder that is never read and that `gc` removes.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pakman.workspace.publication import Repository

RECORD = "entry.json"
PACK = ".pack"  # the suffix of a packed entry (see Store.pack)
_PACK_MAGIC = b"pakman-pack/1\n"
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_FORMAT = 1


def parse_size(text: str) -> int:
    """Bytes of a size such as 500M, 5G, 1.5GB or 1024 (binary units); ValueError if not one."""
    text = text.strip().upper().removesuffix("B")
    unit = text[-1:] if text[-1:] in _SIZE_UNITS else ""
    number = float(text[: len(text) - len(unit)])
    if not 0 <= number < 1e6:
        raise ValueError(number)
    return int(number * _SIZE_UNITS[unit])


def _tree(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything under a folder, parents first.

    With scandir and plain strings: the published repository folder of 200
    apps (400 packages) is stored on every build that changes it.
    """
    folders = [""]
    while folders:
        relative = folders.pop()
        with os.scandir(os.path.join(root, relative)) as found:
            entries = sorted(found, key=lambda e: e.name)
        for entry in entries:
            path = f"{relative}/{entry.name}" if relative else entry.name
            info = entry.stat(follow_symlinks=False)
            yield path, info
            if stat.S_ISDIR(info.st_mode):
                folders.append(path)


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _copy_tree(source: Path, target: Path, entries: Sequence[list[Any]]) -> None:
    """Recreate `source` at `target`: folders made, links remade, files hard-linked."""
    target.mkdir(parents=True, exist_ok=True)
    src_root, dst_root = str(source), str(target)
    for relative, kind, mode, *_ in entries:
        src, dst = f"{src_root}/{relative}", f"{dst_root}/{relative}"
        if kind == "d":
            os.mkdir(dst)  # parents come first
            os.chmod(dst, mode)
        elif kind == "l":
            os.symlink(os.readlink(src), dst)
        else:
            _link_or_copy(src, dst)
    os.chmod(target, stat.S_IMODE(source.stat().st_mode))


def _describe(path: Path) -> dict[str, Any]:
    """What one output is: a file, or a folder and everything in it."""
    st = path.lstat()
    if stat.S_ISDIR(st.st_mode):
        entries = []
        for relative, info in _tree(path):
            if stat.S_ISDIR(info.st_mode):
                kind = "d"
            elif stat.S_ISLNK(info.st_mode):
                kind = "l"
            elif stat.S_ISREG(info.st_mode):
                kind = "f"
            else:
                raise OSError(f"{path / relative}: not a file, folder or symlink")
            entries.append(
                [relative, kind, stat.S_IMODE(info.st_mode), info.st_size, info.st_mtime_ns]
            )
        return {"kind": "dir", "entries": entries}
    return {
        "kind": "file",
        "mode": stat.S_IMODE(st.st_mode),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
    }


@dataclass(frozen=True)
class Slice:
    """A blob held in part of a file (a packed entry's)."""

    path: Path
    offset: int
    size: int


Blob = bytes | Path | Slice  # a checked blob: its content, a file holding it, or part of one


def write_blob(blob: Blob, target: str, mode: int, mtime_ns: int) -> None:
    """A new file at `target` holding `blob`, with this mode and time.

    Made with O_EXCL and O_NOFOLLOW, and set through its descriptor: never
    written, nor changed, through a link already at `target`.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(target, flags, 0o600)
    try:
        for chunk in _chunks(blob):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        os.fchmod(fd, mode & 0o7777)
        os.utime(fd, ns=(mtime_ns, mtime_ns))
    finally:
        os.close(fd)


def _chunks(blob: Blob) -> Iterator[bytes]:
    """A blob's content, a piece at a time (a large one is never read whole)."""
    if isinstance(blob, bytes):
        yield blob
        return
    part = blob if isinstance(blob, Slice) else Slice(blob, 0, blob.stat().st_size)
    with part.path.open("rb") as reading:
        reading.seek(part.offset)
        left = part.size
        while left:
            chunk = reading.read(min(left, 1 << 20))
            if not chunk:
                raise OSError(f"{part.path}: shorter than its header says")
            left -= len(chunk)
            yield chunk


def materialize(record: Mapping[str, Any], blobs: Mapping[str, Blob], folder: Path) -> None:
    """The outputs an ac record (pakman.workspace.remote) names, under `folder` (0, 1, ...).

    The record has been checked (paths inside, parents first); files come
    from the blobs. (Plain strings for paths: a fresh clone writes every
    file of every step it is sent.)
    """
    for index, output in enumerate(record["outputs"]):
        slot = f"{folder}/{index}"
        if output["kind"] == "file":
            write_blob(blobs[output["digest"]], slot, output["mode"], output.get("mtime_ns", 0))
            continue
        os.mkdir(slot, 0o700)
        folders: list[tuple[str, int]] = []
        for relative, kind, mode, _size, mtime_ns, detail in output["entries"]:
            target = f"{slot}/{relative}"
            if kind == "d":
                os.mkdir(target, 0o700)
                folders.append((target, mode))
            elif kind == "l":
                os.symlink(detail, target)
            else:
                write_blob(blobs[detail], target, mode, mtime_ns)
        for target, mode in folders:
            os.chmod(target, (mode & 0o7777) | stat.S_IRWXU)
        os.chmod(slot, output["mode"] & 0o7777)


@dataclass(frozen=True)
class EntryInfo:
    key: str
    path: Path
    size: int  # bytes of its files
    last_used: float


class Store:
    """Step outputs by key, under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def packed(self, key: str) -> Path:
        return self.root / key[:2] / (key + PACK)

    def has(self, key: str) -> bool:
        """An entry of this key is here, complete (as a folder, or packed)."""
        return (self.entry(key) / RECORD).exists() or self.packed(key).exists()

    # packing ---------------------------------------------------------------

    def pack(self, key: str, record: Mapping[str, Any], blobs: Mapping[str, Blob]) -> bool:
        """Keep a checked ac record's outputs as one file: unpacked when first restored.

        For what the remote cache sends that no step about to run reads: one
        file per step instead of its files and folders (a fresh clone of 200
        apps: 2,200 files rather than 10,600 files and 4,200 folders). The
        file: a line naming the format, a line with the header's length, the
        header (JSON: the record, each blob's offset and size), the blobs.
        """
        target = self.packed(key)
        if target.exists() or (self.entry(key) / RECORD).exists():
            return True
        tmp = self.root / "tmp" / f"{key}.{uuid.uuid4().hex}{PACK}"
        needed = sorted(record_digests(record))
        places: dict[str, list[int]] = {}
        offset = 0
        for digest in needed:
            size = _blob_size(blobs[digest])
            places[digest] = [offset, size]
            offset += size
        header = json.dumps({"key": key, "record": record, "blobs": places}).encode()
        try:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("xb") as handle:
                handle.write(_PACK_MAGIC + b"%d\n" % len(header) + header)
                for digest in needed:
                    for chunk in _chunks(blobs[digest]):
                        handle.write(chunk)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(tmp, target)
        except OSError:
            tmp.unlink(missing_ok=True)
            return self.has(key)
        return True

    def _unpack(self, key: str, outputs: int) -> bool:
        """Make the entry of a packed key (then the pack goes); False if the pack is unusable."""
        packed = self.packed(key)
        try:
            with packed.open("rb") as handle:
                if handle.readline() != _PACK_MAGIC:
                    raise ValueError("not a pack")
                length = int(handle.readline())
                header = json.loads(handle.read(length))
                start = handle.tell()
            record = header["record"]
            if header["key"] != key or len(record["outputs"]) != outputs:
                raise ValueError("another entry's pack")
            blobs: dict[str, Blob] = {
                digest: Slice(packed, start + offset, size)
                for digest, (offset, size) in header["blobs"].items()
            }
            folder = self.root / "tmp" / f"{key}.{uuid.uuid4().hex}"
            folder.mkdir(parents=True)
            try:
                materialize(record, blobs, folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        except (OSError, ValueError, KeyError, TypeError):
            packed.unlink(missing_ok=True)
            return False
        made = self.adopt(key, folder, outputs)
        shutil.rmtree(folder, ignore_errors=True)  # (gone when adopted; not when another was)
        packed.unlink(missing_ok=True)
        return made

    # saving -----------------------------------------------------------------

    def save(self, key: str, outputs: Sequence[Path]) -> bool:
        """Keep the outputs of a step that just succeeded; False when they cannot be stored."""
        entry = self.entry(key)
        if (entry / RECORD).exists():
            os.utime(entry)
            return True
        tmp = self.root / "tmp" / f"{key}.{uuid.uuid4().hex}"
        try:
            tmp.mkdir(parents=True)
            described = []
            for index, output in enumerate(outputs):
                info = _describe(output)
                slot = tmp / str(index)
                if info["kind"] == "dir":
                    _copy_tree(output, slot, info["entries"])
                else:
                    _link_or_copy(output, slot)
                described.append(info)
            record = {"format": _FORMAT, "key": key, "outputs": described}
            (tmp / RECORD).write_text(json.dumps(record))
            entry.parent.mkdir(parents=True, exist_ok=True)
            os.rename(tmp, entry)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            # Another process stored the same key first (the rename found a
            # full folder): that entry is as good as ours.
            return (entry / RECORD).exists()
        return True

    def adopt(self, key: str, folder: Path, outputs: int) -> bool:
        """Make `folder` (under the store's tmp/, holding outputs 0..n-1) the entry of `key`.

        For outputs made elsewhere (the remote cache): recorded as `save`
        records them and moved into place by one rename, without copying.
        """
        entry = self.entry(key)
        if (entry / RECORD).exists():
            return True
        try:
            described = [_describe(folder / str(index)) for index in range(outputs)]
            record = {"format": _FORMAT, "key": key, "outputs": described}
            (folder / RECORD).write_text(json.dumps(record))
            entry.parent.mkdir(parents=True, exist_ok=True)
            os.rename(folder, entry)
        except OSError:
            return (entry / RECORD).exists()
        return True

    # restoring --------------------------------------------------------------

    def restore(
        self,
        key: str,
        outputs: Sequence[Path],
        repository: Repository | None = None,
        *,
        fresh: bool = False,
    ) -> bool:
        """Put a stored step's outputs in place; False (and the entry dropped) if unusable.

        A folder of the repository is published anew from the entry (see
        pakman.workspace.publication), never changed in place. `fresh`: the
        entry was just written by this process (`adopt`), so its files are
        not checked against its record again.
        """
        entry = self.entry(key)
        if not (entry / RECORD).exists() and self.packed(key).exists():
            if not self._unpack(key, len(outputs)):
                return False
            fresh = True  # made from the pack just now
        try:
            record = json.loads((entry / RECORD).read_text())
        except (OSError, ValueError):
            return False
        described = record.get("outputs", [])
        if record.get("format") != _FORMAT or len(described) != len(outputs):
            self.drop(key)
            return False
        if not fresh and not all(
            self._intact(entry / str(i), info) for i, info in enumerate(described)
        ):
            self.drop(key)
            return False
        for index, (output, info) in enumerate(zip(outputs, described, strict=True)):
            source = entry / str(index)
            if repository is not None and repository.holds(output) and info["kind"] == "dir":
                with repository.publish(output) as folder:
                    _copy_tree(source, folder, info["entries"])
                continue
            staging = output.with_name(f".{output.name}.restore")
            _remove(staging)
            output.parent.mkdir(parents=True, exist_ok=True)
            if info["kind"] == "dir":
                _copy_tree(source, staging, info["entries"])
            else:
                _link_or_copy(source, staging)
            _remove(output)
            os.replace(staging, output)
        os.utime(entry)
        return True

    @staticmethod
    def _intact(stored: Path, info: dict[str, Any]) -> bool:
        """The stored files are as they were saved (a hard-linked output edited in place is not)."""
        try:
            if info["kind"] == "file":
                st = stored.lstat()
                return (stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns) == (
                    info["mode"],
                    info["size"],
                    info["mtime_ns"],
                )
            for relative, kind, mode, size, mtime_ns in info["entries"]:
                st = (stored / relative).lstat()
                if kind == "f" and (stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns) != (
                    mode,
                    size,
                    mtime_ns,
                ):
                    return False
        except OSError:
            return False
        return True

    # housekeeping -----------------------------------------------------------

    def drop(self, key: str) -> None:
        shutil.rmtree(self.entry(key), ignore_errors=True)
        self.packed(key).unlink(missing_ok=True)

    def entries(self) -> list[EntryInfo]:
        found: list[EntryInfo] = []
        if not self.root.is_dir():
            return found
        for prefix in self.root.iterdir():
            if prefix.name == "tmp" or not prefix.is_dir():
                continue
            for entry in prefix.iterdir():
                if entry.name.endswith(PACK):
                    info = entry.stat()
                    key = entry.name.removesuffix(PACK)
                    found.append(EntryInfo(key, entry, info.st_size, info.st_mtime))
                    continue
                size = sum(st.st_size for _, st in _tree(entry) if stat.S_ISREG(st.st_mode))
                found.append(EntryInfo(entry.name, entry, size, entry.stat().st_mtime))
        return found

    def collect_garbage(
        self,
        *,
        max_age_days: float | None,
        max_bytes: int | None,
        dry_run: bool = False,
        now: float | None = None,
    ) -> tuple[list[EntryInfo], list[EntryInfo]]:
        """Remove entries unused for longer than `max_age_days`, then the least recently used
        until the rest fit in `max_bytes`; also leftovers of interrupted saves. Returns (removed, kept)."""
        now = time.time() if now is None else now
        entries = sorted(self.entries(), key=lambda e: e.last_used, reverse=True)
        removed: list[EntryInfo] = []
        kept: list[EntryInfo] = []
        total = 0
        for entry in entries:
            incomplete = not entry.path.name.endswith(PACK) and not (entry.path / RECORD).exists()
            too_old = max_age_days is not None and now - entry.last_used > max_age_days * 86400
            too_big = max_bytes is not None and total + entry.size > max_bytes
            if incomplete or too_old or too_big:
                removed.append(entry)
            else:
                kept.append(entry)
                total += entry.size
        if not dry_run:
            for entry in removed:
                if entry.path.name.endswith(PACK):
                    entry.path.unlink(missing_ok=True)
                else:
                    shutil.rmtree(entry.path, ignore_errors=True)
            shutil.rmtree(self.root / "tmp", ignore_errors=True)
        return removed, kept


def record_digests(record: Mapping[str, Any]) -> set[str]:
    """The blobs a (checked) ac record needs."""
    digests: set[str] = set()
    for output in record["outputs"]:
        if output["kind"] == "file":
            digests.add(output["digest"])
        else:
            digests.update(e[5] for e in output["entries"] if e[1] == "f")
    return digests


def _blob_size(blob: Blob) -> int:
    if isinstance(blob, bytes):
        return len(blob)
    if isinstance(blob, Slice):
        return blob.size
    return blob.stat().st_size


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
