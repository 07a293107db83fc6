"""Reading packages and indexes back: signatures, control section, identity.

The reader works the way apk does (package.c, apk_sign_ctx_*): the gzip
members are read in order; `.SIGN.*` entries before anything else are
signatures; the member after them is the control member (its SHA-1 is the
package's identity, what the index's `C:` records and the signature
signs); the rest is data. Everything streams; only the small control
entries are kept in memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from pakman.apk.errors import ArchiveError
from pakman.apk.gzipper import GzipMemberReader
from pakman.apk.pkginfo import INSTALL_SCRIPTS, parse_pkginfo
from pakman.apk.sign import SIGNATURE_PREFIX, parse_signature_name
from pakman.apk.tarfmt import TarEntry, TarReader
from pakman.fileio import file_kind, open_regular

_DIGESTS = ("sha1", "sha256", "sha512")
_SIGNATURE_DIGEST = {"RSA": "sha1", "RSA256": "sha256", "RSA512": "sha512"}
MAX_CONTROL_ENTRY = 16 << 20  # refuse absurd control entries instead of reading them into memory


class NotRegularFileError(ArchiveError):
    """The path is a FIFO, folder, device or socket: not read, since that may block or mislead."""

    def __init__(self, mode: int) -> None:
        super().__init__(f"not a regular file ({file_kind(mode)})")


def open_regular_file(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a regular file (symlinks followed) for reading; anything else raises NotRegularFileError."""
    return open_regular(path, lambda mode, _: NotRegularFileError(mode))


def identity_text(sha1: bytes) -> str:
    """The `C:` form of a package identity: `Q1` + base64 of the SHA-1."""
    return "Q1" + base64.b64encode(sha1).decode()


def identity_digest(identity: str) -> str:
    """The hex SHA-1 an identity `Q1<base64>` stands for; raises ValueError for anything else."""
    if not identity.startswith("Q1"):
        raise ValueError(f"{identity!r} is not a package identity (Q1...)")
    try:
        raw = base64.b64decode(identity[2:], validate=True)
    except binascii.Error:
        raise ValueError(f"{identity!r} is not a package identity (Q1 + base64)") from None
    if len(raw) != 20:
        raise ValueError(f"{identity!r} is not a SHA-1 package identity")
    return raw.hex()


@dataclass(frozen=True)
class Signature:
    """One `.SIGN.<algorithm>.<keyname>` entry."""

    algorithm: str
    keyname: str
    value: bytes = field(repr=False)

    @property
    def digest_name(self) -> str:
        """The hash the signature is made over: sha1 for RSA, sha256 for RSA256."""
        return _SIGNATURE_DIGEST[self.algorithm]


@dataclass
class SignedSection:
    """The signatures of a file and the digests of the member they sign."""

    signatures: list[Signature]
    digests: dict[str, bytes]  # sha1/sha256/sha512 of the signed member's compressed bytes
    problems: list[str] = field(default_factory=list)


@dataclass
class PackageControl:
    """A package's signatures and control section, read from the start of the file."""

    signed: SignedSection
    pkginfo_text: str
    pkginfo: list[tuple[str, str]]
    scripts: dict[str, bytes]
    entries: list[TarEntry]

    @property
    def identity(self) -> str:
        """`Q1...`: the identity the index records for this package."""
        return identity_text(self.signed.digests["sha1"])

    def first(self, key: str, default: str = "") -> str:
        """The last value of a .PKGINFO key (apk keeps the last), or `default`."""
        values = self.values(key)
        return values[-1] if values else default

    def values(self, key: str) -> list[str]:
        """Every value of a .PKGINFO key, in order."""
        return [value for name, value in self.pkginfo if name == key]


def _read_small(reader: TarReader, entry: TarEntry) -> bytes:
    if entry.size > MAX_CONTROL_ENTRY:
        raise ArchiveError(f"{entry.name}: control entry of {entry.size} bytes is too large")
    return b"".join(reader.read_content())


def _hashers() -> dict[str, hashlib._Hash]:
    return {name: hashlib.new(name) for name in _DIGESTS}


@dataclass
class SignedStart:
    """The start of a signed file: its signatures and the member they sign, read whole."""

    signed: SignedSection
    entries: list[tuple[TarEntry, bytes]]  # of the signed member, with their content
    end_blocks: int  # end-of-archive blocks that ended the signed member


def read_signed_start(members: GzipMemberReader) -> SignedStart:
    """Read the signature member (if any) and the member it signs (control or index)."""
    problems: list[str] = []
    hashers = _hashers()
    if not members.next_member(hashers.values()):
        raise ArchiveError("the file is empty")
    reader = TarReader(members.read)
    first = [(entry, _read_small(reader, entry)) for entry in reader]
    if not (first and all(entry.name.startswith(SIGNATURE_PREFIX) for entry, _ in first)):
        digests = {name: hasher.digest() for name, hasher in hashers.items()}
        return SignedStart(SignedSection([], digests), first, reader.end_blocks)  # unsigned
    if reader.end_blocks:
        problems.append("the signature tar ends with end-of-archive blocks: apk would stop there")
    signatures = []
    for entry, content in first:
        parsed = parse_signature_name(entry.name)
        if parsed is None:
            problems.append(f"{entry.name}: unknown signature type")
            continue
        signatures.append(Signature(parsed[0], parsed[1], content))
    hashers = _hashers()
    if not members.next_member(hashers.values()):
        raise ArchiveError("nothing follows the signature")
    reader = TarReader(members.read)
    signed = [(entry, _read_small(reader, entry)) for entry in reader]
    digests = {name: hasher.digest() for name, hasher in hashers.items()}
    return SignedStart(SignedSection(signatures, digests, problems), signed, reader.end_blocks)


def control_from(start: SignedStart) -> PackageControl:
    """The control section of a package from its signed start."""
    problems = list(start.signed.problems)
    if start.end_blocks:
        # apk reads all members as one tar stream and would stop here
        problems.append(
            "the control tar ends with end-of-archive blocks: apk would not read the data"
        )
    pkginfo_text = ""
    scripts: dict[str, bytes] = {}
    entries = []
    for index, (entry, content) in enumerate(start.entries):
        entries.append(entry)
        if entry.name == ".PKGINFO":
            if index != 0:
                problems.append(".PKGINFO is not the first control entry")
            pkginfo_text = content.decode("utf-8", "replace")
        elif entry.name.startswith(".") and entry.name[1:] in (*INSTALL_SCRIPTS, "trigger"):
            scripts[entry.name[1:]] = content
        elif not entry.name.startswith(".") or "/" in entry.name:
            problems.append(f"{entry.name}: not a control entry (data before the data member?)")
    if not pkginfo_text:
        raise ArchiveError("no .PKGINFO in the control member")
    signed = SignedSection(start.signed.signatures, start.signed.digests, problems)
    return PackageControl(signed, pkginfo_text, parse_pkginfo(pkginfo_text), scripts, entries)


def read_package_control(handle: BinaryIO) -> PackageControl:
    """The signatures and control section of the package open in `handle`."""
    return control_from(read_signed_start(GzipMemberReader(handle)))


@dataclass
class IndexContent:
    """An APKINDEX.tar.gz read back."""

    signed: SignedSection
    text: str
    description: str | None


def index_from(start: SignedStart, members: GzipMemberReader) -> IndexContent:
    """The APKINDEX (and DESCRIPTION) text of an index from its signed start."""
    problems = list(start.signed.problems)
    text: str | None = None
    description = None
    for entry, content in start.entries:
        if entry.name == "APKINDEX":
            text = content.decode("utf-8", "replace")
        elif entry.name == "DESCRIPTION":
            description = content.decode("utf-8", "replace")
        else:
            problems.append(f"{entry.name}: unexpected entry in an index")
    if members.next_member():
        problems.append("more gzip members than a signature and the index")
    if text is None:
        raise ArchiveError("no APKINDEX entry")
    signed = SignedSection(start.signed.signatures, start.signed.digests, problems)
    return IndexContent(signed, text, description)


def read_index_file(handle: BinaryIO) -> IndexContent:
    """Read a signed index: its signatures and the APKINDEX (and DESCRIPTION) text."""
    members = GzipMemberReader(handle)
    return index_from(read_signed_start(members), members)


def parse_index_text(text: str) -> Iterator[list[tuple[str, str]]]:
    """The blocks of APKINDEX text: each a list of (field letter, value)."""
    block: list[tuple[str, str]] = []
    for line in text.split("\n"):
        if not line:
            if block:
                yield block
            block = []
            continue
        letter, colon, value = line.partition(":")
        if not colon or len(letter) != 1:
            raise ArchiveError(f"malformed APKINDEX line: {line[:60]!r}")
        block.append((letter, value))
    if block:
        yield block
