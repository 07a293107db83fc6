"""Alpine packages without Alpine: .apk v2 packages, subpackage splits, keys, indexes, checks.

The format follows what abuild 3.15 and apk-tools 2.14 produce and read; the
module docstrings say which of their behaviours each part reproduces.
Modules: `tarfmt` (pax tar), `gzipper` (parallel deflate, gzip members),
`pkginfo` (metadata, .PKGINFO), `keys` and `sign` (RSA keys, signature
member), `package` (writer, splits), `reader`, `index` (APKINDEX),
`verify`, `version` (apk version order), `mirror` (a mirror's indexes: fetched,
cached, signatures checked), `resolve` (apk's solver: a closure), `fetch`
(the closure's packages, verified).
"""

from __future__ import annotations

from pakman.apk.errors import ArchiveError, PackageInputError, SigningKeyError
from pakman.apk.gzipper import DEFAULT_LEVEL
from pakman.apk.index import (
    IndexEntry,
    IndexReport,
    index_bytes,
    index_text,
    read_index_entry,
    write_index,
)
from pakman.apk.keys import (
    PublicKey,
    SigningKey,
    generate_key,
    load_public_keys,
    load_signing_key,
)
from pakman.apk.package import OPENRC, Split, split_package, write_package
from pakman.apk.pkginfo import PackageInfo
from pakman.apk.verify import Verdict, verify_file
from pakman.apk.version import compare_versions

__all__ = [
    "DEFAULT_LEVEL",
    "OPENRC",
    "ArchiveError",
    "IndexEntry",
    "IndexReport",
    "PackageInfo",
    "PackageInputError",
    "PublicKey",
    "SigningKey",
    "SigningKeyError",
    "Split",
    "Verdict",
    "compare_versions",
    "generate_key",
    "index_bytes",
    "index_text",
    "load_public_keys",
    "load_signing_key",
    "read_index_entry",
    "split_package",
    "verify_file",
    "write_index",
    "write_package",
]
