"""Making a build root from .apk files: what apk would leave in it, and what is refused."""

from __future__ import annotations

import base64
import hashlib
import os
import tarfile
from pathlib import Path

import pytest

from alpine_fixture import EPOCH, INSTALL_ORDER, AlpineRepository
from pakman.apk.gzipper import gzip_bytes
from pakman.apk.package import control_tar
from pakman.apk.pkginfo import PackageInfo, render_pkginfo
from pakman.apk.reader import read_index_file
from pakman.apk.tarfmt import (
    DIRECTORY,
    END_OF_ARCHIVE,
    REGULAR,
    SYMLINK,
    TarMember,
    TarReader,
    member_bytes,
)
from pakman.sandbox import RootError, RootSpec, ensure_root, install_root

IS_ROOT = os.geteuid() == 0


def installed_blocks(root: Path) -> dict[str, list[str]]:
    """The lines of each package's block of lib/apk/db/installed, by package name."""
    blocks: dict[str, list[str]] = {}
    for block in (root / "lib/apk/db/installed").read_text().split("\n\n"):
        lines = block.strip("\n").splitlines()
        if lines:
            name = next(line[2:] for line in lines if line.startswith("P:"))
            blocks[name] = lines
    return blocks


def raw_package(
    folder: Path, name: str, members: list[tuple[str, bytes, str]], replaces: tuple[str, ...] = ()
) -> Path:
    """An unsigned .apk whose data holds `members`: (name, kind d/f/l, content or link target)."""
    info = PackageInfo(name, "1.0", "x86_64", replaces=replaces, builddate=EPOCH)
    pkginfo = render_pkginfo(info, builddate=EPOCH, size=1, datahash="0" * 64)
    data = []
    for member_name, kind, text in members:
        if kind == b"d":
            data.append(member_bytes(TarMember(member_name, DIRECTORY, 0o755, EPOCH)))
        elif kind == b"l":
            data.append(member_bytes(TarMember(member_name, SYMLINK, 0o777, EPOCH, linkname=text)))
        else:
            content = text.encode()
            member = TarMember(member_name, REGULAR, 0o644, EPOCH, size=len(content))
            data.append(member_bytes(member, content))
    path = folder / f"{name}-1.0-r0.apk"
    path.write_bytes(
        gzip_bytes(control_tar(pkginfo, {}, EPOCH)) + gzip_bytes(b"".join(data) + END_OF_ARCHIVE)
    )
    return path


def test_root_has_the_release_busybox_applets_and_every_package_in_the_database(
    alpine_root: Path,
) -> None:
    assert (alpine_root / "etc/alpine-release").read_text() == "3.20.3\n"
    for applet in ("bin/ls", "bin/mkdir", "bin/cat"):
        assert os.readlink(alpine_root / applet) == "/bin/busybox", applet
    blocks = installed_blocks(alpine_root)
    assert sorted(blocks) == sorted(INSTALL_ORDER)
    busybox = blocks["busybox"]
    sha1 = hashlib.sha1((alpine_root / "bin/busybox").read_bytes()).digest()
    at = busybox.index("R:busybox")
    assert busybox[at + 1 : at + 3] == ["a:0:0:755", "Z:Q1" + base64.b64encode(sha1).decode()]
    assert "F:bin" in busybox
    assert (alpine_root / "etc/apk/world").read_text() == "alpine-release\nhello-setup\n"
    assert (alpine_root / "etc/apk/arch").read_text().strip() == "x86_64"
    assert (alpine_root / "etc/apk/repositories").read_text().splitlines() == [
        "http://127.0.0.1:9/v3.20/main",
        "http://127.0.0.1:9/v3.20/community",
    ]
    assert [p.name for p in (alpine_root / "etc/apk/keys").iterdir()] == [
        "pakman-test-6b000000.rsa.pub"
    ]


def test_database_identities_match_the_index_and_scripts_are_kept(
    alpine_root: Path, alpine_repository: AlpineRepository
) -> None:
    index_ids = {}
    for repository in ("main", "community"):
        with open(alpine_repository.arch_dir(repository) / "APKINDEX.tar.gz", "rb") as handle:
            text = read_index_file(handle).text
        for block in text.split("\n\n"):
            fields = dict(line.split(":", 1) for line in block.splitlines() if line)
            if fields:
                index_ids[fields["P"]] = fields["C"]
    blocks = installed_blocks(alpine_root)
    for name, lines in blocks.items():
        assert lines[0] == f"C:{index_ids[name]}", name
    with open(alpine_root / "lib/apk/db/scripts.tar", "rb") as handle:
        names = [entry.name for entry in TarReader(handle.read)]
    hello = f"hello-setup-2.0-r0.{index_ids['hello-setup']}"
    assert names == [
        f"busybox-1.36.1-r0.{index_ids['busybox']}.post-install",
        f"busybox-1.36.1-r0.{index_ids['busybox']}.trigger",
        f"{hello}.pre-install",
        f"{hello}.post-install",
        f"{hello}.trigger",
    ]
    # written as apk's apk_tar_write_entry writes it (old GNU magic, root names, NUL-ended octal)
    data = (alpine_root / "lib/apk/db/scripts.tar").read_bytes()
    assert data[257:265] == b"ustar  \0" and data[265:270] == b"root\0"
    size = len(b"#!/bin/busybox sh\n/bin/busybox --install -s || exit 1\n")
    assert data[100:148] == b"0000755\x000000000\x000000000\x00" + b"%012o%012o" % (size, EPOCH)
    with tarfile.open(alpine_root / "lib/apk/db/scripts.tar") as archive:
        busybox = archive.getmembers()[0]
        assert (busybox.mode, busybox.uname, busybox.mtime) == (0o755, "root", EPOCH)
    assert (alpine_root / "lib/apk/db/triggers").read_text().splitlines() == [
        f"{index_ids['busybox']} /bin /usr/bin /sbin /usr/sbin /lib/modules/*",
        f"{index_ids['hello-setup']} /usr/lib /usr/share/*",
    ]


def test_install_scripts_and_triggers_ran_inside_the_root(alpine_root: Path) -> None:
    # post-install ran `greet`, a program of the root linked against the root's musl
    assert (alpine_root / "etc/hello-setup.txt").read_text() == "hello, 2.0-r0\n"
    # the trigger got the root's folders its globs match
    assert (alpine_root / "var/lib/hello/trigger-args").read_text() == "/usr/lib /usr/share/hello\n"
    # the user the pre-install script added owns the folder the package gives it
    assert (
        "hello:x:101:101::/var/lib/hello:/sbin/nologin" in (alpine_root / "etc/passwd").read_text()
    )
    if IS_ROOT:
        info = (alpine_root / "var/lib/hello").stat()
        assert (info.st_uid, info.st_gid) == (101, 101)
    assert "M:101:101:750" in installed_blocks(alpine_root)["hello-setup"]
    assert list((alpine_root / "lib/apk/exec").iterdir()) == []
    assert (alpine_root / "lib/apk/exec").stat().st_mode & 0o777 == 0o700


def test_modes_owners_times_and_links_as_packaged(alpine_root: Path) -> None:
    readme = alpine_root / "usr/share/hello/README"
    assert readme.stat().st_ino == (alpine_root / "usr/share/hello/README.link").stat().st_ino
    assert readme.stat().st_mtime == EPOCH
    assert os.readlink(alpine_root / "var/run") == "../run"
    assert os.readlink(alpine_root / "lib/libc.musl-x86_64.so.1") == "ld-musl-x86_64.so.1"
    assert (alpine_root / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (alpine_root / "root").stat().st_mode & 0o7777 == 0o700
    shadow = (alpine_root / "etc/shadow").stat()
    assert shadow.st_mode & 0o777 == 0o640
    # as under apk: names are looked up in the root as it was before the package (which
    # brings /etc/group itself), so `shadow` is not known yet and the stored 0 is used
    if IS_ROOT:
        assert (shadow.st_uid, shadow.st_gid) == (0, 0)
    assert "a:0:0:640" in installed_blocks(alpine_root)["alpine-baselayout"]


@pytest.mark.parametrize(
    "name", ["../escape", "/etc/escape", "usr/../../escape", "usr/./x", "usr/bad\nname"]
)
def test_unsafe_member_names_are_refused(tmp_path: Path, name: str) -> None:
    package = raw_package(tmp_path, "evil", [("usr/", b"d", ""), (name, b"f", "x")])
    with pytest.raises(RootError, match="unsafe file name"):
        install_root(tmp_path / "root", RootSpec((package,), "x86_64"))
    assert not (tmp_path / "escape").exists()


def test_folders_that_are_symlinks_are_followed_inside_the_root_never_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    first = raw_package(
        tmp_path,
        "links",
        [
            ("escape", b"l", str(outside)),
            ("run/", b"d", ""),
            ("var/", b"d", ""),
            ("var/run", b"l", "../run"),
        ],
    )
    # var/run is a symlink in the root: its files land in /run of the root
    inside = raw_package(
        tmp_path, "inside", [("var/", b"d", ""), ("var/run/", b"d", ""), ("var/run/x", b"f", "x")]
    )
    root = install_root(tmp_path / "root", RootSpec((first, inside), "x86_64"))
    assert (root / "run/x").read_text() == "x"
    # escape -> <absolute host folder>: followed inside the root, where it is nothing
    evil = raw_package(tmp_path, "evil", [("escape/", b"d", ""), ("escape/x", b"f", "x")])
    with pytest.raises(RootError, match="escape"):
        install_root(tmp_path / "root2", RootSpec((first, evil), "x86_64"))
    # a file below a symlink of its own package has no folder entry: refused
    sneaky = raw_package(tmp_path, "sneaky", [("up", b"l", str(outside)), ("up/x", b"f", "x")])
    with pytest.raises(RootError, match="no dirent"):
        install_root(tmp_path / "root3", RootSpec((sneaky,), "x86_64"))
    assert list(outside.iterdir()) == []


def test_a_file_of_another_package_is_not_overwritten(tmp_path: Path) -> None:
    one = raw_package(tmp_path, "one", [("etc/", b"d", ""), ("etc/conf", b"f", "one")])
    two = raw_package(tmp_path, "two", [("etc/", b"d", ""), ("etc/conf", b"f", "two")])
    with pytest.raises(RootError, match=r"trying to overwrite etc/conf owned by one-1\.0-r0"):
        install_root(tmp_path / "root", RootSpec((one, two), "x86_64"))


def test_a_package_that_replaces_another_takes_its_files(tmp_path: Path) -> None:
    one = raw_package(
        tmp_path, "one", [("etc/", b"d", ""), ("etc/conf", b"f", "one"), ("etc/l", b"l", "conf")]
    )
    two = raw_package(
        tmp_path,
        "two",
        [("etc/", b"d", ""), ("etc/conf", b"f", "two"), ("etc/l", b"l", "other")],
        replaces=("one",),
    )
    root = install_root(tmp_path / "root", RootSpec((one, two), "x86_64"))
    assert (root / "etc/conf").read_text() == "two"
    assert os.readlink(root / "etc/l") == "other"
    blocks = installed_blocks(root)
    assert "R:conf" not in blocks["one"] and "R:l" not in blocks["one"]
    assert "R:conf" in blocks["two"] and "r:one" in blocks["two"]


def test_a_root_is_made_once_per_key_and_never_half(
    tmp_path: Path, alpine_repository: AlpineRepository
) -> None:
    store = tmp_path / "roots"
    packages = alpine_repository.packages(("alpine-baselayout", "alpine-release"))
    first = ensure_root(store, "abc", RootSpec(packages, "x86_64"))
    inode = first.stat().st_ino
    # the same key again: the root is there, nothing is installed (these files do not exist)
    again = ensure_root(store, "abc", RootSpec((tmp_path / "missing.apk",), "x86_64"))
    assert again == first and again.stat().st_ino == inode
    # a failing script leaves nothing under its key, and no scratch folder
    failing = alpine_repository.packages(("alpine-baselayout", "hello-setup"))  # no /bin/sh yet
    with pytest.raises(RootError, match="pre-install script failed"):
        ensure_root(store, "def", RootSpec(failing, "x86_64"))
    assert sorted(p.name for p in store.iterdir()) == ["abc"]


def test_something_else_under_the_key_is_not_taken_for_a_root(
    tmp_path: Path, alpine_repository: AlpineRepository
) -> None:
    store = tmp_path / "roots"
    (store / "abc").mkdir(parents=True)
    (store / "abc" / "stray").write_text("x")
    spec = RootSpec(alpine_repository.packages(("alpine-release",)), "x86_64")
    with pytest.raises(RootError, match="in the way"):
        ensure_root(store, "abc", spec)
    assert sorted(p.name for p in store.iterdir()) == ["abc"]


def test_a_damaged_package_is_an_error_not_a_hang(tmp_path: Path) -> None:
    package = raw_package(
        tmp_path,
        "big",
        [("usr/", b"d", ""), *((f"usr/f{i}", b"f", "x" * 5000) for i in range(400))],
    )
    data = package.read_bytes()
    package.write_bytes(data[: len(data) - 40])
    with pytest.raises(RootError, match=r"big-1\.0-r0: .*truncated"):
        install_root(tmp_path / "root", RootSpec((package,), "x86_64"))
