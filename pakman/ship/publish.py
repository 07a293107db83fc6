"""Publishing a signed repository to an S3 bucket, in an order that keeps it whole for readers.

apk reads `<repo>/<arch>/APKINDEX.tar.gz`, then the packages it lists. So a
reader must never find an index that lists a package not there yet, nor a
package gone that the index it holds lists. The publication goes in three
phases, each begun only when the one before succeeded:

1. the packages every new index lists (and the public keys that signed the
   indexes, at `<prefix>/<keyname>`): new files only, for readers of the old
   index (a package of the same name and version with other bytes is the
   one exception: bump the release to publish other bytes);
2. each `<arch>/APKINDEX.tar.gz`: from then on readers get the new index,
   whose packages are all there;
3. the deletion of the packages (`<arch>/*.apk`) the new index of that
   architecture no longer lists. Nothing else is deleted: not the files of
   architectures not published, not files that are not packages.

A failure in a phase stops there: the bucket still serves the old index with
its packages (phase 1), or the new one with its packages and some stale
packages besides (phase 2 or 3). A rerun uploads only what is missing or
different (see pakman.ship.s3).

Before anything is sent, the repository is verified as `pakman verify` does
(signatures against the trusted keys, every package against its index); a
repository that fails is refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pakman.apk import PublicKey, Verdict, verify_file
from pakman.apk.index import INDEX_FILE, index_filenames
from pakman.errors import ConfigError, Diagnostic
from pakman.ship import s3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class RepositoryRefused(ConfigError):
    """The repository is missing, empty, or fails verification: nothing is published (exit 3)."""

    def __init__(self, message: str) -> None:
        super().__init__(Diagnostic("pakman", 0, 0, "", message))


@dataclass(frozen=True)
class ArchFolder:
    """One architecture of the local repository: its index and the packages it lists."""

    arch: str
    folder: Path
    packages: tuple[str, ...]  # file names, as the index lists them

    @property
    def index(self) -> Path:
        return self.folder / INDEX_FILE


@dataclass(frozen=True)
class LocalRepository:
    """A verified repository folder, ready to publish."""

    root: Path
    arches: tuple[ArchFolder, ...]
    keys: tuple[Path, ...]  # the public keys that signed the indexes (their file names: key names)


def _arch_folders(root: Path) -> list[Path]:
    """The architecture folders of a repository: REPO/<arch>/ holding an index."""
    if not root.is_dir():
        raise RepositoryRefused(f"{root}: no repository there (build one with `pakman build`)")
    found = sorted(
        Path(e.path)
        for e in os.scandir(root)
        if not e.name.startswith(".") and e.is_dir() and (Path(e.path) / INDEX_FILE).is_file()
    )
    if not found:
        raise RepositoryRefused(
            f"{root}: no <arch>/{INDEX_FILE} in it: not a repository "
            "(build one with `pakman build`, or give --repository)"
        )
    return found


def read_repository(
    root: Path,
    trusted: Mapping[str, PublicKey],
    key_files: Sequence[Path],
) -> LocalRepository:
    """The repository at `root`, verified: each index and each package it lists.

    Raises RepositoryRefused, listing every file that does not pass, when one
    does not (an unsigned or untrusted file counts).
    `key_files` are where the trusted keys came from (files and folders), to
    find the files of the keys that signed the indexes.
    """
    arches: list[ArchFolder] = []
    verdicts: list[Verdict] = []
    for folder in _arch_folders(root):
        verdict = verify_file(folder / INDEX_FILE, trusted)
        verdicts.append(verdict)
        names: list[str] = []
        if verdict.passed():
            from pakman.apk.reader import read_index_file

            with (folder / INDEX_FILE).open("rb") as handle:
                names = index_filenames(read_index_file(handle).text)
            verdicts += [verify_file(folder / name, trusted) for name in names]
        arches.append(ArchFolder(folder.name, folder, tuple(names)))
    bad = [v for v in verdicts if not v.passed()]
    if bad:
        lines = "\n".join(f"  {v.summary()}" for v in bad)
        raise RepositoryRefused(
            f"{root}: refusing to publish: {len(bad)} file(s) do not pass verification "
            f"(as `pakman verify` checks them):\n{lines}"
        )
    signers = sorted({v.keyname for v in verdicts if v.kind == "index" and v.keyname})
    keys = [path for name in signers if (path := _key_file(name, key_files)) is not None]
    return LocalRepository(root, tuple(arches), tuple(keys))


def _key_file(keyname: str, sources: Sequence[Path]) -> Path | None:
    """The file of the public key `keyname` among key files and folders of keys."""
    for source in sources:
        if source.is_dir() and (source / keyname).is_file():
            return source / keyname
        if source.name == keyname and source.is_file():
            return source
    return None


@dataclass(frozen=True)
class Plan:
    """What a publication sends and deletes, phase by phase (names relative to the prefix)."""

    packages: tuple[tuple[Path, str], ...]  # phase 1, the public keys included
    indexes: tuple[tuple[Path, str], ...]  # phase 2
    deletions: tuple[str, ...]  # phase 3
    remote: Mapping[str, s3.RemoteObject]  # the listing it was made from


def plan(repository: LocalRepository, remote: Mapping[str, s3.RemoteObject]) -> Plan:
    """The publication of `repository` over what the bucket holds (`remote`, a listing)."""
    packages: list[tuple[Path, str]] = [(key, key.name) for key in repository.keys]
    indexes: list[tuple[Path, str]] = []
    deletions: list[str] = []
    for arch in repository.arches:
        listed = set(arch.packages)
        packages += [(arch.folder / name, f"{arch.arch}/{name}") for name in arch.packages]
        indexes.append((arch.index, f"{arch.arch}/{INDEX_FILE}"))
        for name in sorted(remote):
            folder, _, file = name.partition("/")
            stale = file.endswith(".apk") and file not in listed
            if folder == arch.arch and "/" not in file and stale:
                deletions.append(name)
    return Plan(tuple(packages), tuple(indexes), tuple(deletions), remote)


def headers(name: str) -> dict[str, str]:
    """The content type of a published file; indexes are revalidated by caches on every read."""
    if name.endswith(INDEX_FILE):
        return {"ContentType": "application/gzip", "CacheControl": "no-cache"}
    if name.endswith(".pub"):
        return {"ContentType": "application/x-pem-file"}
    return {"ContentType": "application/octet-stream"}


@dataclass
class Publication:
    """What a publication did: each phase's summary (None when not reached)."""

    packages: s3.UploadSummary
    indexes: s3.UploadSummary | None = None
    deleted: list[str] = field(default_factory=list)
    not_deleted: dict[str, str] = field(default_factory=dict)  # name -> reason


def publish(
    publication: Plan,
    target: s3.Target,
    *,
    concurrency: int = s3.DEFAULT_CONCURRENCY,
    progress: s3.ProgressCallback | None = None,
    delete: bool = True,
    s3_client: S3Client | None = None,
) -> Publication:
    """Send the plan's packages, then (if all went) its indexes, then (if all went) delete."""
    client = s3_client or s3.client(target, concurrency)
    known = dict(publication.remote)

    def send(files: Sequence[tuple[Path, str]]) -> s3.UploadSummary:
        return s3.upload(
            target,
            files,
            concurrency=concurrency,
            progress=progress,
            known=known,
            content_type=headers,
            s3=client,
        )

    result = Publication(send(publication.packages))
    if not result.packages.ok:
        return result
    result.indexes = send(publication.indexes)
    if not result.indexes.ok or not delete or not publication.deletions:
        return result
    result.not_deleted = s3.delete_objects(target, publication.deletions, client)
    result.deleted = [n for n in publication.deletions if n not in result.not_deleted]
    return result
