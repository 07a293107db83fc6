"""The verifier catches every kind of tampering and every structural mistake."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

import pytest

from apk_support import (
    EPOCH,
    KeyPair,
    assemble_package,
    iter_flipped,
    make_pyweb_tree,
    pyweb_info,
    write_file,
)
from pakman.apk import PackageInfo, verify_file, write_index, write_package
from pakman.apk.errors import ArchiveError
from pakman.apk.gzipper import gzip_bytes
from pakman.apk.index import read_index_entry
from pakman.apk.tarfmt import (
    DIRECTORY,
    END_OF_ARCHIVE,
    HARDLINK,
    REGULAR,
    SYMLINK,
    TarMember,
    member_bytes,
    record_padding,
)
from pakman.apk.verify import Verdict, unsafe_name_problem
from support import gzip_members


@pytest.fixture
def package(tmp_path: Path, key_pair: KeyPair) -> Path:
    tree = make_pyweb_tree(tmp_path / "tree")
    return write_package(tree, pyweb_info(), tmp_path / "out", key_pair.key)


def problems_of(path: Path, key_pair: KeyPair) -> list[str]:
    verdict = verify_file(path, key_pair.trusted)
    assert verdict.status == "bad", verdict.summary()
    return verdict.problems


@pytest.mark.parametrize("member_index", [0, 1, 2], ids=["signature", "control", "data"])
def test_a_flipped_byte_in_any_member_is_detected(
    package: Path, key_pair: KeyPair, member_index: int
) -> None:
    data = package.read_bytes()
    members = gzip_members(data)
    start = sum(len(m) for m in members[:member_index])
    end = start + len(members[member_index])
    for tampered in iter_flipped(data, start + 10, end - 8):  # inside the compressed body
        package.write_bytes(tampered)
        verdict = verify_file(package, key_pair.trusted)
        assert verdict.status == "bad", (member_index, verdict.summary())


def test_a_flipped_byte_in_a_gzip_trailer_is_detected(package: Path, key_pair: KeyPair) -> None:
    data = package.read_bytes()
    package.write_bytes(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])  # the data member's CRC
    assert any("corrupt" in p for p in problems_of(package, key_pair))


def test_wrong_key_is_bad_and_missing_key_is_untrusted(
    package: Path, key_pair: KeyPair, impostor_key: KeyPair
) -> None:
    wrong = verify_file(package, impostor_key.trusted)
    assert (wrong.signature, wrong.status) == ("bad", "bad")
    missing = verify_file(package, {})
    assert (missing.signature, missing.status, missing.problems) == ("untrusted", "untrusted", [])
    assert missing.passed(allow_untrusted=True) and not missing.passed()


def test_a_package_signed_by_another_key_under_the_same_name(
    tmp_path: Path, key_pair: KeyPair, impostor_key: KeyPair
) -> None:
    tree = make_pyweb_tree(tmp_path / "tree")
    package = write_package(tree, pyweb_info(), tmp_path / "out", impostor_key.key)
    assert verify_file(package, key_pair.trusted).signature == "bad"


def test_renamed_package_is_detected(package: Path, key_pair: KeyPair) -> None:
    renamed = package.with_name("pyweb-1.2.1-r0.apk")
    package.rename(renamed)
    assert problems_of(renamed, key_pair) == [
        "file name should be pyweb-1.2.0-r7.apk, as apk fetches it"
    ]


def data_tar(*members: tuple[TarMember, bytes]) -> bytes:
    body = b"".join(member_bytes(member, content) for member, content in members)
    return body + END_OF_ARCHIVE + record_padding(len(body) + len(END_OF_ARCHIVE))


def folder(name: str) -> tuple[TarMember, bytes]:
    return TarMember(f"{name}/", DIRECTORY, 0o755, EPOCH), b""


def file(name: str, content: bytes, sha1: str | None = "auto") -> tuple[TarMember, bytes]:
    checksum = hashlib.sha1(content).hexdigest() if sha1 == "auto" else sha1
    return TarMember(name, REGULAR, 0o644, EPOCH, size=len(content), sha1=checksum), content


INFO = PackageInfo("crafted", "1.0", "x86_64", builddate=EPOCH)


def crafted(
    tmp_path: Path, key_pair: KeyPair, *members: tuple[TarMember, bytes], size: int | None = None
) -> Path:
    content_size = sum(m.size for m, _ in members if m.typeflag == REGULAR)
    return assemble_package(
        tmp_path / INFO.filename,
        data_tar(*members),
        INFO,
        key_pair.key,
        size=content_size if size is None else size,
    )


def test_a_correct_crafted_package_passes(tmp_path: Path, key_pair: KeyPair) -> None:
    path = crafted(
        tmp_path, key_pair, folder("usr"), folder("usr/share"), file("usr/share/a", b"a")
    )
    assert verify_file(path, key_pair.trusted).status == "ok"


def test_wrong_per_file_checksum_is_detected(tmp_path: Path, key_pair: KeyPair) -> None:
    path = crafted(
        tmp_path,
        key_pair,
        folder("usr"),
        file("usr/a", b"real", sha1=hashlib.sha1(b"fake").hexdigest()),
    )
    assert problems_of(path, key_pair) == ["usr/a: content does not match its SHA-1 checksum"]


def test_missing_per_file_checksum_is_detected(tmp_path: Path, key_pair: KeyPair) -> None:
    path = crafted(tmp_path, key_pair, folder("usr"), file("usr/a", b"x", sha1=None))
    assert "usr/a: no APK-TOOLS.checksum.SHA1 record" in problems_of(path, key_pair)[0]


def test_missing_directory_entry_is_detected(tmp_path: Path, key_pair: KeyPair) -> None:
    path = crafted(tmp_path, key_pair, folder("usr"), file("usr/share/a", b"a"))
    assert problems_of(path, key_pair) == [
        "usr/share/a: no entry for its folder usr/share/ before it (apk: no dirent in archive)"
    ]


def test_bad_symlink_checksum_and_dangling_hard_link(tmp_path: Path, key_pair: KeyPair) -> None:
    link = TarMember(
        "usr/l", SYMLINK, 0o777, EPOCH, linkname="a", sha1=hashlib.sha1(b"b").hexdigest()
    )
    hard = TarMember("usr/h", HARDLINK, 0o644, EPOCH, linkname="usr/missing")
    path = crafted(tmp_path, key_pair, folder("usr"), (link, b""), (hard, b""), size=1)
    assert problems_of(path, key_pair) == [
        "usr/l: symlink target does not match its SHA-1 checksum",
        "usr/h: hard link to usr/missing, which is not a file stored before it",
    ]


def test_unsafe_names_are_detected(tmp_path: Path, key_pair: KeyPair) -> None:
    path = crafted(
        tmp_path, key_pair, folder("usr"), file("usr/../../etc/passwd", b"x"), file("/abs", b"y")
    )
    problems = problems_of(path, key_pair)
    assert any("'.' or '..'" in p for p in problems) and any("absolute" in p for p in problems)


@pytest.mark.parametrize(
    ("name", "is_dir", "fragment"),
    [
        ("usr/./x", False, "'.' or '..'"),
        ("usr/x\x07", False, "control characters"),
        (".hidden", False, "skips"),
        ("usr/.keep_dir", False, ".keep_"),
        ("usr/.keep_dir/", True, None),
        ("usr/bin/", True, None),
    ],
)
def test_unsafe_name_rules(name: str, is_dir: bool, fragment: str | None) -> None:
    problem = unsafe_name_problem(name, is_dir)
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None and fragment in problem


def test_wrong_size_and_datahash_are_detected(tmp_path: Path, key_pair: KeyPair) -> None:
    path = crafted(tmp_path, key_pair, folder("usr"), file("usr/a", b"abc"), size=99)
    assert problems_of(path, key_pair) == [".PKGINFO size = 99 but the files add up to 3"]
    path = assemble_package(
        tmp_path / INFO.filename,
        data_tar(folder("usr")),
        INFO,
        key_pair.key,
        size=1,
        datahash="0" * 64,
    )
    assert "datahash does not match" in problems_of(path, key_pair)[0]


def test_truncated_data_and_extra_members_are_detected(tmp_path: Path, key_pair: KeyPair) -> None:
    path = crafted(tmp_path, key_pair, folder("usr"), file("usr/a", b"a"))
    path.write_bytes(path.read_bytes() + gzip_bytes(b"extra"))
    assert any("more than one data member" in p for p in problems_of(path, key_pair))
    body = member_bytes(*folder("usr"))  # no end-of-archive blocks at all
    path = assemble_package(tmp_path / INFO.filename, body, INFO, key_pair.key, size=1)
    assert any("lacks its end-of-archive blocks" in p for p in problems_of(path, key_pair))


def test_not_a_package_at_all(tmp_path: Path, key_pair: KeyPair) -> None:
    path = write_file(tmp_path / "x.apk", b"not gzip")
    verdict = verify_file(path, key_pair.trusted)
    assert verdict.status == "bad" and verdict.problems[0].startswith("unreadable")
    missing = verify_file(tmp_path / "nope.apk", key_pair.trusted)
    assert missing.status == "bad" and missing.problems[0].startswith("cannot read")


def test_index_entry_pointing_at_a_changed_package_is_detected(
    tmp_path: Path, key_pair: KeyPair
) -> None:
    arch_dir = tmp_path / "repo" / "x86_64"
    tree = make_pyweb_tree(tmp_path / "tree")
    write_package(tree, pyweb_info(), arch_dir, key_pair.key)
    index = write_index(arch_dir, key_pair.key, builddate=EPOCH).path
    assert verify_file(index, key_pair.trusted).status == "ok"
    write_file(tree / "var/lib/pyweb/src/main.py", "print('changed')\n")
    write_package(tree, pyweb_info(), arch_dir, key_pair.key)  # same name and version
    problems = problems_of(index, key_pair)
    # Each field the changed package no longer matches, and nothing else.
    assert [p.split(" is ")[0] for p in problems] == [
        "pyweb-1.2.0-r7: C: (identity)",
        "pyweb-1.2.0-r7: S: (size)",
        "pyweb-1.2.0-r7: I: (installed size)",
    ]
    (arch_dir / "pyweb-1.2.0-r7.apk").unlink()
    assert problems_of(index, key_pair) == [
        f"pyweb-1.2.0-r7: pyweb-1.2.0-r7.apk is not in {arch_dir}"
    ]


def test_index_in_the_wrong_folder_and_tampered_index(tmp_path: Path, key_pair: KeyPair) -> None:
    arch_dir = tmp_path / "repo" / "x86_64"
    write_file(tmp_path / "tree/usr/share/a", "a")
    write_package(
        tmp_path / "tree",
        PackageInfo("a", "1.0", "x86_64", builddate=EPOCH),
        arch_dir,
        key_pair.key,
    )
    index = write_index(arch_dir, key_pair.key, builddate=EPOCH).path
    other = tmp_path / "repo" / "aarch64"
    shutil.copytree(arch_dir, other)
    assert any(
        "A:x86_64 but the index is in aarch64/" in p
        for p in problems_of(other / index.name, key_pair)
    )
    data = index.read_bytes()
    signature_size = len(gzip_members(data)[0])
    for tampered in iter_flipped(data, signature_size + 10, len(data) - 8):
        index.write_bytes(tampered)
        assert verify_file(index, key_pair.trusted).status == "bad"


def test_verdict_as_dict_and_summary(package: Path, key_pair: KeyPair) -> None:
    verdict = verify_file(package, key_pair.trusted)
    assert verdict.as_dict() == {
        "path": str(package),
        "kind": "package",
        "status": "ok",
        "signature": "trusted",
        "keyname": "test-6b000000.rsa.pub",
        "package": "pyweb-1.2.0-r7",
        "problems": [],
    }
    assert (
        verdict.summary()
        == f"{package}: ok (package pyweb-1.2.0-r7, signed by test-6b000000.rsa.pub)"
    )


def test_a_fifo_or_a_folder_is_a_clear_bad_verdict_without_blocking(
    tmp_path: Path, key_pair: KeyPair
) -> None:
    fifo = tmp_path / "pipe.apk"
    os.mkfifo(fifo)
    result: list[Verdict] = []
    worker = threading.Thread(target=lambda: result.append(verify_file(fifo, key_pair.trusted)))
    worker.daemon = True
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # unblock the thread by opening the other end, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("verify_file blocked on a FIFO")
    (verdict,) = result
    assert verdict.status == "bad" and verdict.problems == ["not a regular file (a FIFO)"]
    folder = verify_file(tmp_path, key_pair.trusted)
    assert folder.status == "bad" and folder.problems == ["not a regular file (a folder)"]
    link = tmp_path / "link.apk"
    link.symlink_to(fifo)  # followed, as for a package: what it points at is judged
    assert verify_file(link, key_pair.trusted).problems == ["not a regular file (a FIFO)"]
    with pytest.raises(ArchiveError, match=r"not a regular file \(a FIFO\)"):
        read_index_entry(fifo)  # what pakman index reads, and verify for an index's entries
