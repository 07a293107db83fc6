"""The SBOM each package carries: an SPDX 2.3 JSON document at melange's place.

`/var/lib/db/sbom/<name>-<version>-r<release>.spdx.json` describes the
package (name, version, supplier, home page, licence and description with
where each came from), every file it holds (SHA-1 and SHA-256; the document
itself excepted), the packages it depends on at run time (DEPENDS_ON) and,
for a build in the stack's Alpine root, the packages of that root
(BUILD_DEPENDENCY_OF). Nothing in it is random or a time but the build
date (SOURCE_DATE_EPOCH): its namespace ends with the SHA-256 of the rest
of the document, so it changes only when what it describes changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pakman.apk.errors import ArchiveError, PackageInputError
from pakman.apk.package import resolve_builddate, scan_tree
from pakman.apk.pkginfo import PackageInfo
from pakman.apk.reader import identity_digest

SBOM_FOLDER = "var/lib/db/sbom"
SPDX_VERSION = "SPDX-2.3"
_CHUNK = 1 << 20
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def sbom_path(name: str, full_version: str) -> str:
    """Where a package holds its SBOM, relative to the root: `var/lib/db/sbom/<name>-<ver>-r<rel>.spdx.json`."""
    return f"{SBOM_FOLDER}/{name}-{full_version}.spdx.json"


@dataclass(frozen=True)
class Related:
    """Another package the described one relates to: a runtime or a build dependency."""

    name: str
    relationship: str  # "DEPENDS_ON" (described -> it) or "BUILD_DEPENDENCY_OF" (it -> described)
    version: str = ""  # "" when not known (not resolved, or made by the same build)
    identity: str = ""  # apk's identity (`Q1` + base64 SHA-1 of the control member), if known
    download: str = ""  # where the .apk is fetched from, if known
    purl: str = ""
    comment: str = ""


@dataclass(frozen=True)
class Provenance:
    """What the SBOM says about the package beyond its .PKGINFO: who and where the values came from."""

    supplier: str = ""  # "Organization: <org>", or "" when not known
    license_from: str = ""
    license_chosen: bool = False  # False: the default nobody chose (concluded: NOASSERTION)
    description_from: str = ""
    creator: str = "Tool: pakman"
    purl_namespace: str = ""  # pkg:apk/<namespace>/<name>; "" leaves out the purl


# A URL the SPDX tools accept as a download location or home page: a host name
# with a top-level domain (an IP address or `localhost` is refused).
_SPDX_URL = re.compile(
    r"(https?|ftp)://[a-z0-9]+([-.][a-z0-9]+)*\.[a-z]{2,5}(:[0-9]{1,5})?(/\S*)?", re.IGNORECASE
)


def spdx_url(url: str) -> str:
    """`url` when the SPDX tools accept it as a location, else "" (say NOASSERTION instead)."""
    return url if _SPDX_URL.fullmatch(url) else ""


def _spdx_id(prefix: str, name: str) -> str:
    return f"SPDXRef-{prefix}-{_ID_UNSAFE.sub('-', name).strip('-') or 'x'}"


def _created(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _file_digests(path: Path) -> tuple[str, str]:
    sha1, sha256 = hashlib.sha1(), hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha1.update(chunk)
            sha256.update(chunk)
    return sha1.hexdigest(), sha256.hexdigest()


def identity_sha1(identity: str) -> str:
    """The hex SHA-1 of an apk identity (`Q1<base64>`), or "" when it is not one."""
    try:
        return identity_digest(identity)
    except ValueError:
        return ""


def sbom_document(
    tree: str | Path,
    info: PackageInfo,
    provenance: Provenance,
    related: Sequence[Related] = (),
) -> bytes:
    """The SBOM of the package `info` whose staged tree is `tree` (the SBOM itself not in it yet)."""
    tree = Path(tree)
    builddate = resolve_builddate(info.builddate)
    own = sbom_path(info.name, info.full_version)
    package_id = _spdx_id("Package", info.name)
    files: list[dict[str, Any]] = []
    relationships: list[dict[str, str]] = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": package_id,
        }
    ]
    sha1s: list[str] = []
    for number, entry in enumerate(
        (e for e in scan_tree(tree) if e.kind == "file" and e.path != own), start=1
    ):
        sha1, sha256 = _file_digests(tree / entry.path)
        sha1s.append(sha1)
        file_id = f"SPDXRef-File-{number}"
        files.append(
            {
                "SPDXID": file_id,
                "fileName": f"./{entry.path}",
                "checksums": [
                    {"algorithm": "SHA1", "checksumValue": sha1},
                    {"algorithm": "SHA256", "checksumValue": sha256},
                ],
                "licenseConcluded": "NOASSERTION",
                "copyrightText": "NOASSERTION",
            }
        )
        relationships.append(
            {
                "spdxElementId": package_id,
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": file_id,
            }
        )
    chosen = provenance.license_chosen
    package: dict[str, Any] = {
        "SPDXID": package_id,
        "name": info.name,
        "versionInfo": info.full_version,
        "supplier": provenance.supplier or "NOASSERTION",
        "originator": provenance.supplier or "NOASSERTION",
        "downloadLocation": "NOASSERTION",
        "homepage": spdx_url(info.url) or "NOASSERTION",
        "filesAnalyzed": True,
        "packageVerificationCode": {
            # SPDX's: the SHA-1 of the files' SHA-1s, sorted and joined
            "packageVerificationCodeValue": hashlib.sha1(
                "".join(sorted(sha1s)).encode()
            ).hexdigest(),
            "packageVerificationCodeExcludedFiles": [f"./{own}"],
        },
        "licenseConcluded": info.license if chosen else "NOASSERTION",
        "licenseDeclared": info.license,
        "licenseComments": f"The licence ({info.license}) comes from {provenance.license_from}."
        + ("" if chosen else " Nobody concluded a licence for the package's files."),
        "copyrightText": "NOASSERTION",
        "description": info.description,
        "comment": f"The description comes from {provenance.description_from}. "
        + ("" if spdx_url(info.url) or not info.url else f"Its home page is {info.url}. ")
        + f"An Alpine package (.apk) for {info.arch}, built with SOURCE_DATE_EPOCH={builddate}.",
        "builtDate": _created(builddate),
        "primaryPackagePurpose": "APPLICATION",
    }
    if provenance.purl_namespace:
        package["externalRefs"] = [
            _purl(
                f"pkg:apk/{provenance.purl_namespace}/{info.name}@{info.full_version}?arch={info.arch}"
            )
        ]
    packages = [package]
    for number, other in enumerate(related, start=1):
        kind = "Runtime" if other.relationship == "DEPENDS_ON" else "Build"
        other_id = _spdx_id(f"{kind}-{number}", other.name)
        described: dict[str, Any] = {
            "SPDXID": other_id,
            "name": other.name,
        }
        if other.version:
            described["versionInfo"] = other.version
        described["downloadLocation"] = spdx_url(other.download) or "NOASSERTION"
        described["filesAnalyzed"] = False
        digest = identity_sha1(other.identity)
        if digest:
            described["checksums"] = [{"algorithm": "SHA1", "checksumValue": digest}]
        if other.purl:
            described["externalRefs"] = [_purl(other.purl)]
        comment = other.comment
        if other.download and not spdx_url(other.download):
            comment += f" Fetched from {other.download}."
        if digest:
            comment += (
                f" Its checksum is apk's identity of the package ({other.identity}, C: in the "
                "APKINDEX): the SHA-1 of its control member."
            )
        if comment.strip():
            described["comment"] = comment.strip()
        packages.append(described)
        if other.relationship == "DEPENDS_ON":
            relationships.append(
                {
                    "spdxElementId": package_id,
                    "relationshipType": "DEPENDS_ON",
                    "relatedSpdxElement": other_id,
                }
            )
        else:
            relationships.append(
                {
                    "spdxElementId": other_id,
                    "relationshipType": "BUILD_DEPENDENCY_OF",
                    "relatedSpdxElement": package_id,
                }
            )
    document: dict[str, Any] = {
        "spdxVersion": SPDX_VERSION,
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{info.name}-{info.full_version}",
        "documentNamespace": "",
        "creationInfo": {
            "created": _created(builddate),
            "creators": [provenance.creator],
            "comment": "Made when the package was built. Its time is the build's "
            "SOURCE_DATE_EPOCH and its namespace ends with the SHA-256 of the rest of it: "
            "the same inputs give the same document.",
        },
        "packages": packages,
        "files": files,
        "relationships": relationships,
    }
    digest = hashlib.sha256(_serialise(document)).hexdigest()
    base = info.url.rstrip("/") if info.url else "https://pakman.invalid"
    document["documentNamespace"] = f"{base}/spdx/{info.name}-{info.full_version}-{digest}"
    return _serialise(document)


def _purl(locator: str) -> dict[str, str]:
    return {
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": locator,
    }


def _serialise(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode()


def add_sbom(tree: str | Path, info: PackageInfo, document: bytes) -> Path:
    """Put the SBOM into the staged tree (folders 0755, the file 0644, whatever the umask)."""
    tree = Path(tree)
    relative = sbom_path(info.name, info.full_version)
    target = tree / relative
    if os.path.lexists(target):
        raise PackageInputError(
            f"package {info.name}: /{relative} is in the tree already; pakman writes the "
            "package's SBOM there"
        )
    folder = tree
    for part in Path(SBOM_FOLDER).parts:
        folder = folder / part
        if not folder.is_dir():
            folder.mkdir()
            os.chmod(folder, 0o755)
    target.write_bytes(document)
    os.chmod(target, 0o644)
    return target


def read_sbom(handle: BinaryIO) -> tuple[str, bytes] | None:
    """The SBOM (its path and bytes) in the package open in `handle`; None when it has none.

    Raises ArchiveError when the file is not a package.
    """
    from pakman.apk.gzipper import GzipMemberReader
    from pakman.apk.reader import control_from, read_signed_start
    from pakman.apk.tarfmt import TarReader

    members = GzipMemberReader(handle)
    control_from(read_signed_start(members))
    if not members.next_member():
        raise ArchiveError("no data member")
    reader = TarReader(members.read)
    for entry in reader:
        name = entry.name
        if (
            entry.is_file
            and name.startswith(SBOM_FOLDER + "/")
            and name.endswith(".spdx.json")
            and "/" not in name[len(SBOM_FOLDER) + 1 :]
        ):
            if entry.size > 256 << 20:
                raise ArchiveError(f"{name}: an SBOM of {entry.size} bytes is too large to print")
            return name, b"".join(reader.read_content())
    return None
