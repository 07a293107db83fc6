"""The package writer: layout, entries, owners, links, refusals, reproducibility, cross-checks."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
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
    PackageInputError,
    PublicKey,
    split_package,
    verify_file,
    write_package,
)
from pakman.apk.pkginfo import PackageInfo
from pakman.apk.reader import read_package_control
from support import gzip_members


def normalise_pkginfo(text: str) -> str:
    """.PKGINFO with the compressor-dependent datahash replaced (it has its own tests)."""
    return re.sub(
        r"^datahash = [0-9a-f]{64}$", "datahash = <sha256 of the data member>", text, flags=re.M
    )


def build_pyweb(tmp_path: Path, key_pair: KeyPair, **changes: object) -> Path:
    tree = make_pyweb_tree(tmp_path / "tree")
    return write_package(tree, pyweb_info(**changes), tmp_path / "out", key_pair.key)


def tar_members(package: Path) -> list[tarfile.TarInfo]:
    """The entries of all three members, read by Python's tarfile (an independent reader)."""
    with tarfile.open(package, "r:gz") as archive:
        return archive.getmembers()


def test_package_has_three_gzip_members_signature_control_data(
    tmp_path: Path, key_pair: KeyPair
) -> None:
    package = build_pyweb(tmp_path, key_pair)
    assert package.name == "pyweb-1.2.0-r7.apk"
    members = gzip_members(package.read_bytes())
    assert len(members) == 3
    for member in members:
        assert member[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"  # no name, mtime 0
    signature, control, data = (member_content(m) for m in members)
    assert signature[:512].startswith(b".SIGN.RSA.test-6b000000.rsa.pub\0")
    assert len(signature) == 1024  # one entry, no end-of-archive blocks
    assert control.startswith(b".PKGINFO\0")
    assert not control.endswith(bytes(1024))  # no end-of-archive blocks either
    assert data.endswith(bytes(1024))
    assert len(data) % 10240 == 0  # padded to whole records like GNU tar


def test_round_trip_through_the_verifier(tmp_path: Path, key_pair: KeyPair) -> None:
    package = build_pyweb(tmp_path, key_pair)
    verdict = verify_file(package, key_pair.trusted)
    assert verdict.status == "ok", verdict.problems
    assert verdict.signature == "trusted"
    assert verdict.package == "pyweb-1.2.0-r7"


def test_entries_sorted_with_every_parent_directory_and_root_owner(
    tmp_path: Path, key_pair: KeyPair
) -> None:
    package = build_pyweb(tmp_path, key_pair)
    entries = [m for m in tar_members(package) if not m.name.startswith(".")]
    names = [m.name for m in entries]
    assert names == sorted(names, key=lambda n: n.encode())
    directories = {m.name for m in entries if m.isdir()}
    for name in names:
        parent = os.path.dirname(name)
        assert not parent or parent in directories, name
    assert names[:3] == ["etc", "etc/conf.d", "etc/conf.d/pyweb"]
    for member in entries:
        assert member.mtime == EPOCH
        if member.name == "var/lib/pyweb":
            assert (member.uname, member.gname, member.uid, member.gid) == ("pyweb", "pyweb", 0, 0)
        else:
            assert (member.uname, member.gname, member.uid, member.gid) == ("root", "root", 0, 0)


def test_modes_checksums_symlinks_and_hard_links(tmp_path: Path, key_pair: KeyPair) -> None:
    package = build_pyweb(tmp_path, key_pair)
    tree = tmp_path / "tree"
    by_name = {m.name: m for m in tar_members(package)}
    run = by_name["var/lib/pyweb/service/run"]
    assert run.mode == 0o755
    assert by_name["var/lib/pyweb/src/main.py"].mode == 0o644
    content = (tree / "var/lib/pyweb/src/main.py").read_bytes()
    assert (
        by_name["var/lib/pyweb/src/main.py"].pax_headers["APK-TOOLS.checksum.SHA1"]
        == hashlib.sha1(content).hexdigest()
    )
    link = by_name["var/lib/pyweb/src/pyweb-link"]
    assert link.issym() and link.linkname == "../bin/pyweb"
    assert link.pax_headers["APK-TOOLS.checksum.SHA1"] == hashlib.sha1(b"../bin/pyweb").hexdigest()
    hard = by_name["var/lib/pyweb/src/pyweb-hardlink"]
    assert hard.islnk() and hard.linkname == "var/lib/pyweb/bin/pyweb" and hard.size == 0
    assert "APK-TOOLS.checksum.SHA1" not in hard.pax_headers
    assert by_name["var/lib/pyweb/src"].isdir() and not by_name["var/lib/pyweb/src"].pax_headers


def test_size_counts_regular_files_once_like_abuild(tmp_path: Path, key_pair: KeyPair) -> None:
    package = build_pyweb(tmp_path, key_pair)
    tree = tmp_path / "tree"
    seen, expected = set(), 0
    for path in tree.rglob("*"):
        stat = path.lstat()
        if path.is_file() and not path.is_symlink() and (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            expected += stat.st_size
    with package.open("rb") as handle:
        control = read_package_control(handle)
    assert control.first("size") == str(expected)


def test_empty_package_with_scripts_has_size_one(tmp_path: Path, key_pair: KeyPair) -> None:
    (tmp_path / "tree").mkdir()
    info = PackageInfo(
        "meta",
        "1.0",
        "noarch",
        install_scripts={"post-install": "#!/bin/sh\ntrue\n"},
        builddate=EPOCH,
    )
    package = write_package(tmp_path / "tree", info, tmp_path, key_pair.key)
    with package.open("rb") as handle:
        assert read_package_control(handle).first("size") == "1"
    assert verify_file(package, key_pair.trusted).status == "ok"


def test_pyweb_pkginfo_golden(tmp_path: Path, key_pair: KeyPair) -> None:
    package = build_pyweb(tmp_path, key_pair)
    with package.open("rb") as handle:
        control = read_package_control(handle)
    assert re.search(r"^datahash = [0-9a-f]{64}\n\Z", control.pkginfo_text, re.M)
    assert_golden("pyweb.PKGINFO", normalise_pkginfo(control.pkginfo_text))
    assert control.scripts["pre-install"].startswith(b"#!/bin/sh\n")
    assert list(control.scripts) == ["pre-install", "post-install"]


def test_bin_sh_dependency_added_only_for_sh_scripts(tmp_path: Path, key_pair: KeyPair) -> None:
    tree = tmp_path / "tree"
    write_file(tree / "usr/share/x/data", "x")

    def depends(**changes: object) -> list[str]:
        info = PackageInfo("x", "1.0", "x86_64", builddate=EPOCH, **changes)  # type: ignore[arg-type]
        package = write_package(tree, info, tmp_path / "out", key_pair.key)
        with package.open("rb") as handle:
            return read_package_control(handle).values("depend")

    assert depends() == []
    assert depends(install_scripts={"pre-install": "#! /bin/sh\nexit 0\n"}) == ["/bin/sh"]
    assert depends(install_scripts={"pre-install": "#!/bin/bash\nexit 0\n"}) == []
    assert depends(depends=("busybox>=1.36",), install_scripts={"post-install": "#!/bin/sh\n"}) == [
        "busybox>=1.36"
    ]
    assert depends(depends=("x", "jq"), install_scripts={"post-install": "#!/bin/sh\n"}) == [
        "jq",
        "/bin/sh",
    ]


@pytest.mark.parametrize(
    ("target", "message"),
    [("/usr/bin/python3", "absolute"), ("../../../outside", "outside the tree")],
)
def test_symlinks_out_of_the_tree_are_refused_unless_allowed(
    tmp_path: Path, key_pair: KeyPair, target: str, message: str
) -> None:
    tree = tmp_path / "tree"
    (tree / "usr/bin").mkdir(parents=True)
    os.symlink(target, tree / "usr/bin/python")
    info = PackageInfo("links", "1.0", "x86_64", builddate=EPOCH)
    with pytest.raises(PackageInputError, match=message):
        write_package(tree, info, tmp_path / "out", key_pair.key)
    assert not (tmp_path / "out" / info.filename).exists()
    package = write_package(
        tree, info, tmp_path / "out", key_pair.key, allow_external_symlinks=True
    )
    assert verify_file(package, key_pair.trusted).status == "ok"


def test_a_symlink_inside_the_tree_may_climb_back_down(tmp_path: Path, key_pair: KeyPair) -> None:
    tree = tmp_path / "tree"
    write_file(tree / "usr/lib/app/real", "x")
    os.symlink("../../lib/app/real", tree / "usr/lib/link")  # resolves to lib/app/real: inside
    info = PackageInfo("links", "1.0", "x86_64", builddate=EPOCH)
    assert write_package(tree, info, tmp_path / "out", key_pair.key).exists()


def test_everything_wrong_with_a_tree_is_reported_at_once(
    tmp_path: Path, key_pair: KeyPair
) -> None:
    tree = tmp_path / "tree"
    write_file(tree / ".hidden", "apk would skip this")
    write_file(tree / "usr/share/.keep_usr", "")
    write_file(tree / "usr/share/bad\nname", "x")
    os.mkfifo(tree / "usr/fifo")
    info = PackageInfo("bad", "1.0", "x86_64", builddate=EPOCH)
    with pytest.raises(PackageInputError) as caught:
        write_package(tree, info, tmp_path / "out", key_pair.key)
    text = str(caught.value)
    for fragment in (".hidden", ".keep_usr", "control characters", "usr/fifo"):
        assert fragment in text
    assert caught.value.exit_code == 3


def test_bad_metadata_is_reported_at_once(tmp_path: Path, key_pair: KeyPair) -> None:
    (tmp_path / "tree").mkdir()
    info = PackageInfo(
        "Bad Name",
        "1.0-beta",
        "amd64",
        description="two\nlines",
        depends=("ok", "not ok"),
        install_scripts={"install": "x"},
        owners={"/abs": ("root", "root"), "var/lib": ("Root", "root")},
    )
    with pytest.raises(PackageInputError) as caught:
        write_package(tmp_path / "tree", info, tmp_path / "out", key_pair.key)
    paths = [d.path for d in caught.value.diagnostics]
    assert paths == [
        "name",
        "version",
        "arch",
        "description",
        "depends[1]",
        "install_scripts['install']",
        "owners['/abs']",
        "owners['var/lib']",
    ]


def test_owner_of_a_missing_path_is_an_error(tmp_path: Path, key_pair: KeyPair) -> None:
    write_file(tmp_path / "tree/var/lib/x/file", "x")
    info = PackageInfo("x", "1.0", "x86_64", owners={"var/lib/y": ("x", "x")}, builddate=EPOCH)
    with pytest.raises(PackageInputError, match="no such path"):
        write_package(tmp_path / "tree", info, tmp_path / "out", key_pair.key)


def test_byte_identical_across_folders_times_and_thread_counts(
    tmp_path: Path, key_pair: KeyPair
) -> None:
    first_tree = make_pyweb_tree(tmp_path / "one" / "tree")
    first = write_package(
        first_tree, pyweb_info(), tmp_path / "one" / "out", key_pair.key, threads=1
    )
    time.sleep(0.01)
    second_tree = make_pyweb_tree(tmp_path / "two" / "deeper" / "tree")
    for path in second_tree.rglob("*"):  # other mtimes, set in another order
        os.utime(path, (1_000_000, 1_000_000), follow_symlinks=False)
    second = write_package(
        second_tree, pyweb_info(), tmp_path / "two" / "out", key_pair.key, threads=4
    )
    assert first.read_bytes() == second.read_bytes()


def test_source_date_epoch_sets_the_build_date(
    tmp_path: Path, key_pair: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_file(tmp_path / "tree/usr/share/x", "x")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567890")
    info = PackageInfo("x", "1.0", "x86_64")
    package = write_package(tmp_path / "tree", info, tmp_path / "out", key_pair.key)
    assert {m.mtime for m in tar_members(package)} == {1234567890}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(PackageInputError, match="SOURCE_DATE_EPOCH"):
        write_package(tmp_path / "tree", info, tmp_path / "out", key_pair.key)


def test_written_atomically_and_no_scratch_files_left(
    tmp_path: Path, key_pair: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = build_pyweb(tmp_path, key_pair)
    before = package.read_bytes()
    from pakman.apk import package as package_module

    def fail(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("signing failed")

    monkeypatch.setattr(package_module, "signature_member", fail)
    with pytest.raises(RuntimeError):
        write_package(tmp_path / "tree", pyweb_info(release=7), tmp_path / "out", key_pair.key)
    assert package.read_bytes() == before  # the old package is untouched
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [package.name]


def test_gnu_tar_and_gzip_read_every_member(tmp_path: Path, key_pair: KeyPair) -> None:
    package = build_pyweb(tmp_path, key_pair)
    subprocess.run(["gzip", "-t", package], check=True)
    listing = subprocess.run(
        ["tar", "-tzf", package], check=True, capture_output=True, text=True
    ).stdout
    assert listing.splitlines()[:3] == [
        ".SIGN.RSA.test-6b000000.rsa.pub",
        ".PKGINFO",
        ".pre-install",
    ]
    target = tmp_path / "extracted"
    target.mkdir()
    subprocess.run(["tar", "-xzf", package, "-C", target], check=True, capture_output=True)
    tree = tmp_path / "tree"
    for path in tree.rglob("*"):
        copy = target / path.relative_to(tree)
        if path.is_symlink():
            assert os.readlink(copy) == os.readlink(path)
        elif path.is_file():
            assert copy.read_bytes() == path.read_bytes()
            assert (copy.stat().st_mode & 0o7777) == (path.stat().st_mode & 0o7777)
    assert (target / "var/lib/pyweb/src/pyweb-hardlink").stat().st_ino == (
        target / "var/lib/pyweb/bin/pyweb"
    ).stat().st_ino


def test_openssl_verifies_the_signature_over_the_control_member(
    tmp_path: Path, key_pair: KeyPair
) -> None:
    package = build_pyweb(tmp_path, key_pair)
    signature_member, control_member, _ = gzip_members(package.read_bytes())
    signature = member_content(signature_member)[512 : 512 + 256]
    (tmp_path / "sig").write_bytes(signature)
    (tmp_path / "control.tar.gz").write_bytes(control_member)
    result = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha1",
            "-verify",
            key_pair.public_path,
            "-signature",
            tmp_path / "sig",
            tmp_path / "control.tar.gz",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "Verified OK" in result.stdout


def test_rsa256_signature(tmp_path: Path, key_pair: KeyPair) -> None:
    from pakman.apk import SigningKey

    key = SigningKey.from_file(key_pair.private_path, algorithm="RSA256")
    tree = make_pyweb_tree(tmp_path / "tree")
    package = write_package(tree, pyweb_info(), tmp_path / "out", key)
    names = [m.name for m in tar_members(package)]
    assert names[0] == ".SIGN.RSA256.test-6b000000.rsa.pub"
    assert verify_file(package, key_pair.trusted).status == "ok"


def test_openrc_split(tmp_path: Path, key_pair: KeyPair) -> None:
    tree = make_pyweb_tree(tmp_path / "tree")
    main, sub = split_package(tree, tmp_path / "openrc", pyweb_info(), OPENRC)
    assert sub is not None
    assert not (tree / "etc").exists()  # left empty, so removed like rmdir -p
    assert (tmp_path / "openrc/etc/init.d/pyweb").stat().st_mode & 0o777 == 0o755
    assert (sub.name, sub.arch, sub.origin, sub.install_if) == (
        "pyweb-openrc",
        "noarch",
        "pyweb",
        ("openrc", "pyweb=1.2.0-r7"),
    )
    assert sub.description == "pyweb (OpenRC init scripts)"
    assert sub.depends == () and not sub.install_scripts and not sub.owners
    assert main.owners == {"var/lib/pyweb": ("pyweb", "pyweb")}
    out = tmp_path / "repo"
    main_package = write_package(tree, main, out, key_pair.key)
    sub_package = write_package(tmp_path / "openrc", sub, out, key_pair.key)
    for package in (main_package, sub_package):
        assert verify_file(package, key_pair.trusted).status == "ok"
    assert not any(m.name.startswith("etc") for m in tar_members(main_package))
    with sub_package.open("rb") as handle:
        assert_golden(
            "pyweb-openrc.PKGINFO", normalise_pkginfo(read_package_control(handle).pkginfo_text)
        )


def test_split_without_matching_paths_returns_none(tmp_path: Path) -> None:
    write_file(tmp_path / "tree/usr/share/x", "x")
    main, sub = split_package(tmp_path / "tree", tmp_path / "sub", pyweb_info(owners={}), OPENRC)
    assert sub is None and main.name == "pyweb"
    assert (tmp_path / "tree/usr/share/x").exists()


def test_split_keeps_folders_that_still_hold_files(tmp_path: Path) -> None:
    tree = make_pyweb_tree(tmp_path / "tree")
    write_file(tree / "etc/pyweb.conf", "x")
    split_package(tree, tmp_path / "sub", pyweb_info(), OPENRC)
    assert (tree / "etc/pyweb.conf").exists() and not (tree / "etc/init.d").exists()


@pytest.mark.slow
def test_two_gigabytes_pack_with_bounded_memory(tmp_path: Path, key_pair: KeyPair) -> None:
    tree = tmp_path / "tree"
    (tree / "var/lib/big").mkdir(parents=True)
    with (tree / "var/lib/big/sparse.img").open("wb") as handle:
        handle.truncate(2 << 30)
        handle.seek(1 << 30)
        handle.write(os.urandom(1 << 20))  # some real data in the middle
    write_file(tree / "var/lib/big/small.txt", "hello\n")
    script = f"""
import resource, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from pakman.apk import PackageInfo, SigningKey, write_package, verify_file, PublicKey
key = SigningKey.from_file({str(key_pair.private_path)!r})
info = PackageInfo("big", "1.0", "x86_64", builddate={EPOCH})
package = write_package({str(tree)!r}, info, {str(tmp_path / "out")!r}, key, level=1)
verdict = verify_file(package, {{key.keyname: PublicKey.from_file({str(key_pair.public_path)!r})}})
assert verdict.status == "ok", verdict.problems
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    peak_mib = int(result.stdout.split()[-1]) / 1024
    print(f"packing and verifying 2 GiB: peak RSS {peak_mib:.0f} MiB")
    assert peak_mib < 200, f"peak RSS {peak_mib:.0f} MiB"
    assert time.monotonic() - started < 120
    assert (tmp_path / "out/big-1.0-r0.apk").stat().st_size < 64 << 20  # zeros did compress


def test_large_file_is_streamed_and_checksummed(tmp_path: Path, key_pair: KeyPair) -> None:
    data = os.urandom(3 << 20) + b"text " * (1 << 20)  # over the whole-read limit: two passes
    write_file(tmp_path / "tree/var/lib/x/blob", data)
    info = PackageInfo("x", "1.0", "x86_64", builddate=EPOCH)
    package = write_package(tmp_path / "tree", info, tmp_path / "out", key_pair.key, threads=2)
    blob = {m.name: m for m in tar_members(package)}["var/lib/x/blob"]
    assert blob.pax_headers["APK-TOOLS.checksum.SHA1"] == hashlib.sha1(data).hexdigest()
    assert verify_file(package, key_pair.trusted).status == "ok"
    shutil.rmtree(tmp_path / "tree")


def test_hard_link_to_a_top_level_file_is_stored_as_a_copy(
    tmp_path: Path, key_pair: KeyPair
) -> None:
    tree = tmp_path / "tree"
    write_file(tree / "top", "shared\n")
    (tree / "usr").mkdir()
    os.link(tree / "top", tree / "usr/again")
    info = PackageInfo("x", "1.0", "x86_64", builddate=EPOCH)
    package = write_package(tree, info, tmp_path / "out", key_pair.key)
    by_name = {m.name: m for m in tar_members(package)}
    assert (
        by_name["usr/again"].isfile() and by_name["usr/again"].size == 7
    )  # apk cannot link to "top"
    assert verify_file(package, key_pair.trusted).status == "ok"


@pytest.mark.parametrize("epoch", ["8589934592", str(2**40)])
def test_a_build_date_beyond_the_tar_mtime_field_is_refused_up_front(
    tmp_path: Path, key_pair: KeyPair, monkeypatch: pytest.MonkeyPatch, epoch: str
) -> None:
    write_file(tmp_path / "tree/usr/share/x", "x")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    info = PackageInfo("x", "1.0", "x86_64")
    with pytest.raises(PackageInputError, match=r"0\.\.8589934591") as caught:
        write_package(tmp_path / "tree", info, tmp_path / "out", key_pair.key)
    assert caught.value.exit_code == 3
    assert not (tmp_path / "out").exists()  # refused before anything was written
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    with pytest.raises(PackageInputError, match=r"builddate: .*0\.\.8589934591"):
        write_package(
            tmp_path / "tree",
            PackageInfo("x", "1.0", "x86_64", builddate=int(epoch)),
            tmp_path / "out",
            key_pair.key,
        )


def test_the_largest_tar_mtime_still_reads_back(tmp_path: Path, key_pair: KeyPair) -> None:
    write_file(tmp_path / "tree/usr/share/x", "x")
    info = PackageInfo("x", "1.0", "x86_64", builddate=8**11 - 1)
    package = write_package(tmp_path / "tree", info, tmp_path / "out", key_pair.key)
    assert verify_file(package, key_pair.trusted).status == "ok"
    assert {m.mtime for m in tar_members(package)} == {8**11 - 1}


@pytest.mark.parametrize("builddate", [-1, 2**33])
def test_negative_or_too_large_build_dates_are_refused(
    tmp_path: Path, key_pair: KeyPair, builddate: int
) -> None:
    write_file(tmp_path / "tree/usr/share/x", "x")
    info = PackageInfo("x", "1.0", "x86_64", builddate=builddate)
    with pytest.raises(PackageInputError, match=r"builddate: .*0\.\.8589934591"):
        write_package(tmp_path / "tree", info, tmp_path / "out", key_pair.key)


def test_a_package_signed_again_by_another_key(tmp_path: Path, key_pair: KeyPair) -> None:
    from pakman.apk import SigningKey, generate_key
    from pakman.apk.sign import resign_package

    package = build_pyweb(tmp_path, key_pair)
    original = package.read_bytes()
    private, public = generate_key(tmp_path / "other", "other", bits=2048, now=0x6B000000)
    other = SigningKey.from_file(private)
    resign_package(package, other)
    verdict = verify_file(package, {other.keyname: PublicKey.from_file(public)})
    assert verdict.status == "ok", verdict.problems
    assert verify_file(package, key_pair.trusted).status != "ok"
    # Only the signature member changed: control and data are the same bytes.
    assert gzip_members(package.read_bytes())[1:] == gzip_members(original)[1:]
    resign_package(package, key_pair.key)  # back to the first key: the same bytes as before
    assert package.read_bytes() == original
