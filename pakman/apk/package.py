"""Writing a signed .apk (v2) from a staged tree, and splitting subpackages off a tree.

A package is three gzip members in one file: the signature, the control tar
(`.PKGINFO` and install scripts) and the data tar (the files). The data
member is written first, streaming and compressed in parallel, because
`.PKGINFO` carries its SHA-256 (`datahash`); the control member is signed;
then signature, control and data are joined into a temporary file beside
the target, which is renamed into place.

Entries follow abuild: sorted in C-locale byte order of their paths (so
parents come before children), every directory has its own entry, owners
are root/root with uid/gid 0 unless `PackageInfo.owners` names others (the
names are stored with uid/gid 0, as abuild's tar owner map does; apk looks
the names up on the installed system and falls back to the numbers), every
mtime is the build date, modes are kept, and each regular file and symlink
carries an `APK-TOOLS.checksum.SHA1` pax record. A hard-linked file is
stored once; its other names are hard-link entries.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from pakman.apk.errors import PackageInputError
from pakman.apk.gzipper import DEFAULT_LEVEL, ParallelGzipWriter, check_level, gzip_bytes
from pakman.apk.keys import SigningKey
from pakman.apk.pkginfo import PackageInfo, check_info, installed_size, render_pkginfo
from pakman.apk.sign import signature_member
from pakman.apk.tarfmt import (
    DIRECTORY,
    END_OF_ARCHIVE,
    HARDLINK,
    MAX_FILE_SIZE,
    MAX_MTIME,
    REGULAR,
    SYMLINK,
    TarMember,
    member_bytes,
    member_header,
    padding,
    record_padding,
)
from pakman.errors import Diagnostic
from pakman.fileio import open_atomic

# Files up to this size are read once into memory; larger ones are read twice
# (hashed, then streamed) so memory does not grow with their size.
WHOLE_READ_LIMIT = 4 << 20
_CHUNK = 1 << 20
_CONTROL_CHARACTERS = frozenset(chr(c) for c in (*range(0x20), 0x7F))


@dataclass(frozen=True)
class TreeEntry:
    """One path of a staged tree, as scanned (lstat, symlinks not followed)."""

    path: str  # relative, '/'-separated, no trailing '/'
    kind: str  # "dir", "file" or "symlink"
    mode: int  # permission bits
    size: int
    device: int
    inode: int
    links: int


def _sort_key(entry: TreeEntry) -> bytes:
    return entry.path.encode()


def _path_problem(relative: str, kind: str) -> str | None:
    try:
        relative.encode()
    except UnicodeEncodeError:
        return "the name is not valid UTF-8"
    if _CONTROL_CHARACTERS.intersection(relative):
        return "the name contains control characters (apk ignores such entries)"
    if relative.startswith("."):
        return "apk ignores top-level names starting with '.'"
    if kind != "dir" and posixpath.basename(relative).startswith(".keep_"):
        return "apk skips files named .keep_*"
    return None


def _symlink_problem(relative: str, target: str) -> str | None:
    if target.startswith("/"):
        return f"symlink to the absolute path {target!r}"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(relative), target))
    if resolved == ".." or resolved.startswith("../"):
        return f"symlink {target!r} points outside the tree"
    return None


def scan_tree(tree: str | Path, *, allow_external_symlinks: bool = False) -> list[TreeEntry]:
    """Every path under `tree` in package order; refuses what apk cannot install faithfully.

    Refused, all reported at once: names apk ignores or mangles, sockets,
    devices and fifos, files of 8 GiB or more, and symlinks that are
    absolute or lead out of the tree (unless `allow_external_symlinks`).
    """
    root = Path(tree)
    if not root.is_dir():
        raise PackageInputError(f"{root}: the staged tree is not a folder")
    entries: list[TreeEntry] = []
    problems: list[str] = []
    pending = [""]
    while pending:
        prefix = pending.pop()
        with os.scandir(root / prefix if prefix else root) as listing:
            for item in listing:
                relative = f"{prefix}/{item.name}" if prefix else item.name
                info = item.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    kind = "dir"
                    pending.append(relative)
                elif stat.S_ISREG(info.st_mode):
                    kind = "file"
                elif stat.S_ISLNK(info.st_mode):
                    kind = "symlink"
                else:
                    problems.append(f"{relative}: only folders, files and symlinks can be packaged")
                    continue
                problem = _path_problem(relative, kind)
                if problem is None and kind == "file" and info.st_size > MAX_FILE_SIZE:
                    problem = "files of 8 GiB or more cannot be stored for apk"
                if problem is None and kind == "symlink" and not allow_external_symlinks:
                    problem = _symlink_problem(relative, os.readlink(item.path))
                if problem is not None:
                    problems.append(f"{relative!r}: {problem}")
                    continue
                entries.append(
                    TreeEntry(
                        relative,
                        kind,
                        stat.S_IMODE(info.st_mode),
                        info.st_size,
                        info.st_dev,
                        info.st_ino,
                        info.st_nlink,
                    )
                )
    if problems:
        raise PackageInputError([Diagnostic(str(root), 0, 0, "", p) for p in sorted(problems)])
    entries.sort(key=_sort_key)
    return entries


def resolve_builddate(builddate: int | None) -> int:
    """`builddate` when given, else SOURCE_DATE_EPOCH, else the current time.

    The result is a time stamp of every tar header, so it must lie in
    0..MAX_MTIME (apk reads no pax mtime record).
    """
    if builddate is not None:
        if not 0 <= builddate <= MAX_MTIME:
            raise PackageInputError(
                f"build date {builddate} is outside 0..{MAX_MTIME} (what a tar header holds)"
            )
        return builddate
    text = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return int(time.time())
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_MTIME:
        raise PackageInputError(
            f"SOURCE_DATE_EPOCH={text!r} is not a Unix time in 0..{MAX_MTIME} (whole seconds "
            "that fit a tar header)"
        )
    return int(text)


class _HashingSink:
    """Writes to a file and hashes what it writes."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.sha256 = hashlib.sha256()

    def __call__(self, data: bytes) -> None:
        self.sha256.update(data)
        self.handle.write(data)


def _read_whole(path: str, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        data = os.read(fd, size + 1)
        while len(data) < size + 1:
            more = os.read(fd, size + 1 - len(data))
            if not more:
                break
            data += more
    finally:
        os.close(fd)
    if len(data) != size:
        raise PackageInputError(f"{path}: the file changed size while it was being packed")
    return data


def _chunks(fd: int, size: int) -> Iterator[bytes]:
    left = size
    while left:
        data = os.read(fd, min(left, _CHUNK))
        if not data:
            break
        left -= len(data)
        yield data
    if left or os.read(fd, 1):
        raise PackageInputError(
            f"a file changed size while it was being packed ({size} bytes expected)"
        )


def _stream_large_file(path: str, member: TarMember, writer: ParallelGzipWriter) -> None:
    """Hash a large file, then write its header and stream its content (two reads, bounded memory)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        before = os.fstat(fd)
        sha1 = hashlib.sha1()
        for data in _chunks(fd, member.size):
            sha1.update(data)
        os.lseek(fd, 0, os.SEEK_SET)
        writer.write(member_header(replace(member, sha1=sha1.hexdigest())))
        for data in _chunks(fd, member.size):
            writer.write(data)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise PackageInputError(f"{path}: the file changed while it was being packed")
    writer.write(padding(member.size))


def write_data_tar(
    tree: str | Path,
    entries: list[TreeEntry],
    writer: ParallelGzipWriter,
    *,
    mtime: int,
    owners: Mapping[str, tuple[str, str]],
) -> int:
    """Write the data tar of `entries` to `writer`; returns the bytes of the regular files stored."""
    root = os.fspath(tree)
    first_name_of_inode: dict[tuple[int, int], str] = {}
    file_bytes = 0
    for entry in entries:
        uname, gname = owners.get(entry.path, ("root", "root"))
        path = os.path.join(root, entry.path)
        if entry.kind == "dir":
            member = TarMember(
                f"{entry.path}/", DIRECTORY, entry.mode, mtime, uname=uname, gname=gname
            )
            writer.write(member_header(member))
            continue
        if entry.kind == "symlink":
            target = os.readlink(path)
            member = TarMember(
                entry.path,
                SYMLINK,
                0o777,
                mtime,
                linkname=target,
                uname=uname,
                gname=gname,
                sha1=hashlib.sha1(target.encode()).hexdigest(),
            )
            writer.write(member_header(member))
            continue
        if entry.links > 1:
            inode = (entry.device, entry.inode)
            first = first_name_of_inode.setdefault(inode, entry.path)
            # apk finds a hard link's target through its folder, so a file at the
            # top level cannot be linked to: such a file is stored again instead
            if first != entry.path and "/" in first:
                member = TarMember(
                    entry.path,
                    HARDLINK,
                    entry.mode,
                    mtime,
                    linkname=first,
                    uname=uname,
                    gname=gname,
                )
                writer.write(member_header(member))
                continue
        file_bytes += entry.size  # as abuild counts: each inode once, since links are not counted
        if entry.size > WHOLE_READ_LIMIT:
            member = TarMember(
                entry.path, REGULAR, entry.mode, mtime, size=entry.size, uname=uname, gname=gname
            )
            _stream_large_file(path, member, writer)
        else:
            content = _read_whole(path, entry.size)
            member = TarMember(
                entry.path,
                REGULAR,
                entry.mode,
                mtime,
                size=entry.size,
                uname=uname,
                gname=gname,
                sha1=hashlib.sha1(content).hexdigest(),
            )
            writer.write(member_header(member) + content + padding(entry.size))
    writer.write(END_OF_ARCHIVE + record_padding(writer.bytes_in + len(END_OF_ARCHIVE)))
    return file_bytes


def control_tar(pkginfo: str, scripts: Mapping[str, bytes], mtime: int) -> bytes:
    """The control tar: `.PKGINFO` (0644), then the scripts as `.<name>` (0755); no end blocks."""
    data = pkginfo.encode()
    parts = [member_bytes(TarMember(".PKGINFO", REGULAR, 0o644, mtime, size=len(data)), data)]
    for name, text in scripts.items():
        member = TarMember(f".{name}", REGULAR, 0o755, mtime, size=len(text))
        parts.append(member_bytes(member, text))
    return b"".join(parts)


def _copy_file(source: BinaryIO, target: BinaryIO) -> None:
    source.seek(0)
    target.flush()
    size = os.fstat(source.fileno()).st_size
    offset = 0
    try:
        while offset < size:
            copied = os.copy_file_range(source.fileno(), target.fileno(), size - offset, offset)
            if copied == 0:
                break
            offset += copied
        target.seek(0, os.SEEK_END)
    except OSError:  # copy_file_range unsupported here: copy through user space
        source.seek(offset)
        target.seek(0, os.SEEK_END)
        shutil.copyfileobj(source, target, _CHUNK)
        return
    if offset != size:
        raise OSError(f"copied {offset} of {size} bytes of the data member")


def write_package(
    tree: str | Path,
    info: PackageInfo,
    out_dir: str | Path,
    key: SigningKey,
    *,
    level: int = DEFAULT_LEVEL,
    threads: int | None = None,
    allow_external_symlinks: bool = False,
) -> Path:
    """Pack `tree` as `<out_dir>/<name>-<version>-r<release>.apk`, signed with `key`; returns its path.

    Streams: memory does not grow with the size of the tree's files. `level`
    is the deflate level (1-9, as for gzip) of the data member; `threads`
    defaults to the CPUs available. The file appears atomically.
    """
    check_info(info)
    check_level(level)
    builddate = resolve_builddate(info.builddate)  # refused here, before anything is written
    entries = scan_tree(tree, allow_external_symlinks=allow_external_symlinks)
    present = {entry.path for entry in entries}
    missing_owned = sorted(set(info.owners) - present)
    if missing_owned:
        raise PackageInputError(
            [
                Diagnostic(
                    f"package {info.name}", 0, 0, f"owners[{path!r}]", "no such path in the tree"
                )
                for path in missing_owned
            ]
        )
    scripts = info.script_bytes()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # anonymous scratch file beside the target: gone even if this process is killed
    with tempfile.TemporaryFile(dir=out_dir) as data_file:
        sink = _HashingSink(data_file)
        writer = ParallelGzipWriter(sink, level=level, threads=threads)
        try:
            file_bytes = write_data_tar(tree, entries, writer, mtime=builddate, owners=info.owners)
        except BaseException:
            writer.abort()
            raise
        writer.close()
        size = installed_size(file_bytes, bool(entries), bool(scripts))
        pkginfo = render_pkginfo(
            info, builddate=builddate, size=size, datahash=sink.sha256.hexdigest()
        )
        control = gzip_bytes(control_tar(pkginfo, scripts, builddate))
        signature = signature_member(key, control, builddate)
        target = out_dir / info.filename
        with open_atomic(target) as package:
            package.write(signature)
            package.write(control)
            _copy_file(data_file, package)
    return target


# ----------------------------------------------------------------------------
# Subpackages


@dataclass(frozen=True)
class Split:
    """A subpackage made by moving some paths of the main package's tree (like abuild's amove).

    `install_if` entries may use {name}, {version}, {release} and
    {full_version} of the main package. `arch` None keeps the main package's.
    """

    name_suffix: str
    paths: tuple[str, ...]
    description_suffix: str = ""
    install_if: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()
    arch: str | None = None


# abuild's default_openrc; abuild makes -openrc subpackages noarch
OPENRC = Split(
    name_suffix="-openrc",
    paths=("etc/conf.d", "etc/init.d", "etc/user/conf.d", "etc/user/init.d"),
    description_suffix=" (OpenRC init scripts)",
    install_if=("openrc", "{name}={full_version}"),
    arch="noarch",
)


def _owners_present(
    owners: Mapping[str, tuple[str, str]], tree: Path
) -> dict[str, tuple[str, str]]:
    return {path: owner for path, owner in owners.items() if os.path.lexists(tree / path)}


def split_package(
    tree: str | Path, sub_tree: str | Path, info: PackageInfo, split: Split
) -> tuple[PackageInfo, PackageInfo | None]:
    """Move `split.paths` from `tree` into `sub_tree`; returns (main info, subpackage info or None).

    Parent folders are created in `sub_tree` with the modes they have in
    `tree`; folders left empty in `tree` are removed (as `rmdir -p` does in
    abuild). Owners follow their paths. None when no path of the split exists.
    """
    tree, sub_tree = Path(tree), Path(sub_tree)
    if sub_tree.exists() and any(sub_tree.iterdir()):
        raise PackageInputError(f"{sub_tree}: the subpackage tree must be empty")
    moved = False
    for relative in split.paths:
        source = tree / relative
        if not os.path.lexists(source):
            continue
        moved = True
        parts = Path(relative).parts
        for depth in range(1, len(parts)):
            parent = Path(*parts[:depth])
            created = sub_tree / parent
            if not created.exists():
                created.mkdir(parents=True)
                os.chmod(created, stat.S_IMODE((tree / parent).stat().st_mode))
        sub_tree.mkdir(parents=True, exist_ok=True)
        shutil.move(os.fspath(source), os.fspath(sub_tree / relative))
        parent = source.parent
        while parent != tree and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    main = replace(info, owners=_owners_present(info.owners, tree))
    if not moved:
        return main, None
    fields = {
        "name": info.name,
        "version": info.version,
        "release": info.release,
        "full_version": info.full_version,
    }
    sub = PackageInfo(
        name=info.name + split.name_suffix,
        version=info.version,
        release=info.release,
        arch=split.arch or info.arch,
        description=info.description + split.description_suffix,
        url=info.url,
        license=info.license,
        origin=info.origin_name,
        commit=info.commit,
        maintainer=info.maintainer,
        packager=info.packager,
        depends=split.depends,
        install_if=tuple(item.format(**fields) for item in split.install_if),
        owners=_owners_present(info.owners, sub_tree),
        builddate=info.builddate,
    )
    return main, sub
