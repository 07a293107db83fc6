"""Parallel single-member gzip: correct, deterministic whatever the threads and write sizes."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pakman.apk.errors import ArchiveError
from pakman.apk.gzipper import (
    GzipMemberReader,
    ParallelGzipWriter,
    gzip_bytes,
    looks_incompressible,
)


def compress(chunks: list[bytes], **options: object) -> bytes:
    out = io.BytesIO()
    writer = ParallelGzipWriter(out.write, **options)  # type: ignore[arg-type]
    for chunk in chunks:
        writer.write(chunk)
    writer.close()
    return out.getvalue()


def mixed_data(size: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    text = b"".join(b"line %d of some text\n" % rng.randrange(1000) for _ in range(size // 40))
    return (text[: size // 2] + rng.randbytes(size // 4) + text[: size // 4])[:size]


def one_member(data: bytes) -> bytes:
    decompressor = zlib.decompressobj(wbits=31)
    content = decompressor.decompress(data)
    assert decompressor.eof and decompressor.unused_data == b""
    return content


def test_one_member_that_decompresses_to_the_input() -> None:
    data = mixed_data(5 << 20)
    compressed = compress([data])
    assert one_member(compressed) == data
    assert gzip.decompress(compressed) == data
    assert compressed[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"


def test_same_bytes_for_any_thread_count_and_write_pattern() -> None:
    data = mixed_data(3 << 20 | 12345)
    reference = compress([data], threads=1)
    rng = random.Random(2)
    pieces, offset = [], 0
    while offset < len(data):
        size = rng.choice((1, 511, 4096, 1 << 20, 3 << 19))
        pieces.append(data[offset : offset + size])
        offset += size
    assert compress(pieces, threads=3) == reference
    assert compress([data], threads=2, level=5) == reference


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=5000), st.integers(1, 9), st.sampled_from(["zlib-ng", "zlib"]))
def test_round_trip_small_blocks(data: bytes, level: int, engine: str) -> None:
    compressed = compress([data], level=level, engine=engine, block_size=1024, threads=2)
    assert one_member(compressed) == data


def test_exact_multiple_of_the_block_size_and_empty_input() -> None:
    data = os.urandom(2048)
    assert one_member(compress([data], block_size=1024)) == data
    assert one_member(compress([])) == b""


def test_incompressible_blocks_are_stored_compressible_ones_deflated() -> None:
    assert looks_incompressible(os.urandom(1 << 20))
    assert not looks_incompressible(mixed_data(1 << 20)[: 1 << 19] * 2)
    random_data = os.urandom(2 << 20)
    assert len(compress([random_data])) < len(random_data) * 1.001


def test_levels_are_checked() -> None:
    for level in (0, 10):
        with pytest.raises(ValueError, match="levels are 1 to 9"):
            ParallelGzipWriter(lambda b: None, level=level)
    with pytest.raises(ValueError, match="engine"):
        ParallelGzipWriter(lambda b: None, engine="isal")  # type: ignore[arg-type]


def test_member_reader_splits_members_and_hashes_their_compressed_bytes() -> None:
    first, second = gzip_bytes(b"first" * 1000), compress([mixed_data(3 << 20)])
    reader = GzipMemberReader(io.BytesIO(first + second), chunk_size=4096)
    digests = [hashlib.sha256(), hashlib.sha256()]
    contents = []
    for digest in digests:
        assert reader.next_member([digest])
        parts = []
        while chunk := reader.read(1000):
            parts.append(chunk)
        contents.append(b"".join(parts))
    assert not reader.next_member()
    assert contents[0] == b"first" * 1000 and len(contents[1]) == 3 << 20
    assert [d.digest() for d in digests] == [
        hashlib.sha256(first).digest(),
        hashlib.sha256(second).digest(),
    ]


def test_member_reader_reports_corruption() -> None:
    data = bytearray(gzip_bytes(b"some content " * 100))
    data[-6] ^= 0xFF  # the CRC
    reader = GzipMemberReader(io.BytesIO(bytes(data)))
    reader.next_member()
    with pytest.raises(ArchiveError, match="corrupt"):
        reader.read(1 << 20)
    reader = GzipMemberReader(io.BytesIO(gzip_bytes(b"x" * 100)[:-3]))
    reader.next_member()
    with pytest.raises(ArchiveError, match="truncated"):
        reader.read(1 << 20)


def test_hash_rest_finishes_the_member_and_hashes_the_rest_as_stored() -> None:
    first, rest = gzip_bytes(b"first" * 1000), gzip_bytes(b"second") + b"not even gzip" * 500
    reader = GzipMemberReader(io.BytesIO(first + rest), chunk_size=100)
    assert reader.next_member()
    reader.read(10)  # most of the first member is left unread
    digest = hashlib.sha256()
    assert reader.hash_rest([digest]) == len(rest)
    assert digest.digest() == hashlib.sha256(rest).digest()
    assert not reader.next_member()
    assert GzipMemberReader(io.BytesIO(b"")).hash_rest([hashlib.sha256()]) == 0
