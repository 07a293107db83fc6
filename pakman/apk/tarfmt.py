"""POSIX pax tar, as apk reads it: writing headers, and reading entries back.

A pax extended header (typeflag `x`) carries the records apk needs: the
per-file `APK-TOOLS.checksum.SHA1`, and `path`/`linkpath` when a name does not
fit the 100-byte ustar field or is not ASCII. apk-tools ignores the ustar
`prefix` field for pax headers and never reads the pax `size` record, so
files of 8 GiB and more (which need it) are refused. Nor does it read the pax
`mtime` record, so time stamps must fit the 11 octal digits of the ustar
field: 0..8589934591 (until the year 2242).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pakman.apk.errors import ArchiveError

BLOCK_SIZE = 512
RECORD_SIZE = 10240  # GNU tar pads a whole archive to a multiple of this
END_OF_ARCHIVE = bytes(2 * BLOCK_SIZE)
MAX_FILE_SIZE = 8**11 - 1  # what fits the 11 octal digits of the ustar size field
MAX_MTIME = 8**11 - 1  # likewise for the mtime field (apk reads no pax mtime record)

REGULAR = b"0"
HARDLINK = b"1"
SYMLINK = b"2"
DIRECTORY = b"5"
PAX_HEADER = b"x"
GLOBAL_PAX_HEADER = b"g"
GNU_LONG_NAME = b"L"
GNU_LONG_LINK = b"K"

CHECKSUM_RECORD = "APK-TOOLS.checksum.SHA1"

_NUL = b"\0"
_ZERO_BLOCK = bytes(BLOCK_SIZE)


def padding(size: int) -> bytes:
    """The zero bytes that round `size` up to a whole tar block."""
    return bytes(-size % BLOCK_SIZE)


def record_padding(size: int) -> bytes:
    """The zero bytes that round an archive of `size` bytes up to a whole 10 KiB record."""
    return bytes(-size % RECORD_SIZE)


def pax_record(key: str, value: str) -> bytes:
    """One `"<len> <key>=<value>\\n"` record; `<len>` counts the whole record, itself included."""
    body = b" %s=%s\n" % (key.encode(), value.encode())
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _ustar_header(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typeflag: bytes,
    linkname: bytes,
    uname: bytes,
    gname: bytes,
) -> bytes:
    header = b"".join(
        (
            name[:100].ljust(100, _NUL),
            b"%07o\0" % mode,
            b"%07o\0" % uid,
            b"%07o\0" % gid,
            b"%011o\0" % size,
            b"%011o\0" % mtime,
            b"        ",  # the checksum field counts as spaces while summing
            typeflag,
            linkname[:100].ljust(100, _NUL),
            b"ustar\x0000",
            uname.ljust(32, _NUL),
            gname.ljust(32, _NUL),
            b"0000000\0",
            b"0000000\0",
            bytes(167),  # prefix (unused) and padding
        )
    )
    return b"%s%06o\0 %s" % (header[:148], sum(header), header[156:])


def _fits_ustar(text: bytes) -> bool:
    return len(text) <= 100 and text.isascii()


@dataclass(frozen=True)
class TarMember:
    """One entry to write: a directory (name ends in '/'), file, symlink or hard link."""

    name: str
    typeflag: bytes
    mode: int
    mtime: int
    size: int = 0
    linkname: str = ""
    uid: int = 0
    gid: int = 0
    uname: str = "root"
    gname: str = "root"
    sha1: str | None = None  # hex; becomes the APK-TOOLS.checksum.SHA1 pax record


def member_header(member: TarMember) -> bytes:
    """The pax extended header (when one is needed) and the ustar header of `member`."""
    name = member.name.encode()
    linkname = member.linkname.encode()
    if member.size > MAX_FILE_SIZE:
        raise ArchiveError(f"{member.name}: files of 8 GiB or more cannot be stored for apk")
    if not 0 <= member.mtime <= MAX_MTIME:
        raise ArchiveError(f"{member.name}: mtime {member.mtime} is outside 0..{MAX_MTIME}")
    records = []
    if not _fits_ustar(name):
        records.append(pax_record("path", member.name))
    if not _fits_ustar(linkname):
        records.append(pax_record("linkpath", member.linkname))
    if member.sha1 is not None:
        records.append(pax_record(CHECKSUM_RECORD, member.sha1))
    uname, gname = member.uname.encode(), member.gname.encode()
    header = _ustar_header(
        name,
        member.mode,
        member.uid,
        member.gid,
        member.size,
        member.mtime,
        member.typeflag,
        linkname,
        uname,
        gname,
    )
    if not records:
        return header
    pax = b"".join(records)
    parent, base = posixpath.split(member.name.rstrip("/"))
    pax_name = f"{parent or '.'}/PaxHeaders/{base}".encode()
    pax_header = _ustar_header(
        pax_name,
        0o644,
        member.uid,
        member.gid,
        len(pax),
        member.mtime,
        PAX_HEADER,
        b"",
        uname,
        gname,
    )
    return pax_header + pax + padding(len(pax)) + header


def member_bytes(member: TarMember, content: bytes = b"") -> bytes:
    """A whole small entry: headers, content and padding."""
    return member_header(member) + content + padding(len(content))


# ----------------------------------------------------------------------------
# Reading


@dataclass
class TarEntry:
    """One entry read back, with its pax records applied."""

    name: str
    typeflag: bytes
    mode: int
    uid: int
    gid: int
    uname: str
    gname: str
    size: int
    mtime: int
    linkname: str
    pax: dict[str, str] = field(default_factory=dict)

    @property
    def is_dir(self) -> bool:
        return self.typeflag == DIRECTORY

    @property
    def is_file(self) -> bool:
        return self.typeflag in (REGULAR, b"\0", b"7")

    @property
    def is_symlink(self) -> bool:
        return self.typeflag == SYMLINK

    @property
    def is_hardlink(self) -> bool:
        return self.typeflag == HARDLINK


def _octal(field: bytes, what: str) -> int:
    text = field.rstrip(b"\0 ").lstrip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ArchiveError(f"tar header: {what} is not an octal number: {text!r}") from None


def _text(field: bytes) -> str:
    return field.split(_NUL, 1)[0].decode("utf-8", "surrogateescape")


def parse_pax_records(data: bytes) -> dict[str, str]:
    """The records of a pax extended header; malformed data raises ArchiveError."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        space = data.find(b" ", position)
        if space < 0:
            raise ArchiveError("malformed pax record")
        try:
            length = int(data[position:space])
        except ValueError:
            raise ArchiveError("malformed pax record length") from None
        end = position + length
        if length <= 0 or end > len(data) or data[end - 1 : end] != b"\n":
            raise ArchiveError("malformed pax record")
        key, equals, value = data[space + 1 : end - 1].partition(b"=")
        if not equals:
            raise ArchiveError("malformed pax record: no '='")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        position = end
    return records


class TarReader:
    """Reads tar entries from a `read(n)` function, streaming the content.

    Iterate to get entries; while an entry is current, `read_content` yields
    its bytes in chunks (unread content is skipped before the next entry).
    `end_blocks` counts the zero blocks seen; the stream may end right after
    an entry (apk's signature and control members have no end blocks).
    """

    def __init__(self, read: Callable[[int], bytes], chunk_size: int = 1 << 20) -> None:
        self._read = read
        self._chunk_size = chunk_size
        self._remaining = 0  # content bytes of the current entry not yet read
        self._padding = 0
        self.end_blocks = 0
        self.bad_header_checksums: list[str] = []

    def _read_exact(self, size: int) -> bytes:
        parts = []
        missing = size
        while missing:
            data = self._read(min(missing, self._chunk_size))
            if not data:
                raise ArchiveError("tar stream ends in the middle of an entry")
            parts.append(data)
            missing -= len(data)
        return b"".join(parts)

    def _skip_current(self) -> None:
        for _ in self.read_content():
            pass
        if self._padding:
            self._read_exact(self._padding)
            self._padding = 0

    def read_content(self) -> Iterator[bytes]:
        """The current entry's content, in chunks."""
        while self._remaining:
            data = self._read(min(self._remaining, self._chunk_size))
            if not data:
                raise ArchiveError("tar stream ends in the middle of a file")
            self._remaining -= len(data)
            yield data

    def _next_block(self) -> bytes | None:
        first = self._read(BLOCK_SIZE)
        if not first:
            return None
        if len(first) < BLOCK_SIZE:
            first += self._read_exact(BLOCK_SIZE - len(first))
        return first

    def __iter__(self) -> Iterator[TarEntry]:
        pax: dict[str, str] = {}
        long_name: str | None = None
        while True:
            self._skip_current()
            block = self._next_block()
            if block is None:
                return
            if block == _ZERO_BLOCK:
                self.end_blocks += 1
                continue
            if self.end_blocks:
                raise ArchiveError("tar entry after the end-of-archive blocks")
            if block[257:262] != b"ustar":
                raise ArchiveError("not a ustar/pax tar header")
            entry = self._parse_header(block)
            size = entry.size
            if entry.typeflag in (PAX_HEADER, GLOBAL_PAX_HEADER, GNU_LONG_NAME, GNU_LONG_LINK):
                data = self._read_exact(size + -size % BLOCK_SIZE)[:size]
                if entry.typeflag == PAX_HEADER:
                    pax = parse_pax_records(data)
                elif entry.typeflag == GNU_LONG_NAME:
                    long_name = data.split(_NUL, 1)[0].decode("utf-8", "surrogateescape")
                continue
            if long_name is not None:
                entry.name = long_name
            if "path" in pax:
                entry.name = pax["path"]
            if "linkpath" in pax:
                entry.linkname = pax["linkpath"]
            entry.pax = pax
            pax, long_name = {}, None
            # hard links, symlinks and directories carry no content in practice
            self._remaining = size
            self._padding = -size % BLOCK_SIZE
            yield entry

    def _parse_header(self, block: bytes) -> TarEntry:
        stored = _octal(block[148:156], "checksum")
        computed = sum(block[:148]) + sum(block[156:]) + 8 * 0x20
        name = _text(block[0:100])
        prefix = _text(block[345:500])
        typeflag = block[156:157]
        if prefix and typeflag not in (PAX_HEADER, GLOBAL_PAX_HEADER):
            name = f"{prefix}/{name}"
        if stored != computed:
            self.bad_header_checksums.append(name)
        return TarEntry(
            name=name,
            typeflag=typeflag,
            mode=_octal(block[100:108], "mode") & 0o7777,
            uid=_octal(block[108:116], "uid"),
            gid=_octal(block[116:124], "gid"),
            size=_octal(block[124:136], "size"),
            mtime=_octal(block[136:148], "mtime"),
            linkname=_text(block[157:257]),
            uname=_text(block[265:297]),
            gname=_text(block[297:329]),
        )
