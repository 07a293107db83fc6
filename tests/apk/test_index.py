"""APKINDEX.tar.gz: fields and order, noarch, signing, reuse of unchanged entries, refusals."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from apk_support import (
    EPOCH,
    KeyPair,
    assert_golden,
    make_pyweb_tree,
    member_content,
    pyweb_info,
    write_file,
)
from pakman.apk import (
    OPENRC,
    PackageInfo,
    PackageInputError,
    split_package,
    verify_file,
    write_package,
)
from pakman.apk import index as index_module
from pakman.apk.errors import ArchiveError
from pakman.apk.gzipper import gzip_bytes
from pakman.apk.index import (
    index_filenames,
    parse_index_entries,
    read_index_entry,
    write_index,
)
from pakman.apk.package import control_tar
from pakman.apk.pkginfo import render_pkginfo
from pakman.apk.reader import read_index_file
from pakman.apk.sign import signature_member
from pakman.apk.tarfmt import END_OF_ARCHIVE
from support import gzip_members


def pyweb_repository(root: Path, key_pair: KeyPair) -> Path:
    """repo/x86_64 holding pyweb, pyweb-openrc (noarch) and two versions of a helper."""
    arch_dir = root / "repo" / "x86_64"
    tree = make_pyweb_tree(root / "tree")
    main, sub = split_package(tree, root / "openrc", pyweb_info(), OPENRC)
    assert sub is not None
    write_package(tree, main, arch_dir, key_pair.key)
    write_package(root / "openrc", sub, arch_dir, key_pair.key)
    for version in ("1.10.0", "1.9.2"):
        write_file(root / f"helper-{version}/usr/bin/helper", f"v{version}\n", 0o755)
        info = PackageInfo(
            "helper",
            version,
            "x86_64",
            depends=("pyweb",),
            provides=("cmd:helper",),
            builddate=EPOCH,
        )
        write_package(root / f"helper-{version}", info, arch_dir, key_pair.key)
    return arch_dir


def index_text(path: Path) -> str:
    with path.open("rb") as handle:
        return read_index_file(handle).text


def normalise_index(text: str) -> str:
    """The index with the compressor- and key-dependent values replaced (checked separately)."""
    text = re.sub(r"^C:Q1[A-Za-z0-9+/]{27}=$", "C:<identity>", text, flags=re.M)
    return re.sub(r"^S:\d+$", "S:<file size>", text, flags=re.M)


def test_index_golden_fields_order_and_noarch(tmp_path: Path, key_pair: KeyPair) -> None:
    arch_dir = pyweb_repository(tmp_path, key_pair)
    report = write_index(
        arch_dir, key_pair.key, description="pyweb test repository", builddate=EPOCH
    )
    assert (report.packages, report.reused) == (4, 0)
    text = index_text(report.path)
    assert_golden("APKINDEX", normalise_index(text))
    blocks = text.split("\n\n")
    assert [b.split("\n")[1] for b in blocks if b] == [
        "P:helper",
        "P:helper",
        "P:pyweb",
        "P:pyweb-openrc",
    ]
    assert "V:1.9.2-r0" in blocks[0] and "V:1.10.0-r0" in blocks[1]  # apk version order, not text
    assert "A:x86_64" in blocks[3]  # the noarch subpackage is listed under the folder's arch
    for path in sorted(arch_dir.glob("*.apk")):
        entry = read_index_entry(path)
        assert f"C:{entry.identity}\nP:{entry.name}\nV:{entry.version}\n" in text
        assert f"S:{path.stat().st_size}\n" in text


def test_index_text_reads_back_into_the_entries_it_was_written_from(
    tmp_path: Path, key_pair: KeyPair
) -> None:
    arch_dir = pyweb_repository(tmp_path, key_pair)
    text = index_text(write_index(arch_dir, key_pair.key, builddate=EPOCH).path)
    parsed = {(e.name, e.version): e for e in parse_index_entries(text)}
    for path in sorted(arch_dir.glob("*.apk")):
        written = read_index_entry(path)
        # noarch packages are listed under the folder's arch; everything else reads back as written
        arch = "x86_64" if written.arch == "noarch" else written.arch
        assert parsed[written.name, written.version] == dataclasses.replace(written, arch=arch)
    assert parsed["helper", "1.10.0-r0"].provides == ("cmd:helper",)
    with pytest.raises(ArchiveError, match="without P: or V:"):
        parse_index_entries("C:Q1abc=\nV:1.0-r0\n\n")
    with pytest.raises(ArchiveError, match="not a number"):
        parse_index_entries("P:a\nV:1.0-r0\nS:big\n\n")
    assert index_filenames(text) == [e.filename for e in parse_index_entries(text)]
    assert sorted(index_filenames(text)) == sorted(p.name for p in arch_dir.glob("*.apk"))
    with pytest.raises(ArchiveError, match="without P: or V:"):
        index_filenames("C:Q1abc=\nV:1.0-r0\n\n")


def test_index_is_signed_verifiable_and_readable_by_tools(
    tmp_path: Path, key_pair: KeyPair
) -> None:
    arch_dir = pyweb_repository(tmp_path, key_pair)
    path = write_index(arch_dir, key_pair.key, builddate=EPOCH).path
    verdict = verify_file(path, key_pair.trusted)
    assert (verdict.kind, verdict.status) == ("index", "ok"), verdict.problems
    listing = subprocess.run(
        ["tar", "-tzf", path], check=True, capture_output=True, text=True
    ).stdout
    assert listing.split() == [".SIGN.RSA.test-6b000000.rsa.pub", "APKINDEX"]
    signature, index_member = gzip_members(path.read_bytes())
    (tmp_path / "sig").write_bytes(member_content(signature)[512:768])
    (tmp_path / "index.tar.gz").write_bytes(index_member)
    result = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha1",
            "-verify",
            key_pair.public_path,
            "-signature",
            tmp_path / "sig",
            tmp_path / "index.tar.gz",
        ],
        capture_output=True,
        text=True,
    )
    assert "Verified OK" in result.stdout
    assert member_content(index_member).endswith(bytes(1024))


def test_index_is_reproducible(tmp_path: Path, key_pair: KeyPair) -> None:
    first = write_index(
        pyweb_repository(tmp_path / "a", key_pair), key_pair.key, builddate=EPOCH
    ).path
    second = write_index(
        pyweb_repository(tmp_path / "b", key_pair), key_pair.key, builddate=EPOCH
    ).path
    assert first.read_bytes() == second.read_bytes()


def test_unchanged_packages_are_reused_changed_ones_reread(
    tmp_path: Path, key_pair: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    arch_dir = pyweb_repository(tmp_path, key_pair)
    cache = tmp_path / "cache" / "index.json"
    first = write_index(arch_dir, key_pair.key, builddate=EPOCH, cache=cache)
    # Files written moments ago are not trusted from the cache (time-stamp granularity)...
    assert write_index(arch_dir, key_pair.key, builddate=EPOCH, cache=cache).reused == 0
    # ...but once they are old enough, they are.
    monkeypatch.setattr(index_module, "RACY_MARGIN_NS", -(10**12))
    reads: list[Path] = []
    real_read = index_module.read_index_entry

    def counting_read(path: str | Path) -> index_module.IndexEntry:
        reads.append(Path(path))
        return real_read(path)

    monkeypatch.setattr(index_module, "read_index_entry", counting_read)
    # records trustworthy read times
    write_index(arch_dir, key_pair.key, builddate=EPOCH, cache=cache)
    reads.clear()
    second = write_index(arch_dir, key_pair.key, builddate=EPOCH, cache=cache)
    assert (second.packages, second.reused, reads) == (4, 4, [])
    assert second.path.read_bytes() == first.path.read_bytes()

    # a rebuilt package (same name and version, other content) is read again
    write_file(tmp_path / "helper-1.9.2/usr/bin/helper", "changed\n", 0o755)
    info = PackageInfo(
        "helper", "1.9.2", "x86_64", depends=("pyweb",), provides=("cmd:helper",), builddate=EPOCH
    )
    changed = write_package(tmp_path / "helper-1.9.2", info, arch_dir, key_pair.key)
    third = write_index(arch_dir, key_pair.key, builddate=EPOCH, cache=cache)
    assert third.reused == 3 and reads == [changed]
    assert f"C:{read_index_entry(changed).identity}" in index_text(third.path)
    assert verify_file(third.path, key_pair.trusted).status == "ok"


def test_a_folder_renamed_to_another_arch_does_not_reuse_its_blocks(
    tmp_path: Path, key_pair: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "RACY_MARGIN_NS", -(10**12))  # every record trusted
    root = tmp_path / "repo"
    cache = tmp_path / "index-cache.json"  # the same cache for both
    (root / "x86_64").mkdir(parents=True)
    write_file(tmp_path / "tree/usr/share/doc/a", "a\n")
    write_package(
        tmp_path / "tree",
        PackageInfo("docs", "1.0", "noarch", builddate=EPOCH),
        root / "x86_64",
        key_pair.key,
    )
    assert "A:x86_64\n" in index_text(write_index(root / "x86_64", key_pair.key, cache=cache).path)
    (root / "x86_64").rename(root / "aarch64")  # same files, same inodes, cache and all
    report = write_index(root / "aarch64", key_pair.key, cache=cache)
    assert report.reused == 0 and "A:aarch64\n" in index_text(report.path)


def test_a_corrupt_cache_is_ignored(tmp_path: Path, key_pair: KeyPair) -> None:
    arch_dir = pyweb_repository(tmp_path, key_pair)
    cache = tmp_path / "index-cache.json"
    cache.write_text("{not json")
    assert write_index(arch_dir, key_pair.key, builddate=EPOCH, cache=cache).packages == 4
    assert json.loads(cache.read_text())["format"] == index_module._CACHE_FORMAT


def test_misnamed_package_and_wrong_arch_are_refused(tmp_path: Path, key_pair: KeyPair) -> None:
    arch_dir = tmp_path / "repo" / "x86_64"
    write_file(tmp_path / "tree/usr/share/a", "a")
    package = write_package(
        tmp_path / "tree",
        PackageInfo("a", "1.0", "x86_64", builddate=EPOCH),
        arch_dir,
        key_pair.key,
    )
    package.rename(arch_dir / "a-1.1-r0.apk")
    write_package(
        tmp_path / "tree",
        PackageInfo("b", "1.0", "aarch64", builddate=EPOCH),
        arch_dir,
        key_pair.key,
    )
    with pytest.raises(PackageInputError) as caught:
        write_index(arch_dir, key_pair.key, builddate=EPOCH)
    text = str(caught.value)
    assert "a-1.1-r0.apk: .PKGINFO says a 1.0-r0" in text
    assert "b-1.0-r0.apk: arch 'aarch64' does not belong in x86_64/" in text
    assert not (arch_dir / "APKINDEX.tar.gz").exists()


def test_folder_must_be_named_after_an_architecture(tmp_path: Path, key_pair: KeyPair) -> None:
    for name in ("packages", "noarch"):
        (tmp_path / name).mkdir()
        with pytest.raises(PackageInputError, match="named after an architecture"):
            write_index(tmp_path / name, key_pair.key)


def test_sort_order_is_apks_names_case_insensitive_then_versions() -> None:
    from pakman.apk.index import IndexEntry, sort_entries

    def entry(name: str, version: str) -> IndexEntry:
        return IndexEntry("Q1", name, version, "x86_64", 1, 1)

    entries = [
        entry("b", "1.0-r0"),
        entry("B", "1.0-r0"),
        entry("a", "1.0_rc1-r0"),
        entry("a", "1.0-r1"),
        entry("a", "1.0-r0"),
        entry("A2", "2"),
    ]
    ordered = [(e.name, e.version) for e in sort_entries(entries)]
    assert ordered == [
        ("a", "1.0_rc1-r0"),
        ("a", "1.0-r0"),
        ("a", "1.0-r1"),
        ("A2", "2"),
        ("B", "1.0-r0"),
        ("b", "1.0-r0"),
    ]


@pytest.mark.parametrize("builddate", [-1, 2**33])
def test_an_index_time_outside_the_tar_mtime_field_is_refused(
    tmp_path: Path, key_pair: KeyPair, builddate: int
) -> None:
    arch_dir = tmp_path / "repo" / "x86_64"
    arch_dir.mkdir(parents=True)
    with pytest.raises(PackageInputError, match=r"0\.\.8589934591"):
        write_index(arch_dir, key_pair.key, builddate=builddate)
    assert not (arch_dir / "APKINDEX.tar.gz").exists()


def test_a_truncated_or_corrupted_package_is_refused(tmp_path: Path, key_pair: KeyPair) -> None:
    arch_dir = pyweb_repository(tmp_path, key_pair)
    index = write_index(arch_dir, key_pair.key, builddate=EPOCH).path
    before = index.read_bytes()
    good = sorted(arch_dir.glob("*.apk"))
    truncated, corrupted, no_data = good[0], good[1], good[2]
    members = gzip_members(truncated.read_bytes())
    truncated.write_bytes(members[0] + members[1] + members[2][: len(members[2]) // 2])
    data = corrupted.read_bytes()
    corrupted.write_bytes(data[:-20] + bytes([data[-20] ^ 0x55]) + data[-19:])  # in the data
    members = gzip_members(no_data.read_bytes())
    no_data.write_bytes(members[0] + members[1])  # signature and control only
    with pytest.raises(PackageInputError) as caught:
        write_index(arch_dir, key_pair.key, builddate=EPOCH)
    assert caught.value.exit_code == 3
    messages = [d.message for d in caught.value.diagnostics]
    assert messages == [
        f"{path.name}: the data does not match its datahash (truncated or corrupted)"
        for path in (truncated, corrupted, no_data)
    ]
    assert index.read_bytes() == before  # the last good index stays
    # and the index that still lists them is no longer sound
    problems = verify_file(index, key_pair.trusted).problems
    assert sorted(problems) == [
        f"{path.stem}: cannot read {path.name}: the data does not match its datahash "
        "(truncated or corrupted)"
        for path in (truncated, corrupted, no_data)
    ]


def test_a_package_without_datahash_is_refused(tmp_path: Path, key_pair: KeyPair) -> None:
    arch_dir = tmp_path / "repo" / "x86_64"
    arch_dir.mkdir(parents=True)
    info = PackageInfo("a", "1.0", "x86_64", builddate=EPOCH)
    data_member = gzip_bytes(END_OF_ARCHIVE)
    pkginfo = render_pkginfo(info, builddate=EPOCH, size=0, datahash="0" * 64)
    pkginfo = re.sub(r"^datahash = .*\n", "", pkginfo, flags=re.M)
    control = gzip_bytes(control_tar(pkginfo, {}, EPOCH))
    package = arch_dir / info.filename
    package.write_bytes(signature_member(key_pair.key, control, EPOCH) + control + data_member)
    with pytest.raises(
        PackageInputError, match=re.escape("a-1.0-r0.apk: .PKGINFO has no datahash")
    ):
        write_index(arch_dir, key_pair.key, builddate=EPOCH)


def test_the_data_is_checked_when_read_not_when_reused(
    tmp_path: Path, key_pair: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    arch_dir = pyweb_repository(tmp_path, key_pair)
    cache = tmp_path / "index-cache.json"
    monkeypatch.setattr(index_module, "RACY_MARGIN_NS", -(10**12))
    assert index_module.index_text(arch_dir, immutable=True, cache=cache)[1].reused == 0
    # corrupted in place with the same size and mtime: an immutable folder's cache
    # still trusts the entry (the file is not read again, so not hashed again)...
    package = arch_dir / "helper-1.9.2-r0.apk"
    before = package.stat()
    data = package.read_bytes()
    package.write_bytes(data[:-20] + bytes([data[-20] ^ 0x55]) + data[-19:])
    os.utime(package, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert index_module.index_text(arch_dir, immutable=True, cache=cache)[1].reused == 4
    # ...while a folder whose files may be edited sees the new ctime, reads and refuses it
    with pytest.raises(
        PackageInputError, match=re.escape("helper-1.9.2-r0.apk: the data does not match")
    ):
        index_module.index_text(arch_dir, cache=cache)
