"""Pax tar headers: records, long and non-ASCII names, checksums, read back by tarfile and our reader."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pakman.apk.errors import ArchiveError
from pakman.apk.tarfmt import (
    DIRECTORY,
    END_OF_ARCHIVE,
    REGULAR,
    SYMLINK,
    TarMember,
    TarReader,
    member_bytes,
    member_header,
    parse_pax_records,
    pax_record,
)


@given(st.text(min_size=1, max_size=40).filter(lambda k: "=" not in k), st.text(max_size=300))
def test_pax_record_length_counts_itself(key: str, value: str) -> None:
    record = pax_record(key, value)
    length = record.partition(b" ")[0]
    assert int(length) == len(record) and record.endswith(b"\n")
    assert parse_pax_records(record) == {key: value}


@pytest.mark.parametrize("size", range(90, 110))
def test_pax_record_lengths_around_a_digit_boundary(size: int) -> None:
    record = pax_record("k", "v" * size)
    assert int(record.split(b" ")[0]) == len(record)


def archive(*members: tuple[TarMember, bytes]) -> bytes:
    return b"".join(member_bytes(m, c) for m, c in members) + END_OF_ARCHIVE


def test_tarfile_reads_our_headers_and_records() -> None:
    long_name = "usr/share/" + "d" * 120 + "/file"
    members = [
        (TarMember("usr/", DIRECTORY, 0o755, 1000), b""),
        (
            TarMember(
                long_name, REGULAR, 0o600, 1000, size=3, uname="app", gname="app", sha1="ab" * 20
            ),
            b"abc",
        ),
        (TarMember("usr/ünïcode", REGULAR, 0o644, 1000, size=0), b""),
        (TarMember("usr/link", SYMLINK, 0o777, 1000, linkname="x" * 150, sha1="cd" * 20), b""),
    ]
    data = archive(*members)
    with tarfile.open(fileobj=io.BytesIO(data)) as reader:  # raises on a bad header checksum
        found = reader.getmembers()
    assert [m.name for m in found] == ["usr", long_name, "usr/ünïcode", "usr/link"]
    assert found[1].pax_headers == {"path": long_name, "APK-TOOLS.checksum.SHA1": "ab" * 20}
    assert (found[1].mode, found[1].uname, found[1].uid, found[1].mtime) == (0o600, "app", 0, 1000)
    assert found[3].linkname == "x" * 150
    ours = TarReader(io.BytesIO(data).read)
    read_back = [
        (e.name, e.pax.get("APK-TOOLS.checksum.SHA1"), b"".join(ours.read_content())) for e in ours
    ]
    assert read_back[1] == (long_name, "ab" * 20, b"abc")
    assert ours.end_blocks == 2 and not ours.bad_header_checksums


def test_header_is_512_bytes_without_records_for_plain_directories() -> None:
    assert len(member_header(TarMember("usr/", DIRECTORY, 0o755, 0))) == 512


def test_files_of_8_gib_are_refused() -> None:
    with pytest.raises(ArchiveError, match="8 GiB"):
        member_header(TarMember("big", REGULAR, 0o644, 0, size=8**11))


def test_reader_reports_truncation_and_garbage() -> None:
    data = member_bytes(TarMember("a", REGULAR, 0o644, 0, size=1000), b"x" * 1000)
    with pytest.raises(ArchiveError, match="middle"):
        reader = TarReader(io.BytesIO(data[:700]).read)
        for _ in reader:
            b"".join(reader.read_content())
    with pytest.raises(ArchiveError, match="ustar"):
        list(TarReader(io.BytesIO(b"x" * 512).read))


@pytest.mark.parametrize("mtime", [-1, 8**11])
def test_mtimes_outside_the_ustar_field_are_refused(mtime: int) -> None:
    with pytest.raises(ArchiveError, match=r"0\.\.8589934591"):
        member_header(TarMember("usr/", DIRECTORY, 0o755, mtime))
    entry = next(
        iter(
            TarReader(io.BytesIO(member_header(TarMember("a/", DIRECTORY, 0o755, 8**11 - 1))).read)
        )
    )
    assert entry.mtime == 8**11 - 1
