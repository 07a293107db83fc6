"""abuild's tracedeps: the `so:` names a package tree provides and needs.

As abuild.in's scan_shared_objects and trace_apk_deps do:
- provides: each ELF file directly in `lib/` or `usr/lib/` with a soname
  (or, without one, its file name) that looks like a shared library
  (`*.so`, `*.so.<digit>...`, `*.c32`) gives `so:<soname>=<sover>`, where
  sover is what follows the last `.so.` of the file's name, else 0; of two
  files with one soname the one with a version wins.
- needs: every DT_NEEDED of every executable or shared object in the tree,
  except the sonames the package provides itself.
- a need becomes `depend = so:<soname>` when the package provides it or
  when a package installed in the build root provides it (abuild asks
  `apk info -e so:<soname>` in its root); any other need is left out,
  as abuild leaves it out, and pakman says so in a warning.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from pakman.apk.elf import ElfError, ElfInfo, is_elf, read_elf
from pakman.config.rules import DEPENDENCY, VERSION

_LIBRARY = re.compile(r".*(\.so|\.so\.[0-9].*|\.c32)\Z", re.DOTALL)


@dataclass
class Trace:
    depends: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def elf_files(tree: Path) -> list[tuple[str, ElfInfo]]:
    """(relative path, facts) of every regular ELF file of `tree`, sorted; unreadable ELF skipped."""
    found = []
    for folder, dirs, files in os.walk(tree):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if not stat.S_ISREG(path.lstat().st_mode) or not is_elf(path):
                continue
            try:
                found.append((path.relative_to(tree).as_posix(), read_elf(path)))
            except (ElfError, OSError):
                continue  # scanelf skips what it cannot parse too
    return found


def installed_sonames(root: Path) -> frozenset[str]:
    """The `so:` names (without version) the packages installed in `root` provide."""
    names = set()
    database = root / "lib/apk/db/installed"
    for line in database.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("p:"):
            for word in line[2:].split():
                if word.startswith("so:"):
                    names.add(word.split("=", 1)[0])
    return frozenset(names)


def trace(tree: Path, available: frozenset[str] | None) -> Trace:
    """The tree's `so:` provides and depends; `available` is what the build root provides (None: unknown)."""
    result = Trace()
    files = elf_files(tree)
    sover: dict[str, str] = {}
    for path, info in files:
        folder, _, name = path.rpartition("/")
        if folder not in ("lib", "usr/lib") or not info.is_dynamic_object:
            continue
        soname = info.soname or name
        if soname.endswith(".o") or not _LIBRARY.match(soname):
            continue
        version = name.rsplit(".so.", 1)[1] if ".so." in name else "0"
        if not VERSION.match(version):
            result.warnings.append(
                f"{path}: library version {version!r} is not an Alpine version; "
                f"so:{soname} is not provided (abuild would stop)"
            )
            continue
        if sover.get(soname, "0") == "0":
            sover[soname] = version
    result.provides = sorted(f"so:{s}={v}" for s, v in sover.items())
    needers: dict[str, str] = {}
    for path, info in files:
        if info.is_dynamic_object:
            for soname in info.needed:
                needers.setdefault(soname, path)
    missing = []
    for soname in sorted(needers):
        if soname in sover:
            continue  # the package provides it: apk meets it with the package itself
        word = f"so:{soname}"
        if not DEPENDENCY.match(word):
            result.warnings.append(
                f"{needers[soname]}: needs {soname!r}, not a name apk can depend on"
            )
        elif available is None or word in available:
            result.depends.append(word)
        else:
            missing.append(f"{soname} (needed by {needers[soname]})")
    if missing:
        result.warnings.append(
            "no package of the build root provides "
            + ", ".join(missing)
            + "; left out of the dependencies, as abuild leaves them out"
        )
    return result
