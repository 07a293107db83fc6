"""The ELF reader: real files compiled at test time, hand-made ones of every class and byte order, and damaged ones."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from pakman.apk.elf import ET_DYN, ET_EXEC, ElfError, is_elf, read_elf

_LIB = "int greet(void) { return 42; }\n"
_MAIN = "int greet(void);\nint main(void) { return greet() == 42 ? 0 : 1; }\n"


def _compile(compiler: str, folder: Path) -> tuple[Path, Path, Path]:
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    (folder / "g.c").write_text(_LIB)
    (folder / "m.c").write_text(_MAIN)
    library, program, static = folder / "libgreet.so.1", folder / "app", folder / "static"
    run = lambda *a: subprocess.run([compiler, *a], check=True, cwd=folder)  # noqa: E731
    run("-shared", "-fPIC", "-Wl,-soname,libgreet.so.1", "-o", library, "g.c")
    run("-o", program, "m.c", f"-L{folder}", "-l:libgreet.so.1")
    run("-static", "-o", static, "m.c", "g.c")
    return library, program, static


@pytest.mark.parametrize("compiler", ["musl-gcc", "gcc"])
def test_compiled_library_program_and_static_binary(compiler: str, tmp_path: Path) -> None:
    library, program, static = _compile(compiler, tmp_path)
    lib = read_elf(library)
    assert (lib.bits, lib.little_endian, lib.type, lib.soname) == (
        64,
        True,
        ET_DYN,
        "libgreet.so.1",
    )
    assert lib.interpreter is None
    app = read_elf(program)
    assert app.soname is None
    assert app.needed[0] == "libgreet.so.1"
    assert app.interpreter is not None
    if compiler == "musl-gcc":
        assert app.interpreter.startswith("/lib/ld-musl-")
    else:
        assert "ld-linux" in app.interpreter
    assert app.machine == read_elf(static).machine == lib.machine
    fixed = read_elf(static)
    assert fixed.needed == () and fixed.interpreter is None and fixed.soname is None
    assert fixed.type in (ET_EXEC, ET_DYN)  # static-pie is ET_DYN
    assert is_elf(program) and is_elf(static)


def _handmade(bits: int, order: str, *, needed: tuple[str, ...], soname: str | None) -> bytes:
    """An ELF file with a loadable segment, an interpreter and a dynamic section."""
    strings = b"\0"
    offsets = {}
    for name in (*needed, *([soname] if soname else []), "/lib/ld-x.so.1"):
        offsets[name] = len(strings)
        strings += name.encode() + b"\0"
    header_size = 52 if bits == 32 else 64
    ph_size = 32 if bits == 32 else 56
    phoff = header_size
    dyn_entry = "iI" if bits == 32 else "qQ"
    strtab_off = phoff + 3 * ph_size
    vaddr = 0x10000
    dynamic_entries = [(1, offsets[n]) for n in needed]
    if soname:
        dynamic_entries.append((14, offsets[soname]))
    dynamic_entries += [(5, vaddr + strtab_off), (10, len(strings)), (0, 0)]
    dynamic = b"".join(struct.pack(order + dyn_entry, *e) for e in dynamic_entries)
    dyn_off = strtab_off + len(strings)
    total = dyn_off + len(dynamic)
    interp = (strtab_off + offsets["/lib/ld-x.so.1"], len("/lib/ld-x.so.1") + 1)
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 1 if order == "<" else 2, 1, 0]) + bytes(8)
    if bits == 32:
        header = struct.pack(order + "HHIIIIIHHHHHH", 3, 8, 1, 0, phoff, 0, 0, 52, 32, 3, 0, 0, 0)
        phdr = "IIIIIIII"
        rows = [
            (1, 0, vaddr, vaddr, total, total, 5, 0x1000),
            (3, interp[0], 0, 0, interp[1], interp[1], 4, 1),
            (2, dyn_off, vaddr + dyn_off, 0, len(dynamic), len(dynamic), 6, 4),
        ]
    else:
        header = struct.pack(order + "HHIQQQIHHHHHH", 3, 2, 1, 0, phoff, 0, 0, 64, 56, 3, 0, 0, 0)
        phdr = "IIQQQQQQ"
        rows = [
            (1, 5, 0, vaddr, vaddr, total, total, 0x1000),
            (3, 4, interp[0], 0, 0, interp[1], interp[1], 1),
            (2, 6, dyn_off, vaddr + dyn_off, 0, len(dynamic), len(dynamic), 8),
        ]
    body = ident + header + b"".join(struct.pack(order + phdr, *r) for r in rows)
    return body + strings + dynamic


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("order", ["<", ">"])
def test_every_class_and_byte_order(bits: int, order: str, tmp_path: Path) -> None:
    path = tmp_path / "lib"
    path.write_bytes(_handmade(bits, order, needed=("libc.so", "libz.so.1"), soname="libq.so.2"))
    info = read_elf(path)
    assert (info.bits, info.little_endian) == (bits, order == "<")
    assert info.needed == ("libc.so", "libz.so.1")
    assert info.soname == "libq.so.2"
    assert info.interpreter == "/lib/ld-x.so.1"
    assert info.machine == (8 if bits == 32 else 2)


def test_damaged_files_raise_and_never_hang(tmp_path: Path) -> None:
    good = _handmade(64, "<", needed=("libc.so",), soname=None)
    path = tmp_path / "f"
    cases = [b"", b"\x7fEL", b"\x7fELF", b"garbage" * 20, b"\x7fELF\x03\x01" + bytes(100)]
    cases += [good[:cut] for cut in range(0, len(good) - 1, 7)]
    # phnum at its largest with the program headers pointing past the end
    huge = bytearray(good)
    struct.pack_into("<H", huge, 56, 0xFFFF)
    cases.append(bytes(huge))
    # a string table address in no loaded segment, and a name with no end
    for position in range(64, len(good), 4):
        broken = bytearray(good)
        struct.pack_into("<I", broken, position, 0xFFFFFFFF)
        cases.append(bytes(broken))
    unterminated = bytearray(good)
    unterminated[-40:] = b"A" * 40
    cases.append(bytes(unterminated))
    raised = 0
    for data in cases:
        path.write_bytes(data)
        try:
            read_elf(path)
        except ElfError:
            raised += 1
    assert raised >= len(cases) // 2  # most damage is noticed; none crashed with another error
    path.write_bytes(b"")
    assert not is_elf(path)
    assert not is_elf(tmp_path / "missing")
