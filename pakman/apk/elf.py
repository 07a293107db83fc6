"""A small ELF reader: what abuild's scanelf calls tell it about a built file.

`read_elf` reads the header (class, byte order, machine, type, OS ABI), the
program interpreter (PT_INTERP) and, through the dynamic segment (PT_DYNAMIC),
the libraries a file needs (DT_NEEDED) and the name it answers to (DT_SONAME).
It reads the file by seeking, never as a whole, and checks every offset and
size against the file's length before reading: a truncated or hostile file
raises `ElfError` after a bounded amount of work, never hangs or crashes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAGIC = b"\x7fELF"
ET_EXEC = 2
ET_DYN = 3
ELFOSABI_STANDALONE = 255  # scanelf's "STANDALONE": abuild does not strip those
_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ, _DT_SONAME = 0, 1, 5, 10, 14
_MAX_DYNAMIC = 1 << 20  # bytes of dynamic segment read at most (65536 entries of 64-bit ELF)
_MAX_STRING = 4096  # a soname or interpreter longer than this is not one


class ElfError(ValueError):
    """The file is not an ELF file this reader can read (truncated, malformed, or hostile)."""


@dataclass(frozen=True)
class ElfInfo:
    """What an ELF file says about itself."""

    bits: int  # 32 or 64
    little_endian: bool
    machine: int  # e_machine, e.g. 62 for x86-64, 183 for aarch64
    type: int  # e_type: ET_EXEC, ET_DYN, ...
    osabi: int
    interpreter: str | None  # PT_INTERP, e.g. /lib/ld-musl-x86_64.so.1
    needed: tuple[str, ...]  # DT_NEEDED, in the file's order
    soname: str | None  # DT_SONAME

    @property
    def is_dynamic_object(self) -> bool:
        """An executable or a shared object (scanelf's `--etype ET_DYN,ET_EXEC`)."""
        return self.type in (ET_EXEC, ET_DYN)


def is_elf(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts with ELF's magic (False for what cannot be read)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == MAGIC
    except OSError:
        return False


def read_elf(path: str | os.PathLike[str]) -> ElfInfo:
    """Read `path`'s ELF facts; ElfError when it is not a well-formed ELF file."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        return _Reader(handle, size, Path(path)).read()


class _Reader:
    def __init__(self, handle: BinaryIO, size: int, path: Path) -> None:
        self.handle, self.size, self.path = handle, size, path

    def fail(self, why: str) -> ElfError:
        return ElfError(f"{self.path}: {why}")

    def at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise self.fail(f"{length} bytes at offset {offset} lie beyond the end of the file")
        self.handle.seek(offset)
        data = self.handle.read(length)
        if len(data) != length:
            raise self.fail("the file changed while it was read")
        return data

    def string(self, offset: int, limit: int) -> str:
        data = self.at(offset, max(0, min(_MAX_STRING, limit, self.size - offset)))
        end = data.find(b"\0")
        if end < 0:
            raise self.fail(f"the string at offset {offset} has no end")
        return data[:end].decode("utf-8", "replace")

    def read(self) -> ElfInfo:
        ident = self.at(0, 16)
        if ident[:4] != MAGIC:
            raise self.fail("not an ELF file")
        if ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise self.fail(f"unknown ELF class {ident[4]} or byte order {ident[5]}")
        bits = 32 if ident[4] == 1 else 64
        order = "<" if ident[5] == 1 else ">"
        header = "HHIIIIIHHHHHH" if bits == 32 else "HHIQQQIHHHHHH"
        fields = struct.unpack(order + header, self.at(16, struct.calcsize(order + header)))
        e_type, machine, phoff = fields[0], fields[1], fields[4]
        phentsize, phnum = fields[8], fields[9]
        program = "IIIIIIII" if bits == 32 else "IIQQQQQQ"
        entry_size = struct.calcsize(order + program)
        if phnum and phentsize < entry_size:
            raise self.fail(f"program headers of {phentsize} bytes are too small")
        loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)
        interpreter_at: tuple[int, int] | None = None
        dynamic_at: tuple[int, int] | None = None
        for index in range(phnum):  # at most 65535, each a bounded read
            raw = self.at(phoff + index * phentsize, entry_size)
            if bits == 32:
                p_type, offset, vaddr, _, filesz, _, _, _ = struct.unpack(order + program, raw)
            else:
                p_type, _, offset, vaddr, _, filesz, _, _ = struct.unpack(order + program, raw)
            if p_type == _PT_LOAD:
                loads.append((vaddr, filesz, offset))
            elif p_type == _PT_INTERP:
                interpreter_at = (offset, filesz)
            elif p_type == _PT_DYNAMIC:
                dynamic_at = (offset, filesz)
        interpreter = self.string(*interpreter_at) if interpreter_at else None
        needed: list[str] = []
        soname: str | None = None
        if dynamic_at is not None:
            needed, soname = self.dynamic(order, bits, dynamic_at, loads)
        return ElfInfo(
            bits=bits,
            little_endian=order == "<",
            machine=machine,
            type=e_type,
            osabi=ident[7],
            interpreter=interpreter,
            needed=tuple(needed),
            soname=soname,
        )

    def dynamic(
        self,
        order: str,
        bits: int,
        where: tuple[int, int],
        loads: list[tuple[int, int, int]],
    ) -> tuple[list[str], str | None]:
        entry = "iI" if bits == 32 else "qQ"
        entry_size = struct.calcsize(order + entry)
        offset, length = where
        data = self.at(offset, min(length, _MAX_DYNAMIC))
        needed_at: list[int] = []
        soname_at: int | None = None
        strtab: int | None = None
        strsz = _MAX_STRING
        for tag, value in struct.iter_unpack(
            order + entry, data[: len(data) // entry_size * entry_size]
        ):
            if tag == _DT_NULL:
                break
            if tag == _DT_NEEDED:
                needed_at.append(value)
            elif tag == _DT_SONAME:
                soname_at = value
            elif tag == _DT_STRTAB:
                strtab = value
            elif tag == _DT_STRSZ:
                strsz = value
        if not needed_at and soname_at is None:
            return [], None
        if strtab is None:
            raise self.fail("the dynamic section names libraries but has no string table")
        table = self.file_offset(strtab, loads)

        def name(at: int) -> str:
            if at >= strsz:
                raise self.fail(f"a name at {at} lies outside the string table")
            return self.string(table + at, strsz - at)

        return [name(at) for at in needed_at], (name(soname_at) if soname_at is not None else None)

    def file_offset(self, address: int, loads: list[tuple[int, int, int]]) -> int:
        for vaddr, filesz, offset in loads:
            if vaddr <= address < vaddr + filesz:
                return address - vaddr + offset
        # an object without loadable segments (rare): the address is the offset
        if not loads:
            return address
        raise self.fail(f"the string table's address {address:#x} is in no loaded segment")
