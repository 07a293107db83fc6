"""abuild's tracedeps on a tree of files compiled with musl-gcc."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pakman.apk.tracedeps import installed_sonames, trace

pytestmark = pytest.mark.skipif(shutil.which("musl-gcc") is None, reason="needs musl-gcc")


def _tree(root: Path, *, with_library: bool) -> Path:
    work = root / "work"
    work.mkdir()
    (work / "g.c").write_text("int greet(void) { return 42; }\n")
    (work / "m.c").write_text("int greet(void);\nint main(void) { return greet(); }\n")
    run = lambda *a: subprocess.run(["musl-gcc", *a], check=True, cwd=work)  # noqa: E731
    run("-shared", "-fPIC", "-Wl,-soname,libgreet.so.1", "-o", "libgreet.so.1.0.0", "g.c")
    run("-o", "app", "m.c", f"-L{work}", "-l:libgreet.so.1.0.0")
    tree = root / "tree"
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/share").mkdir(parents=True)
    shutil.copy(work / "app", tree / "usr/bin/app")
    (tree / "usr/share/readme").write_text("not ELF\n")
    if with_library:
        (tree / "usr/lib").mkdir()
        shutil.copy(work / "libgreet.so.1.0.0", tree / "usr/lib/libgreet.so.1.0.0")
        (tree / "usr/lib/libgreet.so.1").symlink_to("libgreet.so.1.0.0")
    return tree


def test_needs_become_so_dependencies_when_the_root_provides_them(tmp_path: Path) -> None:
    tree = _tree(tmp_path, with_library=False)
    found = trace(tree, frozenset({"so:libgreet.so.1", "so:libc.so"}))
    assert found.depends == ["so:libc.so", "so:libgreet.so.1"]
    assert found.provides == [] and found.warnings == []


def test_a_need_nobody_provides_is_left_out_with_a_warning(tmp_path: Path) -> None:
    tree = _tree(tmp_path, with_library=False)
    found = trace(tree, frozenset({"so:libc.so"}))
    assert found.depends == ["so:libc.so"]
    assert len(found.warnings) == 1
    assert "libgreet.so.1 (needed by usr/bin/app)" in found.warnings[0]
    # unknown availability (a build on the host): every need is kept
    assert trace(tree, None).depends == ["so:libc.so", "so:libgreet.so.1"]


def test_a_library_the_package_ships_is_provided_and_not_depended_on(tmp_path: Path) -> None:
    tree = _tree(tmp_path, with_library=True)
    found = trace(tree, frozenset({"so:libc.so"}))
    assert found.provides == ["so:libgreet.so.1=1.0.0"]  # sover from the file's name, as abuild
    assert found.depends == ["so:libc.so"]


def test_installed_sonames_reads_the_roots_database(tmp_path: Path) -> None:
    database = tmp_path / "lib/apk/db/installed"
    database.parent.mkdir(parents=True)
    database.write_text("P:musl\np:so:libc.musl-x86_64.so.1=1 cmd:ldd\n\nP:x\np:so:libx.so.2\n")
    assert installed_sonames(tmp_path) == {"so:libc.musl-x86_64.so.1", "so:libx.so.2"}
