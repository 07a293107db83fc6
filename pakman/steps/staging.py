"""The default `package()` of the generated APKBUILD, in Python.

The collect step (`collect_destinations`) and the package step
(`stage_service_files`) build together exactly the tree that the APKBUILD's
default `package()` builds in `$pkgdir` under abuild (`umask 022`):

    install -d -m 755 -o "$pkgusers" -g "$pkggroups" "$pkgdir/var/lib/$pkgname"
    cp -r "$srcdir"/<destination> "$pkgdir/var/lib/$pkgname"      (each destination)
    install -D -m 755 "$startdir/$pkgname.initd" "$pkgdir/etc/init.d/$pkgname"   (...)

so that the native packager packs what abuild would, whatever this process's
umask. A test runs the APKBUILD's functions in a shell and compares the tree
with the packages `pakman build` writes. Ownership is not applied (the app's
user does not exist on the build machine); the package step writes it into
the archive by name.
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from pakman.config.model import AppConfig, AppType, Identity
from pakman.errors import PakmanError
from pakman.render import files as generated

STATIC_CONFIG = ("nginx.conf", "etc/{name}/default.conf", 0o644)
UMASK = 0o022  # abuild's
_DIR_MODE = 0o755


class StagingError(PakmanError):
    """The built source does not hold what the package needs."""


def collect_destinations(srcdir: Path, destinations: Sequence[str], dest_dir: Path) -> None:
    """Copy each destination pattern's matches into the folder `dest_dir`, like `cp -r`.

    `dest_dir` must exist (as `$pkgdir/var/lib/$pkgname` does). Patterns expand like the shell's: `*` and `?` do not match a leading dot,
    matches are sorted, each match lands in `dest_dir` under its last name and
    folders merge. A pattern that matches nothing is an error. Symbolic links
    are copied as links; one that points outside the source tree is refused.
    """
    root = Path(os.path.realpath(srcdir))
    for index, pattern in enumerate(destinations):
        matches = _expand(root, pattern)
        if not matches:
            raise StagingError(
                f"build.destinations[{index}]: {pattern!r} matches nothing in the built "
                f"source ({srcdir}); does the build command create it?"
            )
        for match in matches:
            source = root / match
            if not _inside(Path(os.path.realpath(source.parent)), root):
                raise StagingError(
                    f"build.destinations[{index}]: {match!r} is reached through a symbolic "
                    "link to a folder outside the source tree"
                )
            _copy(source, dest_dir / source.name, root)


def _expand(root: Path, pattern: str) -> list[str]:
    if not glob.has_magic(pattern):
        return [pattern] if os.path.lexists(root / pattern) else []
    return sorted(glob.glob(pattern, root_dir=root))


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _copy(source: Path, target: Path, root: Path) -> None:
    """`cp -r source target` without -p, under abuild's umask."""
    info = source.lstat()
    mode = stat.S_IMODE(info.st_mode) & ~UMASK & 0o777
    if stat.S_ISLNK(info.st_mode):
        link = os.readlink(source)
        where = source.parent.relative_to(root)
        resolved = os.path.normpath(os.path.join(where, link))
        if os.path.isabs(link) or resolved == ".." or resolved.startswith("../"):
            raise StagingError(
                f"{source.relative_to(root)} is a symbolic link to {link!r}, outside the "
                "source tree; copy the file it names into the app instead"
            )
        _make_room(target, source)
        os.symlink(link, target)
    elif stat.S_ISDIR(info.st_mode):
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise StagingError(f"cannot copy the folder {source} over the file {target}")
        if not target.exists():
            target.mkdir()
            os.chmod(target, mode)
        for child in sorted(os.listdir(source)):
            _copy(source / child, target / child, root)
    elif stat.S_ISREG(info.st_mode):
        _make_room(target, source)
        existed = target.exists()
        shutil.copyfile(source, target)
        if not existed:  # cp keeps the mode of a file it overwrites
            os.chmod(target, mode)
    else:
        raise StagingError(
            f"{source.relative_to(root)} is not a file, folder or symbolic link "
            "(a socket, pipe or device cannot be packaged)"
        )


def _make_room(target: Path, source: Path) -> None:
    if target.is_symlink():
        target.unlink()
    elif target.is_dir():
        raise StagingError(f"cannot copy {source} over the folder {target}")


def _install(source: Path, target: Path, mode: int) -> None:
    """`install -D -m MODE source target`: parent folders 0755, the file replaced."""
    make_dirs(target.parent)
    if target.is_symlink():
        target.unlink()
    shutil.copyfile(source, target)
    os.chmod(target, mode)


def make_dirs(path: Path) -> None:
    """`mkdir -p` under umask 022, whatever this process's umask is."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir()
        os.chmod(folder, _DIR_MODE)


def stage_service_files(
    app: AppConfig, identity: Identity, srcdir: Path, rendered_dir: Path, pkgdir: Path
) -> None:
    """Install the generated service files (or a static site's nginx.conf) into `pkgdir`."""
    name = identity.name
    if app.type is AppType.STATIC:
        source_name, target, mode = STATIC_CONFIG
        source = srcdir / source_name
        if not source.is_file():
            raise StagingError(
                f"`type: static` installs the app's nginx.conf, but the built source "
                f"has no {source}"
            )
        _install(source, pkgdir / target.format(name=name), mode)
    elif app.type is AppType.DEFAULT:
        for kind, target, mode in generated.INSTALLED_FILES:
            if kind not in app.service_files:
                continue  # an app without services (or commands) runs nothing
            source = rendered_dir / f"{name}.{kind}"
            if not source.is_file():
                raise StagingError(f"the generated file {source} is missing; render it first")
            _install(source, pkgdir / target.format(name=name), mode)


__all__ = [
    "StagingError",
    "collect_destinations",
    "make_dirs",
    "stage_service_files",
]
