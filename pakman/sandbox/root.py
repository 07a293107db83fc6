"""Installing a closure of .apk files into a root, as apk 2.14 does, and keeping it by its key.

For each package, in the order given (dependencies first), as apk's
database.c does: the `.pre-install` script runs, then the data member is
extracted (directories with their modes and owners, files with modes,
owners and times, symlinks kept, hard links made), then `.post-install`
runs. Scripts are written to `lib/apk/exec/` and run inside the root under
bubblewrap with apk's environment (`PATH=/usr/sbin:/usr/bin:/sbin:/bin`,
argv `<type> <version>`). After all packages, triggers fire: each package
whose `triggers` globs match a directory of the root runs its `.trigger`
script with those directories (on a first install apk fires them for every
matching directory). Then `lib/apk/db/installed`, `scripts.tar` and
`triggers` are written in apk's formats, with `etc/apk/world`, `arch`,
`repositories` and `keys/`, so `apk` inside the root sees what is installed.

Owners: user and group names are looked up in the root's own
`/etc/passwd` and `/etc/group` (after the scripts that may add them), else
the numbers stored are used. Files are given those owners only when this
process runs as root; otherwise they belong to the current user, whom
bubblewrap maps to root inside the sandbox.

Refused (RootError): member names that are absolute, contain `.` or `..`
components or control characters, files whose folder has no entry in the
package ("no dirent in archive"), hard links to files the package did not
store before, device files, a file another package installed (unless one
replaces the other or both have the same origin, as apk allows), a failing
script. Folders that are symlinks in the root (`var/run -> /run`) are
followed inside the root, never out of it.

The packages must have been checked (signature, identity, `datahash`)
before: this module trusts the files it is given.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fnmatch
import os
import queue
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pakman.apk.errors import ArchiveError
from pakman.apk.gzipper import GzipMemberReader
from pakman.apk.index import IndexEntry
from pakman.apk.reader import PackageControl, control_from, read_signed_start
from pakman.apk.tarfmt import (
    CHECKSUM_RECORD,
    END_OF_ARCHIVE,
    REGULAR,
    TarReader,
)
from pakman.errors import PakmanError
from pakman.fileio import remove_tree
from pakman.sandbox.bwrap import MOUNT_FILES, MOUNT_POINTS, Sandbox

ROOT_FOLDER = "root"  # <store>/<digest>/root is the root; beside it, nothing else yet
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_IS_ROOT = os.geteuid() == 0
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_SCRIPT_ORDER = ("pre-install", "post-install", "trigger")
_APK_SCRIPTS = (
    "pre-install",
    "post-install",
    "pre-deinstall",
    "post-deinstall",
    "pre-upgrade",
    "post-upgrade",
    "trigger",
)


class RootError(PakmanError):
    """A root could not be made: a package that cannot be installed, or a script that failed."""


@dataclass(frozen=True)
class RootSpec:
    """What a root holds: packages in install order, and apk's configuration for the stack."""

    packages: tuple[Path, ...]  # .apk files, dependencies first
    arch: str
    world: tuple[str, ...] = ()  # the names asked for (etc/apk/world)
    repositories: tuple[str, ...] = ()  # etc/apk/repositories, one URL per line
    keys: tuple[Path, ...] = ()  # public key files copied to etc/apk/keys/


@dataclass
class _Installed:
    """One installed package, as the installed database records it."""

    entry: IndexEntry
    control: PackageControl
    replaces: tuple[str, ...]
    triggers: tuple[str, ...]
    # folder (archive path, '' for the top) -> (uid, gid, mode) or None when the package has
    # files there but no entry for the folder; then its files: (name, uid, gid, mode, Z:)
    dirs: dict[str, tuple[int, int, int] | None] = field(default_factory=dict)
    files: dict[str, list[tuple[str, int, int, int, str]]] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return self.entry.origin or self.entry.name


class _Ids:
    """User and group numbers by name, from the root's /etc/passwd and /etc/group.

    As apk's id cache: read once, then kept until a script runs (which may add
    users). It is read before a package's files are written, since apk writes
    them under temporary names until the package is done: a package's own
    /etc/group does not name the groups of its files.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.users: dict[str, int] | None = None
        self.groups: dict[str, int] = {}

    def reset(self) -> None:
        self.users = None

    def load(self) -> None:
        if self.users is None:
            self.users = self._read("passwd")
            self.groups = self._read("group")

    def _read(self, name: str) -> dict[str, int]:
        table: dict[str, int] = {}
        path = os.path.join(self.root, "etc", name)
        with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split(":")
                if len(parts) > 2 and parts[2].strip().isdigit():
                    table.setdefault(parts[0], int(parts[2]))
        return table

    def uid(self, name: str, number: int) -> int:
        if name == "root":
            return 0
        return (self.users or {}).get(name, number) if name else number

    def gid(self, name: str, number: int) -> int:
        if name == "root":
            return 0
        return self.groups.get(name, number) if name else number


def _checksum(hex_sha1: str | None) -> str:
    if not hex_sha1:
        return ""
    try:
        return "Q1" + base64.b64encode(bytes.fromhex(hex_sha1)).decode()
    except ValueError:
        return ""


def _unsafe(name: str) -> bool:
    if not name or name.startswith("/") or _CONTROL.search(name):
        return True
    return any(part in (".", "..") for part in name.rstrip("/").split("/"))


class _Installer:
    """Installs packages into one root folder; keeps what the database needs."""

    def __init__(self, root: Path, arch: str) -> None:
        self.root = os.fspath(root)
        self.arch = arch
        self.ids = _Ids(self.root)
        # folder as packages name it -> folder as it is in the root (symlinks resolved)
        self.real_dirs: dict[str, str] = {"": ""}
        # real path of a file -> the package that has it, and the folder it named it in
        self.owner: dict[str, tuple[_Installed, str]] = {}
        self.installed: list[_Installed] = []

    # -- paths ---------------------------------------------------------------

    def _resolve(self, relative: str, hops: int = 0) -> str:
        """`relative` with symlinks followed as if the root were `/` (never leaving it)."""
        parts: list[str] = []
        pending = [p for p in relative.split("/") if p]
        while pending:
            part = pending.pop(0)
            if part == ".":
                continue
            if part == "..":
                if parts:
                    parts.pop()
                continue
            candidate = "/".join([*parts, part])
            full = os.path.join(self.root, candidate)
            if os.path.islink(full):
                hops += 1
                if hops > 40:
                    raise RootError(f"{relative}: too many levels of symbolic links in the root")
                target = os.readlink(full)
                if target.startswith("/"):
                    parts = []
                pending[:0] = [p for p in target.split("/") if p]
                continue
            parts.append(part)
        return "/".join(parts)

    # -- one package ---------------------------------------------------------

    def install(self, path: Path) -> None:
        label = path.name
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                members = GzipMemberReader(handle)
                control = control_from(read_signed_start(members))
                entry = IndexEntry.from_control(control, size)
                label = f"{entry.name}-{entry.version}"
                package = _Installed(
                    entry, control, _words(control, "replaces"), _words(control, "triggers")
                )
                self._run_script(package, "pre-install")
                self.ids.load()
                if members.next_member():
                    with _Prefetch(members) as data:
                        self._extract(package, data.read)
        except ArchiveError as exc:
            raise RootError(f"{label}: {exc}") from None
        except OSError as exc:
            raise RootError(f"{label}: {exc.filename or ''}: {exc.strerror}") from None
        self.installed.append(package)
        self._run_script(package, "post-install")

    def _extract(self, package: _Installed, read: Callable[[int], bytes]) -> None:
        reader = TarReader(read)
        label = f"{package.entry.name}-{package.entry.version}"
        checksums: dict[str, str] = {}  # archive path of a file -> its Z: (for hard links)
        ids = self.ids
        root = self.root
        for member in reader:
            name = member.name
            if _unsafe(name):
                raise RootError(f"{label}: unsafe file name {name!r} in the package")
            if name.startswith("."):
                continue  # apk skips them in the data
            uid = ids.uid(member.uname, member.uid)
            gid = ids.gid(member.gname, member.gid)
            mode = member.mode
            if member.is_dir:
                name = name.rstrip("/")
                parent, _, base = name.rpartition("/")
                real = self._make_dir(label, name, parent, base)
                full = os.path.join(root, real)
                if _IS_ROOT:
                    os.chown(full, uid, gid)
                os.chmod(full, mode)
                package.dirs[name] = (uid, gid, mode)
                package.files.setdefault(name, [])
                continue
            parent, _, base = name.rpartition("/")
            if base.startswith(".keep_"):
                continue
            if parent not in package.dirs:
                if parent:
                    raise RootError(f"{label}: {name}: no dirent in archive")
                package.dirs[""] = None
                package.files.setdefault("", [])
            real = f"{self.real_dirs[parent]}/{base}" if parent else base
            full = os.path.join(root, real)
            self._claim(package, label, real, parent)
            csum = _checksum(member.pax.get(CHECKSUM_RECORD))
            if member.is_file:
                try:
                    fd = os.open(full, _FILE_FLAGS, 0o600)
                except FileExistsError:
                    self._make_way(label, real, full)
                    fd = os.open(full, _FILE_FLAGS, 0o600)
                try:
                    for chunk in reader.read_content():
                        os.write(fd, chunk)
                    if _IS_ROOT:
                        os.fchown(fd, uid, gid)
                    os.fchmod(fd, mode)
                    ns = member.mtime * 1_000_000_000
                    os.utime(fd, ns=(ns, ns))
                finally:
                    os.close(fd)
            elif member.is_hardlink:
                target = member.linkname
                if _unsafe(target) or target not in checksums:
                    raise RootError(f"{label}: {name}: no hard link target ({target}) in archive")
                link_parent, _, link_base = target.rpartition("/")
                source = os.path.join(root, self.real_dirs[link_parent], link_base)
                try:
                    os.link(source, full)
                except FileExistsError:
                    self._make_way(label, real, full)
                    os.link(source, full)
                csum = checksums[target]
            elif member.is_symlink:
                try:
                    os.symlink(member.linkname, full)
                except FileExistsError:
                    self._make_way(label, real, full)
                    os.symlink(member.linkname, full)
                if _IS_ROOT:
                    os.lchown(full, uid, gid)
                mode = 0o777
            else:
                raise RootError(f"{label}: {name}: device files and FIFOs are not installed")
            checksums[name] = csum
            package.files[parent].append((base, uid, gid, mode, csum))

    def _make_dir(self, label: str, name: str, parent: str, base: str) -> str:
        if parent and parent not in self.real_dirs:
            raise RootError(f"{label}: {name}: no dirent in archive for {parent}")
        real = f"{self.real_dirs[parent]}/{base}" if parent else base
        full = os.path.join(self.root, real)
        try:
            os.mkdir(full, 0o700)
        except FileExistsError:
            info = os.lstat(full)
            if stat.S_ISLNK(info.st_mode):
                real = self._resolve(real)
                if not os.path.isdir(os.path.join(self.root, real)):
                    raise RootError(
                        f"{label}: {name}: a symlink in the root, not to a folder"
                    ) from None
            elif not stat.S_ISDIR(info.st_mode):
                raise RootError(
                    f"{label}: {name}: a file in the root, where a folder should be"
                ) from None
        self.real_dirs[name] = real
        return real

    def _claim(self, package: _Installed, label: str, real: str, folder: str) -> None:
        """Record that `package` has the file at `real`; refused when another has it, as apk does."""
        owner = self.owner.get(real)
        if owner is not None and owner[0] is not package:
            other, other_folder = owner
            allowed = (
                other.origin == package.origin
                or _names(package.replaces) & {other.entry.name}
                or _names(other.replaces) & {package.entry.name}
            )
            if not allowed:
                raise RootError(
                    f"{label}: trying to overwrite {real} owned by "
                    f"{other.entry.name}-{other.entry.version}"
                )
            # the file now belongs to this package: drop it from the other's records
            base = real.rpartition("/")[2]
            files = other.files.get(other_folder, [])
            files[:] = [f for f in files if f[0] != base]
        self.owner[real] = (package, folder)

    def _make_way(self, label: str, real: str, full: str) -> None:
        """Remove what is at `full` (another package's file, or what a script made)."""
        if os.path.isdir(full) and not os.path.islink(full):
            raise RootError(f"{label}: {real} is a folder in the root")
        os.unlink(full)

    # -- scripts -------------------------------------------------------------

    def _run_script(self, package: _Installed, kind: str, args: Sequence[str] = ()) -> None:
        text = package.control.scripts.get(kind)
        if text is None:
            return
        entry = package.entry
        relative = f"lib/apk/exec/{entry.name}-{entry.version}.{kind}"
        full = os.path.join(self.root, relative)
        if not os.path.isdir(os.path.dirname(full)):
            os.makedirs(os.path.dirname(os.path.dirname(full)), mode=0o755, exist_ok=True)
            os.mkdir(os.path.dirname(full), 0o700)  # as apk makes lib/apk/exec
        with open(full, "wb") as handle:
            handle.write(text)
        os.chmod(full, 0o755)
        sandbox = Sandbox(Path(self.root), arch=self.arch, writable=True)
        try:
            with tempfile.TemporaryFile() as output:
                status = sandbox.run(
                    ["/" + relative, *(args or (entry.version,))], stdout=output, stderr=output
                )
                output.seek(0)
                log = output.read().decode("utf-8", "replace").strip()
        finally:
            os.unlink(full)
        self.ids.reset()  # a script may have added users or groups
        if status != 0:
            tail = "\n".join(log.splitlines()[-20:])
            raise RootError(
                f"{entry.name}-{entry.version}: the {kind} script failed (exit status {status})"
                + (f":\n{tail}" if tail else "")
            )

    def fire_triggers(self) -> None:
        """Run every package's trigger with the root's folders its globs match (apk's first install)."""
        folders = sorted(
            {"/" + name for package in self.installed for name in package.dirs if name}
        )
        for package in self.installed:
            if not package.triggers or "trigger" not in package.control.scripts:
                continue
            patterns = [_glob(t) for t in package.triggers if t.startswith("/")]
            matched = [f for f in folders if any(p.match(f) for p in patterns)]
            if matched:
                self._run_script(package, "trigger", matched)

    # -- the database --------------------------------------------------------

    def write_database(self, spec: RootSpec) -> None:
        """lib/apk/db/{installed,scripts.tar,triggers} and etc/apk/{world,arch,repositories,keys}."""
        db = Path(self.root, "lib/apk/db")
        db.mkdir(parents=True, exist_ok=True)
        packages = sorted(self.installed, key=lambda p: p.entry.name)
        (db / "installed").write_text("".join(_installed_block(p) for p in packages))
        scripts = []
        for package in self.installed:
            entry = package.entry
            for kind in _APK_SCRIPTS:
                text = package.control.scripts.get(kind)
                if text is not None:
                    name = f"{entry.name}-{entry.version}.{entry.identity}.{kind}"
                    scripts.append(_script_entry(name, text, entry.builddate))
        (db / "scripts.tar").write_bytes(b"".join(scripts) + END_OF_ARCHIVE)
        (db / "triggers").write_text(
            "".join(
                f"{p.entry.identity} {' '.join(p.triggers)}\n" for p in self.installed if p.triggers
            )
        )
        (db / "lock").touch(mode=0o600)
        for folder in ("var/cache/apk", "var/cache/misc"):  # as apk --initdb makes them
            os.makedirs(os.path.join(self.root, folder), mode=0o755, exist_ok=True)
        etc = Path(self.root, "etc/apk")
        (etc / "keys").mkdir(parents=True, exist_ok=True)
        world = spec.world or tuple(sorted({p.entry.name for p in self.installed}))
        (etc / "world").write_text("".join(f"{name}\n" for name in world))
        (etc / "arch").write_text(spec.arch + "\n")
        (etc / "repositories").write_text("".join(f"{url}\n" for url in spec.repositories))
        for key in spec.keys:
            shutil.copyfile(key, etc / "keys" / key.name)


def _names(dependencies: tuple[str, ...]) -> set[str]:
    return {re.split(r"[<>=~]", d, maxsplit=1)[0] for d in dependencies}


class _Prefetch:
    """Decompresses a gzip member in a thread while the caller writes files (as tar | gzip do).

    zlib releases the GIL, so inflating overlaps the file system calls.
    `read(n)` returns up to n bytes, b"" at the end; errors of the thread are
    raised there. Leaving the block stops the thread.
    """

    _CHUNK = 1 << 20

    def __init__(self, members: GzipMemberReader) -> None:
        self._members = members
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._buffer = b""
        self._offset = 0
        self._done = False

    def __enter__(self) -> _Prefetch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()  # unblock a put
            self._thread.join(0.01)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._members.read(self._CHUNK)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the reader, which raises it
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, size: int) -> bytes:
        if self._offset >= len(self._buffer):
            if self._done:
                return b""
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if not item:
                self._done = True
                return b""
            self._buffer, self._offset = item, 0
        end = self._offset + size
        data = self._buffer[self._offset : end]
        self._offset = end
        return data


def _octal(value: int, length: int, terminated: bool) -> bytes:
    # apk's put_octal: zero-padded digits filling the field, then NUL when `terminated`
    digits = length - 1 if terminated else length
    return f"{value:o}".rjust(digits, "0")[-digits:].encode() + (b"\0" if terminated else b"")


def _script_entry(name: str, data: bytes, mtime: int) -> bytes:
    """One entry of scripts.tar, byte for byte as apk's apk_tar_write_entry writes it."""
    header = bytearray(512)
    raw = name.encode()[:99]
    header[0 : len(raw)] = raw
    header[100:108] = _octal(0o755, 8, True)
    header[108:116] = _octal(0, 8, True)
    header[116:124] = _octal(0, 8, True)
    header[124:136] = _octal(len(data), 12, False)
    header[136:148] = _octal(mtime, 12, False)
    header[148:156] = b" " * 8
    header[156:157] = REGULAR
    header[257:265] = b"ustar  \0"
    header[265:269] = b"root"
    header[297:301] = b"root"
    header[148:155] = _octal(sum(header), 7, True)
    return bytes(header) + data + bytes(-len(data) % 512)


def _words(control: PackageControl, key: str) -> tuple[str, ...]:
    return tuple(word for value in control.values(key) for word in value.split())


def _glob(pattern: str) -> re.Pattern[str]:
    """fnmatch with FNM_PATHNAME: `*` and `?` do not match `/`."""
    parts = []
    for piece in re.split(r"(\*|\?)", pattern):
        if piece == "*":
            parts.append("[^/]*")
        elif piece == "?":
            parts.append("[^/]")
        else:
            parts.append(fnmatch.translate(piece)[4:-3] if piece else "")
    return re.compile("".join(parts) + r"\Z")


def _acl(letter: str, acl: tuple[int, int, int], default: int) -> str:
    uid, gid, mode = acl
    if (uid, gid, mode) == (0, 0, default):
        return ""
    return f"{letter}:{uid}:{gid}:{mode:o}\n"


def _installed_block(package: _Installed) -> str:
    lines = [package.entry.render().rstrip("\n") + "\n"]
    if package.replaces:
        lines.append(f"r:{' '.join(package.replaces)}\n")
    priority = package.control.first("replaces_priority")
    if priority.isdigit() and int(priority):
        lines.append(f"q:{int(priority)}\n")
    for folder, acl in package.dirs.items():
        lines.append(f"F:{folder}\n")
        if acl is not None:
            lines.append(_acl("M", acl, 0o755))
        for name, uid, gid, mode, csum in package.files.get(folder, ()):
            lines.append(f"R:{name}\n")
            lines.append(_acl("a", (uid, gid, mode), 0o644))
            if csum:
                lines.append(f"Z:{csum}\n")
    lines.append("\n")
    return "".join(lines)


def _prepare_mount_points(root: Path) -> None:
    for folder in MOUNT_POINTS:
        path = root / folder
        if not path.is_dir() and not path.is_symlink():
            path.mkdir(parents=True, mode=0o755)
    for name in MOUNT_FILES:
        path = root / name
        if not path.exists() and not path.is_symlink():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()


def install_root(root: str | Path, spec: RootSpec) -> Path:
    """Install `spec`'s packages into the (empty or new) folder `root`; returns it.

    Also creates the folders and files the sandbox mounts on. Raises
    RootError when a package cannot be installed or a script fails.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    installer = _Installer(root, spec.arch)
    for package in spec.packages:
        installer.install(Path(package))
    installer.fire_triggers()
    installer.write_database(spec)
    _prepare_mount_points(root)
    return root


def root_path(store: str | Path, digest: str) -> Path:
    """Where the root keyed by `digest` lives in `store` (made or not)."""
    return Path(store, digest, ROOT_FOLDER)


def ensure_root(store: str | Path, digest: str, spec: RootSpec) -> Path:
    """The root keyed by `digest` under `store`, made from `spec` if it does not exist yet.

    A root is made in a temporary folder beside the others and renamed into
    place whole: a killed run never leaves half a root under its key, and two
    runs making the same root at once end with one. Once made it is never
    changed; apps whose closures are equal share it.
    """
    if not re.fullmatch(r"[0-9A-Za-z_.-]{1,128}", digest) or digest in (".", ".."):
        raise RootError(f"{digest!r} is not a root key")
    store = Path(store)
    final = store / digest
    if (final / ROOT_FOLDER).is_dir():
        return final / ROOT_FOLDER
    store.mkdir(parents=True, exist_ok=True)
    with _scratch(store, digest) as scratch:
        install_root(scratch / ROOT_FOLDER, spec)
        try:
            os.rename(scratch, final)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            # another run made it first: theirs is as good as ours
            if not (final / ROOT_FOLDER).is_dir():
                raise RootError(
                    f"{final} is in the way of the root made for it (it holds no {ROOT_FOLDER}/); "
                    "remove it"
                ) from None
    return final / ROOT_FOLDER


@contextlib.contextmanager
def _scratch(store: Path, digest: str) -> Iterator[Path]:
    scratch = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}.", suffix=".tmp", dir=store))
    try:
        yield scratch
    finally:
        with contextlib.suppress(OSError):  # else a leftover `pakman gc` removes
            remove_tree(scratch)
