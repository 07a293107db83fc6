"""The signature member that starts every package and index.

It is a gzip member holding one tar entry, `.SIGN.RSA.<keyname>`, whose
content is the raw PKCS#1 v1.5 signature over the SHA-1 of the compressed
member that follows (a package's control member, an index's only other
member). The tar has no end-of-archive blocks: apk reads all members as one
tar stream. The entry is owned by uid/gid 0 without user or group names,
mode 0644, as abuild-sign makes it.
"""

from __future__ import annotations

from pakman.apk.gzipper import gzip_bytes
from pakman.apk.keys import ALGORITHMS, SigningKey
from pakman.apk.tarfmt import REGULAR, TarMember, member_bytes

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
