"""The repository index, `<repo>/<arch>/APKINDEX.tar.gz`: reading packages, writing, reusing.

An index is two gzip members: a signature member (as for a package, over the
SHA-1 of the second member) and a tar holding `DESCRIPTION` (optional) and
`APKINDEX`, ending with end-of-archive blocks. `APKINDEX` has one block per
package, sorted by name (case-insensitively first, as apk does) then by
version, with the fields apk writes (package.c, apk_pkg_write_index_header).

Architecture: apk downloads `<repo>/<A:>/<name>-<version>.apk`, taking the
folder from the index's `A:` field. So a package whose `.PKGINFO` says
`arch = noarch` is listed with `A:` set to the folder it sits in (abuild
runs `apk index --rewrite-arch $CARCH` for the same reason); its identity
`C:` is unchanged because `.PKGINFO` is not rewritten. Any other package
must sit in the folder of its own arch.

Reuse: a small cache file, kept where the caller says and never in the
folder itself (which is published), keeps each package's block of the index, as rendered for that folder, with
the file's size, mtime, ctime, inode and device. A block is reused only when
all of these are unchanged and the file had not changed for a while before
it was read (so a rewrite within the file system's time-stamp granularity
cannot go unnoticed); otherwise the package is read again: its control
section, and the hash of its data (which must match `datahash`, so a
truncated or damaged file is refused). Reusing a block costs a stat and no
parsing: at 400 packages the index of one new package takes a few ms.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from pakman.alpine import ARCHITECTURES
from pakman.apk.errors import ArchiveError, PackageInputError
from pakman.apk.gzipper import GzipMemberReader, gzip_bytes
from pakman.apk.keys import SigningKey
from pakman.apk.package import resolve_builddate
from pakman.apk.reader import (
    PackageControl,
    control_from,
    open_regular_file,
    parse_index_text,
    read_signed_start,
)
from pakman.apk.sign import signature_member
from pakman.apk.tarfmt import END_OF_ARCHIVE, REGULAR, TarMember, member_bytes
from pakman.apk.version import version_key
from pakman.errors import Diagnostic
from pakman.fileio import write_atomic

INDEX_FILE = "APKINDEX.tar.gz"
CACHE_FILE = ".pakman-index-cache.json"
_CACHE_FORMAT = 2
# A file is trusted from the cache only if it had not changed for this long before it was read.
RACY_MARGIN_NS = 2_000_000_000


@dataclass(frozen=True)
class IndexEntry:
    """What the index says about one package."""

    identity: str  # C: Q1 + base64(SHA-1 of the control member)
    name: str
    version: str  # with -rN
    arch: str  # as in .PKGINFO (noarch stays noarch here)
    size: int  # of the .apk file
    installed_size: int
    description: str = ""
    url: str = ""
    license: str = ""
    origin: str = ""
    maintainer: str = ""
    builddate: int = 0
    commit: str = ""
    provider_priority: int = 0
    depends: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    install_if: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        """The file name apk fetches: `<name>-<version>.apk`."""
        return f"{self.name}-{self.version}.apk"

    @classmethod
    def from_control(cls, control: PackageControl, file_size: int) -> IndexEntry:
        """The entry of a package read with `read_package_control`."""

        def number(key: str) -> int:
            text = control.first(key, "0") or "0"
            if not (text.isascii() and text.isdigit()):
                raise ArchiveError(f".PKGINFO: {key} = {text!r} is not a number")
            return int(text)

        def words(key: str) -> tuple[str, ...]:
            return tuple(word for value in control.values(key) for word in value.split())

        name, version = control.first("pkgname"), control.first("pkgver")
        if not name or not version:
            raise ArchiveError(".PKGINFO lacks pkgname or pkgver")
        return cls(
            identity=control.identity,
            name=name,
            version=version,
            arch=control.first("arch"),
            size=file_size,
            installed_size=number("size"),
            description=control.first("pkgdesc"),
            url=control.first("url"),
            license=control.first("license"),
            origin=control.first("origin"),
            maintainer=control.first("maintainer"),
            builddate=number("builddate"),
            commit=control.first("commit"),
            provider_priority=number("provider_priority"),
            depends=words("depend"),
            provides=words("provides"),
            install_if=words("install_if"),
        )

    @classmethod
    def from_fields(cls, fields: list[tuple[str, str]]) -> IndexEntry:
        """The entry one APKINDEX block describes (the inverse of `render`; unknown letters are skipped)."""
        values = dict(fields)  # a repeated letter: the last one counts, as apk reads it

        def number(letter: str) -> int:
            text = values.get(letter, "0") or "0"
            if not (text.isascii() and text.isdigit()):
                raise ArchiveError(f"APKINDEX: {letter}:{text!r} is not a number")
            return int(text)

        def words(letter: str) -> tuple[str, ...]:
            return tuple(values.get(letter, "").split())

        name, version = values.get("P", ""), values.get("V", "")
        if not name or not version:
            raise ArchiveError(f"APKINDEX: an entry without P: or V: ({name or version or '?'})")
        return cls(
            identity=values.get("C", ""),
            name=name,
            version=version,
            arch=values.get("A", ""),
            size=number("S"),
            installed_size=number("I"),
            description=values.get("T", ""),
            url=values.get("U", ""),
            license=values.get("L", ""),
            origin=values.get("o", ""),
            maintainer=values.get("m", ""),
            builddate=number("t"),
            commit=values.get("c", ""),
            provider_priority=number("k"),
            depends=words("D"),
            provides=words("p"),
            install_if=words("i"),
        )

    def render(self, folder_arch: str | None = None) -> str:
        """The APKINDEX block (with its ending empty line); noarch becomes `folder_arch`."""
        arch = folder_arch if folder_arch and self.arch == "noarch" else self.arch
        lines = [f"C:{self.identity}", f"P:{self.name}", f"V:{self.version}"]
        if arch:
            lines.append(f"A:{arch}")
        lines += [
            f"S:{self.size}",
            f"I:{self.installed_size}",
            f"T:{self.description}",
            f"U:{self.url}",
            f"L:{self.license}",
        ]
        if self.origin:
            lines.append(f"o:{self.origin}")
        if self.maintainer:
            lines.append(f"m:{self.maintainer}")
        if self.builddate:
            lines.append(f"t:{self.builddate}")
        if self.commit:
            lines.append(f"c:{self.commit}")
        if self.provider_priority:
            lines.append(f"k:{self.provider_priority}")
        for letter, values in (("D", self.depends), ("p", self.provides), ("i", self.install_if)):
            if values:
                lines.append(f"{letter}:{' '.join(values)}")
        return "\n".join(lines) + "\n\n"


class DataMismatchError(ArchiveError):
    """A package's data is not what its `.PKGINFO` `datahash` says (truncated or corrupted)."""


def read_index_entry(path: str | Path) -> IndexEntry:
    """The index entry of one package file, whose data must match its `datahash`.

    The signature and control members are read; the rest of the file (the
    data member) is hashed as stored, not decompressed, and must have the
    SHA-256 that `.PKGINFO` records as `datahash`: a truncated or damaged
    package raises DataMismatchError, and one without `datahash` cannot be
    checked, so it is refused too.
    """
    with open_regular_file(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        members = GzipMemberReader(handle)
        control = control_from(read_signed_start(members))
        entry = IndexEntry.from_control(control, size)
        datahash = hashlib.sha256()
        data_size = members.hash_rest((datahash,))
    expected = control.first("datahash").lower()
    if not expected:
        raise DataMismatchError(".PKGINFO has no datahash, so the data cannot be checked")
    if not data_size or expected != datahash.hexdigest():
        raise DataMismatchError("the data does not match its datahash (truncated or corrupted)")
    return entry


def parse_index_entries(text: str) -> list[IndexEntry]:
    """The entries of an APKINDEX text (as `index_text` writes it, or Alpine's own)."""
    return [IndexEntry.from_fields(block) for block in parse_index_text(text)]


_NAME_FIELD = re.compile(r"^P:(.*)$", re.MULTILINE)
_VERSION_FIELD = re.compile(r"^V:(.*)$", re.MULTILINE)


def index_filenames(text: str) -> list[str]:
    """The file names (`<P:>-<V:>.apk`) of the packages an APKINDEX text lists, in its order.

    `parse_index_entries` without building the entries: signing 400 packages
    needs only their names.
    """
    names = []
    for block in text.split("\n\n"):
        if not block.strip("\n"):
            continue
        name, version = _NAME_FIELD.search(block), _VERSION_FIELD.search(block)
        if not name or not version or not name[1] or not version[1]:
            raise ArchiveError("APKINDEX: an entry without P: or V:")
        names.append(f"{name[1]}-{version[1]}.apk")
    return names


def user_cache_file(arch_dir: str | Path) -> Path | None:
    """Where `pakman index` keeps a folder's reuse cache (None: nowhere to keep it).

    `$XDG_CACHE_HOME/pakman/index/` (default `~/.cache`), named after the
    folder's absolute path (not resolved: a repository's folder is a link
    that moves at each publication). Never in the folder, which is published.
    """
    base = os.environ.get("XDG_CACHE_HOME", "")
    try:
        root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    except RuntimeError:  # no home folder
        return None
    digest = hashlib.sha256(os.fsencode(os.path.abspath(arch_dir))).hexdigest()[:32]
    return root / "pakman" / "index" / f"{digest}.json"


def _apk_order(name: str, version: str) -> tuple[str, str, Any]:
    return (name.lower(), name, version_key(version))


def sort_entries(entries: list[IndexEntry]) -> list[IndexEntry]:
    """Entries in apk's index order: by name (case-insensitive, then exact), then version."""
    return sorted(entries, key=lambda e: _apk_order(e.name, e.version))


def index_bytes(text: str, key: SigningKey, mtime: int, description: str | None = None) -> bytes:
    """A signed APKINDEX.tar.gz holding `text` (and `description`)."""
    parts = []
    if description is not None:
        data = description.encode()
        parts.append(
            member_bytes(TarMember("DESCRIPTION", REGULAR, 0o644, mtime, size=len(data)), data)
        )
    data = text.encode()
    parts.append(member_bytes(TarMember("APKINDEX", REGULAR, 0o644, mtime, size=len(data)), data))
    parts.append(END_OF_ARCHIVE)
    # gzip's default level: level 9 took longer for hardly a smaller index.
    member = gzip_bytes(b"".join(parts), level=6)
    return signature_member(key, member, mtime) + member


@dataclass(frozen=True)
class IndexReport:
    """What `write_index` did."""

    path: Path
    packages: int
    reused: int  # entries taken from the cache instead of reading the package


def _stat_key(stat: os.stat_result, immutable: bool = False) -> list[int]:
    # ctime catches an edit that kept size and mtime; files that are only ever
    # replaced, never edited (pakman's own packages), are known by inode and
    # mtime alone, so hard-linking them elsewhere (which changes ctime) is free.
    ctime = 0 if immutable else stat.st_ctime_ns
    return [stat.st_size, stat.st_mtime_ns, ctime, stat.st_ino, stat.st_dev]


# A cache record: [*_stat_key, read_ns, name, version, arch, block]
_READ_NS, _NAME, _VERSION, _ARCH, _BLOCK = 5, 6, 7, 8, 9


def _load_cache(path: Path, folder_arch: str) -> dict[str, Any]:
    """The cache's records by file name (none if it is unreadable or for another folder)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if (
        not isinstance(data, dict)
        or data.get("format") != _CACHE_FORMAT
        or data.get("arch") != folder_arch  # blocks are rendered for their folder
    ):
        return {}
    packages = data.get("packages")
    return packages if isinstance(packages, dict) else {}


def _reusable(record: Any, stat_key: list[int], changed_ns: int) -> TypeGuard[list[Any]]:
    """The record was made from this very file, read well after it last changed."""
    return (
        isinstance(record, list)
        and len(record) == _BLOCK + 1
        and record[:_READ_NS] == stat_key
        and isinstance(record[_READ_NS], int)
        and changed_ns < record[_READ_NS] - RACY_MARGIN_NS
        and all(isinstance(field, str) for field in record[_NAME:])
    )


def write_index(
    arch_dir: str | Path,
    key: SigningKey,
    *,
    description: str | None = None,
    builddate: int | None = None,
    cache: Path | None = None,
) -> IndexReport:
    """Write a signed `APKINDEX.tar.gz` for the `*.apk` files in `arch_dir` (named after its arch).

    Nothing else is written there. Entries of unchanged packages come from
    the reuse cache file `cache` (none: every package is read). A package whose
    file name is not `<pkgname>-<pkgver>.apk`, or whose arch is neither the
    folder's nor noarch, is an error (apk could not fetch it).
    """
    text, report = index_text(arch_dir, cache=cache)
    write_atomic(report.path, index_bytes(text, key, resolve_builddate(builddate), description))
    return report


def index_text(
    arch_dir: str | Path, *, immutable: bool = False, cache: Path | None = None
) -> tuple[str, IndexReport]:
    """The APKINDEX text for the `*.apk` files in `arch_dir`, and what it took.

    The first half of `write_index`: it reads (or reuses) every package's
    entry and checks that apk could fetch it; signing is the second half.
    `immutable` says the files are never edited in place (only replaced);
    `cache` is the reuse cache's file.
    """
    arch_dir = Path(arch_dir)
    folder_arch = arch_dir.resolve().name
    if not arch_dir.is_dir():
        raise PackageInputError(f"{arch_dir}: not a folder")
    if folder_arch not in ARCHITECTURES or folder_arch == "noarch":
        raise PackageInputError(
            f"{arch_dir}: the folder must be named after an architecture "
            f"({', '.join(a for a in ARCHITECTURES if a != 'noarch')}); noarch packages "
            "go into the folder of each real architecture"
        )
    known = {} if cache is None else _load_cache(cache, folder_arch)
    new_cache: dict[str, list[Any]] = {}
    problems: list[str] = []
    reused = 0
    # One directory read and one stat per package: at 400 packages, pathlib's
    # glob, sorting and a second stat each cost more than the index itself.
    with os.scandir(arch_dir) as found:
        packages = sorted(  # by name: problems are told in a stable order
            (e for e in found if e.name.endswith(".apk") and not e.name.startswith(".")),
            key=lambda e: e.name,
        )
    for found_entry in packages:
        if not found_entry.is_file():
            continue
        name = found_entry.name
        stat = found_entry.stat()
        stat_key = _stat_key(stat, immutable)
        changed_ns = stat.st_mtime_ns if immutable else max(stat.st_mtime_ns, stat.st_ctime_ns)
        cached = known.get(name)
        record: list[Any]
        if _reusable(cached, stat_key, changed_ns):
            record = cached
            reused += 1
        else:
            path = arch_dir / name
            read_ns = time.time_ns()
            try:
                entry = read_index_entry(path)
            except DataMismatchError as exc:
                problems.append(f"{name}: {exc}")
                continue
            except ArchiveError as exc:
                problems.append(f"{name}: cannot read the package: {exc}")
                continue
            if _stat_key(path.stat(), immutable) != stat_key:
                problems.append(f"{name}: the file changed while it was read")
                continue
            block = entry.render(folder_arch)
            record = [*stat_key, read_ns, entry.name, entry.version, entry.arch, block]
        new_cache[name] = record
        package_name, version, arch = record[_NAME], record[_VERSION], record[_ARCH]
        if name != f"{package_name}-{version}.apk":
            problems.append(
                f"{name}: .PKGINFO says {package_name} {version}, so apk would fetch "
                f"{package_name}-{version}.apk"
            )
        if arch not in (folder_arch, "noarch"):
            problems.append(f"{name}: arch {arch!r} does not belong in {folder_arch}/")
    if problems:
        raise PackageInputError([Diagnostic(str(arch_dir), 0, 0, "", p) for p in problems])
    if cache is not None and new_cache != known:
        cache_text = json.dumps(
            {"format": _CACHE_FORMAT, "arch": folder_arch, "packages": new_cache}, sort_keys=True
        )
        with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
            write_atomic(cache, cache_text.encode() + b"\n", durable=False)
    records = sorted(new_cache.values(), key=lambda r: _apk_order(r[_NAME], r[_VERSION]))
    text = "".join(record[_BLOCK] for record in records)
    return text, IndexReport(arch_dir / INDEX_FILE, len(records), reused)
