"""Every program the generated scripts execute is where they execute it.

The run script and the init script start `<path>/<binary>` (by default
`/var/lib/<name>/bin/<binary>`). When that lies in the app's own folder,
`/var/lib/<name>/`, only this package can provide it, so a package that
lacks it (a destination copied one folder too deep, a binary never built)
is refused, naming the service or command and the path expected. Anywhere
else (`/usr/bin/php`), a runtime dependency may provide it: accepted when the
package holds it or lists runtime dependencies, else a warning.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from pakman.config.model import AppConfig, Command, Identity, Service
from pakman.errors import KeyPath, StepFailed, format_path
from pakman.render.engine import argv, home

_MAX_LINKS = 40  # as the kernel's path resolution (ELOOP)


def executed_programs(app: AppConfig, identity: Identity) -> list[tuple[str, str]]:
    """(what runs it, absolute path) for each service and command of the app."""
    return [
        (f"{format_path(p)} ({name})", program) for p, name, program in _executed(app, identity)
    ]


def _executed(app: AppConfig, identity: Identity) -> list[tuple[KeyPath, str, str]]:
    """(where it is written, its name, absolute path) for each service and command."""
    items: list[tuple[KeyPath, Service | Command]] = [
        *((("run", "services", i), s) for i, s in enumerate(app.services)),
        *((("run", "commands", i), c) for i, c in enumerate(app.commands)),
    ]
    return [(path, item.name, argv(item, identity)[0]) for path, item in items]


def check_executables(app: AppConfig, identity: Identity, tree: Path) -> list[str]:
    """Refuse a package tree lacking a program its scripts execute; return warnings.

    `tree` is the package's root (what becomes `/` when it is installed).
    """
    own = PurePosixPath(home(identity))
    missing: list[str] = []
    warnings: list[str] = []
    for path, name, program in _executed(app, identity):
        what = f"{format_path(path)} ({name})"
        found, where = _resolve(tree, PurePosixPath(program))
        if found is not None:
            if not stat.S_ISREG(found.st_mode):
                missing.append(f"{what} executes {program}, which is not a file in the package")
            elif not found.st_mode & 0o111:
                missing.append(
                    f"{what} executes {program}, which is not executable in the package "
                    f"(mode {stat.S_IMODE(found.st_mode):04o}); chmod +x it in build.command"
                )
        elif where == own or own in where.parents:
            missing.append(
                f"{what} executes {program}, but the package has no {where}"
                + _hint(tree, own, PurePosixPath(program).name)
            )
        elif not app.dependencies.runtime:
            message = (
                f"{name} executes {program}, which is not in the package, and "
                "dependencies.runtime lists no package to provide it"
            )
            warnings.append(str(app.diagnostic(path, message)))
    if missing:
        raise StepFailed(
            "a program the service files execute is missing:\n"
            + "\n".join(f"  {line}" for line in missing)
        )
    return warnings


def _resolve(tree: Path, path: PurePosixPath) -> tuple[os.stat_result | None, PurePosixPath]:
    """Follow `path` inside the package as the installed system would.

    Returns the file's status (None when absent) and the absolute path
    reached, symbolic links followed with `tree` as the root.
    """
    parts = list(path.parts[1:])
    done = PurePosixPath("/")
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            done = done.parent
            continue
        if part in ("", "."):
            continue
        candidate = done / part
        on_disk = tree / candidate.relative_to("/")
        try:
            info = on_disk.lstat()
        except OSError:
            return None, PurePosixPath(candidate, *parts)
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > _MAX_LINKS:
                return None, PurePosixPath(candidate, *parts)
            target = PurePosixPath(os.readlink(on_disk))
            parts = [*target.parts[1:], *parts] if target.is_absolute() else [*target.parts, *parts]
            if target.is_absolute():
                done = PurePosixPath("/")
            continue
        done = candidate
    try:
        return (tree / done.relative_to("/")).stat(), done
    except OSError:
        return None, done


def _hint(tree: Path, own: PurePosixPath, name: str) -> str:
    """Where files of that name are in the app's folder, or what to look at."""
    elsewhere = sorted(
        "/" + (Path(folder) / name).relative_to(tree).as_posix()
        for folder, _, files in os.walk(tree / own.relative_to("/"))
        if name in files
    )
    if elsewhere:
        return (
            f" (it has {', '.join(elsewhere[:3])}; `<folder>/*` in build.destinations "
            "installs a folder's contents rather than the folder)"
        )
    return "; does build.command make it, and do build.destinations copy it?"


__all__ = ["check_executables", "executed_programs"]
