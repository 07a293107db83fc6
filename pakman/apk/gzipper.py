"""Gzip members: one member compressed in parallel blocks, small members, and reading them back.

`ParallelGzipWriter` splits its input into fixed 1 MiB blocks and deflates
them on a thread pool the way pigz does: each block is primed with the last
32 KiB of the block before it and ends with a sync flush, so the blocks
concatenate into one deflate stream inside one gzip member. The bytes depend
only on the input, the engine and the level, never on the number of threads
or on how the input was cut into `write` calls.

Deflate runs in zlib-ng (python-zlib-ng), which releases the GIL. On
source-like text and on a Python library tree, its level 5 is much faster
than `gzip -9` per core for output a little larger; ISA-L (python-isal) is
faster still but clearly larger on such text, so it was not chosen
(`benchmarks/bench_apk.py --compare-levels` measures them). A block whose
samples do not compress (random or already compressed data) is stored
instead, which costs almost nothing; deflating it would gain nothing.
The `zlib` engine (the standard library) exists for comparison.

Reading uses the standard library's zlib, independent of the writer.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol

from zlib_ng import zlib_ng

from pakman.apk.errors import ArchiveError

if TYPE_CHECKING:
    from hashlib import _Hash

Engine = Literal["zlib-ng", "zlib"]

BLOCK_SIZE = 1 << 20
WINDOW_SIZE = 1 << 15
DEFAULT_LEVEL = 5
LEVELS = range(1, 10)
ENGINES: tuple[Engine, ...] = ("zlib-ng", "zlib")
# A block is stored when three 16 KiB samples of it shrink by less than this.
_SAMPLE_SIZE = 1 << 14
_INCOMPRESSIBLE = 0.97

# A gzip header as `gzip -n` writes it: no name, mtime 0, OS 3 (Unix).
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
# An empty final deflate block with fixed codes: ends a stream of sync-flushed blocks.
_FINAL_EMPTY_BLOCK = b"\x03\x00"


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self, mode: int = ..., /) -> bytes: ...


def check_level(level: int, engine: Engine = "zlib-ng") -> None:
    """Raise ValueError unless `level` and `engine` are valid."""
    if engine not in ENGINES:
        raise ValueError(f"unknown deflate engine {engine!r} (use {' or '.join(ENGINES)})")
    if level not in LEVELS:
        raise ValueError(f"compression levels are {LEVELS.start} to {LEVELS.stop - 1}, not {level}")


def default_threads() -> int:
    """The number of CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _raw_compressor(engine: Engine, level: int, zdict: bytes) -> _Compressor:
    module = zlib_ng if engine == "zlib-ng" else zlib
    compressor: _Compressor
    if zdict and level:
        compressor = module.compressobj(
            level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict
        )
    else:
        compressor = module.compressobj(level, zlib.DEFLATED, -15)
    return compressor


def looks_incompressible(block: bytes) -> bool:
    """True when samples from the start, middle and end of `block` barely compress."""
    if len(block) <= 3 * _SAMPLE_SIZE:
        sample = block
    else:
        middle = len(block) // 2
        sample = (
            block[:_SAMPLE_SIZE] + block[middle : middle + _SAMPLE_SIZE] + block[-_SAMPLE_SIZE:]
        )
    compressor = zlib_ng.compressobj(2, zlib.DEFLATED, -15)
    compressed = len(compressor.compress(sample)) + len(compressor.flush())
    return compressed >= _INCOMPRESSIBLE * len(sample)


def deflate_block(block: bytes, zdict: bytes, engine: Engine, level: int, last: bool) -> bytes:
    """Raw deflate of one block primed with `zdict`; byte-aligned, final only when `last`.

    Blocks that look incompressible are stored (deflate level 0).
    """
    if looks_incompressible(block):
        level = 0
    compressor = _raw_compressor(engine, level, zdict)
    flush_mode = zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH
    return compressor.compress(block) + compressor.flush(flush_mode)


class ParallelGzipWriter:
    """Compresses everything written into one gzip member, deflating blocks in parallel.

    Compressed bytes go to `sink` in order. Memory stays bounded: at most two
    blocks per thread are in flight.
    """

    def __init__(
        self,
        sink: Callable[[bytes], object],
        *,
        level: int = DEFAULT_LEVEL,
        threads: int | None = None,
        engine: Engine = "zlib-ng",
        block_size: int = BLOCK_SIZE,
    ) -> None:
        check_level(level, engine)
        self._sink = sink
        self._level = level
        self._engine: Engine = engine
        self._block_size = block_size
        self._threads = max(1, threads or default_threads())
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="deflate")
        self._in_flight: deque[Future[bytes]] = deque()
        self._buffer = bytearray()
        self._previous_tail = b""
        self._crc = 0
        self._size = 0
        self._closed = False
        sink(GZIP_HEADER)

    @property
    def bytes_in(self) -> int:
        """How many bytes have been written so far (before compression)."""
        return self._size + len(self._buffer)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Add `data` to the member."""
        self._buffer += data
        while len(self._buffer) >= self._block_size:
            block = bytes(self._buffer[: self._block_size])
            del self._buffer[: self._block_size]
            self._submit(block, last=False)

    def _submit(self, block: bytes, last: bool) -> None:
        self._crc = zlib_ng.crc32(block, self._crc)
        self._size += len(block)
        future = self._pool.submit(
            deflate_block, block, self._previous_tail, self._engine, self._level, last
        )
        self._previous_tail = block[-WINDOW_SIZE:]
        self._in_flight.append(future)
        while len(self._in_flight) > 2 * self._threads:
            self._sink(self._in_flight.popleft().result())

    def close(self) -> None:
        """Compress what is left and write the gzip trailer."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._buffer:
                self._submit(bytes(self._buffer), last=True)
                self._buffer.clear()
                tail = b""
            else:
                tail = _FINAL_EMPTY_BLOCK
            while self._in_flight:
                self._sink(self._in_flight.popleft().result())
            self._sink(tail + struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """Stop without writing a trailer (after an error)."""
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)


def gzip_bytes(data: bytes, level: int = 9) -> bytes:
    """One gzip member of `data` made with zlib, header as `gzip -n` writes it."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = compressor.compress(data) + compressor.flush()
    return GZIP_HEADER + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


class GzipMemberReader:
    """Reads a file of concatenated gzip members one member at a time.

    `next_member(hashers)` starts the next member (False at the end of the
    file); `read(n)` returns its decompressed bytes (b"" at its end) while the
    hashers see exactly its compressed bytes. Corrupt data raises ArchiveError.
    """

    def __init__(self, raw: BinaryIO, chunk_size: int = 1 << 20) -> None:
        self._raw = raw
        self._chunk_size = chunk_size
        self._input = b""
        self._decompressor: zlib._Decompress | None = None
        self._hashers: tuple[_Hash, ...] = ()
        self._done = True
        self.members = 0
        self.compressed_size = 0  # of the current member

    def next_member(self, hashers: Iterable[_Hash] = ()) -> bool:
        """Finish the current member and start the next; False when the file has no more."""
        while not self._done:
            self.read(self._chunk_size)
        if not self._input:
            self._input = self._raw.read(self._chunk_size)
            if not self._input:
                return False
        self._decompressor = zlib.decompressobj(wbits=31)
        self._hashers = tuple(hashers)
        self._done = False
        self.members += 1
        self.compressed_size = 0
        return True

    def hash_rest(self, hashers: Iterable[_Hash]) -> int:
        """Finish the current member, then feed the rest of the file as stored to `hashers`.

        The rest is not decompressed (hashing is much faster); returns its
        size in bytes. Afterwards the reader is at the end of the file.
        """
        while not self._done:
            self.read(self._chunk_size)
        hashers = tuple(hashers)
        total = 0
        data, self._input = self._input, b""
        while data:
            for hasher in hashers:
                hasher.update(data)
            total += len(data)
            data = self._raw.read(self._chunk_size)
        return total

    def read(self, size: int) -> bytes:
        """Up to `size` decompressed bytes of the current member; b"" at its end."""
        parts: list[bytes] = []
        have = 0
        decompressor = self._decompressor
        while have < size and not self._done and decompressor is not None:
            if not self._input:
                self._input = self._raw.read(self._chunk_size)
                if not self._input:
                    raise ArchiveError(f"gzip member {self.members} is truncated")
            chunk = self._input
            try:
                data = decompressor.decompress(chunk, size - have)
            except zlib.error as exc:
                raise ArchiveError(f"gzip member {self.members} is corrupt: {exc}") from None
            if decompressor.eof:
                self._input = decompressor.unused_data
                self._done = True
            else:
                self._input = decompressor.unconsumed_tail
            used = len(chunk) - len(self._input)
            if used:
                view = memoryview(chunk)[:used]
                for hasher in self._hashers:
                    hasher.update(view)
                self.compressed_size += used
            if data:
                parts.append(data)
                have += len(data)
        return b"".join(parts)
