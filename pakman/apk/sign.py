"""The signature member that starts every package and index.

It is a gzip member holding one tar entry, `.SIGN.RSA.<keyname>`, whose
content is the raw PKCS#1 v1.5 signature over the SHA-1 of the compressed
member that follows (a package's control member, an index's only other
member). The tar has no end-of-archive blocks: apk reads all members as one
tar stream. The entry is owned by uid/gid 0 without user or group names,
mode 0644, as abuild-sign makes it.
"""

from __future__ import annotations

import io
import shutil
import stat
import tarfile
from pathlib import Path

from pakman.apk.errors import ArchiveError
from pakman.apk.gzipper import GzipMemberReader, gzip_bytes
from pakman.apk.keys import ALGORITHMS, SigningKey
from pakman.apk.tarfmt import REGULAR, TarMember, member_bytes
from pakman.fileio import open_atomic

SIGNATURE_PREFIX = ".SIGN."


def signature_member(key: SigningKey, signed: bytes, mtime: int) -> bytes:
    """The gzipped signature entry for `signed` (the compressed bytes of the next member)."""
    signature = key.sign(signed)
    entry = TarMember(
        name=key.signature_name,
        typeflag=REGULAR,
        mode=0o644,
        mtime=mtime,
        size=len(signature),
        uname="",
        gname="",
    )
    return gzip_bytes(member_bytes(entry, signature))


def parse_signature_name(name: str) -> tuple[str, str] | None:
    """(algorithm, keyname) of a `.SIGN.<algorithm>.<keyname>` entry, or None."""
    if not name.startswith(SIGNATURE_PREFIX):
        return None
    algorithm, dot, keyname = name[len(SIGNATURE_PREFIX) :].partition(".")
    if not dot or not keyname or algorithm not in ALGORITHMS:
        return None
    return algorithm, keyname


def resign_package(path: str | Path, key: SigningKey) -> None:
    """Replace the signature member of a package (or index) with one made by `key`.

    The control member it signs and everything after are kept as they are;
    the new signature entry has the old one's time, so a package signed
    again by the key that made it is the same bytes. The file is replaced
    atomically. Raises ArchiveError when the file is not a signed package.
    """
    path = Path(path)
    with path.open("rb") as handle:
        members = GzipMemberReader(handle)
        if not members.next_member():
            raise ArchiveError(f"{path}: empty")
        signature_tar = _read_member(members)
        signature_size = members.compressed_size
        if not members.next_member():
            raise ArchiveError(f"{path}: no member after the signature")
        _read_member(members)
        control_size = members.compressed_size
        try:
            with tarfile.open(fileobj=io.BytesIO(signature_tar), mode="r:") as tar:
                entry = tar.next()
        except tarfile.TarError as exc:
            raise ArchiveError(f"{path}: the signature member is not a tar: {exc}") from None
        if entry is None or parse_signature_name(entry.name) is None:
            raise ArchiveError(f"{path}: does not start with a signature")
        handle.seek(signature_size)
        control = handle.read(control_size)
        with open_atomic(path, stat.S_IMODE(path.stat().st_mode), durable=False) as target:
            target.write(signature_member(key, control, int(entry.mtime)))
            target.write(control)
            shutil.copyfileobj(handle, target, 1 << 20)


def _read_member(members: GzipMemberReader) -> bytes:
    parts = []
    while chunk := members.read(1 << 20):
        parts.append(chunk)
    return b"".join(parts)
