"""Fingerprints of an app's source tree, by content, with a stat cache.

A file is hashed only when its (size, mtime_ns, inode) differ from what the
cache under `.pakman/` remembers, so a touched file or a fresh checkout of
the same commit is hashed at most once, and an unchanged tree costs one
`stat` per file. The fingerprint itself depends only on paths, file kinds,
the executable bit and contents: never on times or absolute paths.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pakman.errors import ConfigError, Diagnostic
from pakman.fileio import confined, leads_outside, read_regular, write_atomic

# Never part of an app's source: VCS data, pakman's own output, and the
# configuration itself (its parts reach the steps that read them through
# their keys, so editing a hook does not rebuild the app).
ALWAYS_IGNORED = (".git", ".hg", ".svn", ".pakman", ".apk", "instellar.yml")
IGNORE_FILE = ".pakmanignore"
IGNORE_MAX_BYTES = 1 << 20  # a list of patterns; anything this large is not one

# What a file's lstat says that matters: a change to any of these (ctime
# included, so chmod and touch count) means the file must be looked at again.
Signature = tuple[int, int, int, int, int]
Watched = tuple[str, "Signature | None"]  # a path and its signature, None when absent
# Many watched paths as the plan keeps them: the paths joined by NUL, and their
# signatures as int64s, five a path (zeros for an absent path). A str and a
# bytes are read back far faster than as many tuples of tuples.
Packed = tuple[str, bytes]
_INO = (1 << 63) - 1  # an inode number is unsigned: an int64 keeps all but its top bit
_ABSENT = (0, 0, 0, 0, 0)
# Far beyond any real source tree, and far from the interpreter's recursion
# limit (the walk and the copies recurse per folder).
MAX_TREE_DEPTH = 256
_CACHE_VERSION = 2  # 2: JSON (1 was a pickle)


class SourceFile(NamedTuple):
    """One entry of a source tree (a tuple: tens of thousands are cached and reloaded)."""

    path: str  # relative, '/'-separated
    kind: str  # "f" file, "l" symlink, "d" empty directory
    executable: bool
    digest: str  # sha256 of the content, or of the link target


@dataclass(frozen=True)
class SourceTree:
    """What the build step copies, and the hash of all of it."""

    root: Path
    files: tuple[SourceFile, ...]
    fingerprint: str


class IgnoreRules:
    """`.pakmanignore`: one glob a line, `#` comments; `/x` anchors at the app root, `x/` matches folders only."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = [p.strip() for p in patterns if p.strip() and not p.strip().startswith("#")]

    @classmethod
    def for_app(cls, root: Path) -> IgnoreRules:
        return cls(read_ignore_file(root / IGNORE_FILE, root))

    def ignored(self, relpath: str, is_dir: bool) -> bool:
        name = relpath.rsplit("/", 1)[-1]
        if name in ALWAYS_IGNORED and "/" not in relpath:
            return True
        for pattern in self.patterns:
            folder_only = pattern.endswith("/")
            pattern = pattern.rstrip("/")
            if folder_only and not is_dir:
                continue
            if pattern.startswith("/"):
                if fnmatch.fnmatchcase(relpath, pattern[1:]):
                    return True
            elif fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(relpath, pattern):
                return True
        return False


_StatFile = tuple[int, dict[str, tuple[int, int, int, str]]]


def read_ignore_file(path: Path, root: Path) -> list[str]:
    """The lines of a `.pakmanignore` ([] when there is none); ConfigError when it is not UTF-8 text."""
    confined(path, root, IGNORE_FILE)
    try:
        raw = read_regular(path, IGNORE_MAX_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise ConfigError(Diagnostic(str(path), 0, 0, "", f"cannot read: {exc.strerror}")) from None
    if len(raw) > IGNORE_MAX_BYTES:
        raise ConfigError(
            Diagnostic(str(path), 0, 0, "", "the file is too large; the limit is 1 MiB")
        )
    try:
        return raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            Diagnostic(
                str(path), line, column, "", f"not UTF-8 text: invalid byte 0x{raw[exc.start]:02x}"
            )
        ) from None


class StatCache:
    """Remembers (size, mtime_ns, inode) -> digest per path, in one file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, tuple[int, int, int, str]] = {}
        self.dirty = False
        self.hashed = 0  # files actually read, for tests and benchmarks
        if path is not None:
            from pakman.workspace import datafile

            # Data only, checked as it is read: a damaged or foreign file is a miss.
            try:
                version, entries = datafile.loads(path.read_bytes(), _StatFile)
            except (OSError, datafile.Damaged):
                return
            if version == _CACHE_VERSION:
                self.entries = entries

    def digest(self, key: str, full_path: str, st: os.stat_result) -> str:
        known = self.entries.get(key)
        if known is not None and known[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
            return known[3]
        value = file_sha256(full_path)
        self.hashed += 1
        self.entries[key] = (st.st_size, st.st_mtime_ns, st.st_ino, value)
        self.dirty = True
        return value

    def save(self) -> None:
        if self.path is not None and self.dirty:
            from pakman.workspace import datafile

            write_atomic(self.path, datafile.dumps((_CACHE_VERSION, self.entries)), durable=False)
            self.dirty = False


def signature(st: os.stat_result) -> Signature:
    return (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def watch(path: str | Path) -> Watched:
    """A path as it is now, to tell later whether it changed."""
    try:
        return (str(path), signature(os.lstat(path)))
    except (FileNotFoundError, NotADirectoryError):
        return (str(path), None)


def pack(watched: Iterable[Watched]) -> Packed:
    """Watched paths packed for the plan (see `Packed`)."""
    names: list[str] = []
    values = array("q")
    for path, known in watched:
        names.append(path)
        if known is None:
            values.extend(_ABSENT)
        else:
            mode, ino, size, mtime, ctime = known
            values.extend((mode, ino & _INO, size, mtime, ctime))
    return "\0".join(names), values.tobytes()


def unpack(packed: Packed) -> list[Watched]:
    """The watched paths of a packed list, with their signatures (None when absent)."""
    names, data = packed
    if not data:
        return []
    values = array("q")
    values.frombytes(data)
    result: list[Watched] = []
    for number, path in enumerate(names.split("\0")):
        mode, ino, size, mtime, ctime = values[5 * number : 5 * number + 5]
        result.append((path, None if mode == 0 else (mode, ino, size, mtime, ctime)))
    return result


def unchanged(packed: Packed) -> bool:
    """True when every watched path is exactly as it was (one lstat each)."""
    names, expected = packed
    if not expected:
        return True
    values = array("q")
    add = values.extend
    lstat = os.lstat
    for path in names.split("\0"):
        try:
            st = lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            add(_ABSENT)
            continue
        add((st.st_mode, st.st_ino & _INO, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return values.tobytes() == expected


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's content, read in chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def fingerprint_tree(
    root: Path, cache: StatCache, *, cache_prefix: str = "", seen: list[Watched] | None = None
) -> SourceTree:
    """Walk `root` (without following symlinks), hashing what the build would copy.

    `seen` collects every folder and file looked at, with its signature, so a
    later run can tell with one lstat each whether anything changed.
    """
    rules = IgnoreRules.for_app(root)
    files: list[SourceFile] = []
    for relpath, full, st in _walk(str(root), "", rules, seen, 0):
        mode = st.st_mode
        if _not_utf8(relpath):
            # Package formats and logs need text: tar's PAX names are UTF-8.
            raise _refused(full, "its name is not UTF-8 text; rename it")
        if stat.S_ISLNK(mode):
            target = os.readlink(full)
            # A link may point anywhere inside the app; one leading out of it
            # would let a build, collect or package read what it names.
            outside = leads_outside(full, root)
            if outside is not None:
                raise _refused(
                    full,
                    f"a symbolic link to {_shown(str(outside))}, outside the app; "
                    "pakman reads nothing outside the app",
                )
            if _not_utf8(target):
                raise _refused(full, "a symbolic link whose target is not UTF-8 text")
            files.append(
                SourceFile(relpath, "l", False, hashlib.sha256(target.encode()).hexdigest())
            )
        elif stat.S_ISDIR(mode):
            files.append(SourceFile(relpath, "d", False, ""))
        else:
            digest = cache.digest(cache_prefix + relpath, full, st)
            files.append(SourceFile(relpath, "f", bool(mode & 0o111), digest))
    files.sort(key=lambda f: f.path)
    hasher = hashlib.sha256()
    for f in files:
        hasher.update(f"{f.path}\0{f.kind}{int(f.executable)}\0{f.digest}\n".encode())
    return SourceTree(root, tuple(files), hasher.hexdigest())


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode keeps bytes that are not UTF-8 as surrogates
        return True
    return False


def _shown(path: str) -> str:
    """A path as printable text: bytes that are not UTF-8 and control characters escaped."""
    out = []
    for char in path:
        if "\udc80" <= char <= "\udcff":  # a byte os.fsdecode kept
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif not char.isprintable():
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)


def _refused(path: str, message: str) -> ConfigError:
    return ConfigError(Diagnostic(_shown(path), 0, 0, "", message))


def _walk(
    top: str, prefix: str, rules: IgnoreRules, seen: list[Watched] | None, depth: int
) -> Iterator[tuple[str, str, os.stat_result]]:
    """Regular files, symlinks and empty folders under `top`; special files are skipped."""
    if depth > MAX_TREE_DEPTH:
        where = prefix if len(prefix) <= 60 else prefix[:60] + "..."
        raise _refused(
            top[: len(top) - len(prefix)],
            f"the source tree is nested more than {MAX_TREE_DEPTH} folders deep ({where})",
        )
    if seen is not None:
        seen.append(watch(top))  # a folder's times change when entries come or go
    with os.scandir(top) as entries:
        listing = sorted(entries, key=lambda e: e.name)
    if not listing and prefix:
        yield prefix.rstrip("/"), top, os.lstat(top)
    for entry in listing:
        relpath = prefix + entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if rules.ignored(relpath, is_dir):
            continue
        if is_dir:
            yield from _walk(entry.path, relpath + "/", rules, seen, depth + 1)
        elif entry.is_file(follow_symlinks=False) or entry.is_symlink():
            st = entry.stat(follow_symlinks=False)
            if seen is not None:
                seen.append((entry.path, signature(st)))
            yield relpath, entry.path, st
