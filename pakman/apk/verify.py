"""Checking packages and indexes: what apk checks, and what it only finds out at install time.

For a package: the signature against trusted keys (trusted, untrusted, bad
or unsigned, as apk distinguishes them), `datahash` against the data member,
every file's and symlink's `APK-TOOLS.checksum.SHA1`, a directory entry
before anything inside it ("no dirent in archive"), hard links to files
stored earlier, names apk would refuse or silently skip, the `size` field,
the tar structure (no end blocks in the signature and control tars, end
blocks after the data), and that the file is named `<pkgname>-<pkgver>.apk`.

For an index: the signature, and every entry against the package file in the
same folder (which must exist, with data that matches its `datahash`): `S:`
its size, `C:` its identity, and the other fields its `.PKGINFO`; `A:` must
name the folder.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pakman.apk.errors import ArchiveError
from pakman.apk.gzipper import GzipMemberReader
from pakman.apk.index import IndexEntry, read_index_entry
from pakman.apk.keys import PublicKey
from pakman.apk.pkginfo import installed_size
from pakman.apk.reader import (
    NotRegularFileError,
    PackageControl,
    SignedSection,
    control_from,
    index_from,
    open_regular_file,
    parse_index_text,
    read_signed_start,
)
from pakman.apk.tarfmt import CHECKSUM_RECORD, TarReader

Status = Literal["ok", "untrusted", "bad"]
SignatureState = Literal["trusted", "untrusted", "bad", "unsigned", "unchecked"]
MAX_PROBLEMS = 50  # a badly broken file reports this many, then a count


@dataclass
class Verdict:
    """The result of checking one file."""

    path: str
    kind: Literal["package", "index", "unknown"] = "unknown"
    signature: SignatureState = "unchecked"
    keyname: str | None = None  # the key that signed it (or would have)
    problems: list[str] = field(default_factory=list)
    package: str | None = None  # `<name>-<version>` of a package

    @property
    def status(self) -> Status:
        """ok: trusted and sound; untrusted: sound but no trusted key; bad: anything else."""
        if self.problems or self.signature in ("bad", "unchecked"):
            return "bad"
        if self.signature in ("untrusted", "unsigned"):
            return "untrusted"
        return "ok"

    def passed(self, allow_untrusted: bool = False) -> bool:
        """True when the file is fine (untrusted counts as fine only when allowed)."""
        return self.status == "ok" or (allow_untrusted and self.status == "untrusted")

    def summary(self) -> str:
        """One line: `<path>: <status> (<kind> ..., <signature>)` then the first problem."""
        what = self.kind if self.package is None else f"package {self.package}"
        signed = {
            "trusted": f"signed by {self.keyname}",
            "untrusted": f"signed by {self.keyname}, a key not given as trusted",
            "bad": f"BAD signature by {self.keyname}",
            "unsigned": "not signed",
            "unchecked": "signature not checked",
        }[self.signature]
        line = f"{self.path}: {self.status.upper() if self.status != 'ok' else 'ok'} ({what}, {signed})"
        if self.problems:
            more = len(self.problems) - 1
            line += f": {self.problems[0]}" + (f" (+{more} more)" if more else "")
        return line

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "path": self.path,
            "kind": self.kind,
            "status": self.status,
            "signature": self.signature,
            "keyname": self.keyname,
            "package": self.package,
            "problems": list(self.problems),
        }


class _Problems(list[str]):
    """A list of problems that stops growing at MAX_PROBLEMS and counts the rest."""

    dropped = 0

    def add(self, message: str) -> None:
        if len(self) < MAX_PROBLEMS:
            self.append(message)
        else:
            self.dropped += 1

    def finish(self) -> list[str]:
        return [*self, f"... and {self.dropped} more problems"] if self.dropped else list(self)


def _check_signature(
    signed: SignedSection, trusted_keys: Mapping[str, PublicKey], verdict: Verdict
) -> None:
    """Judge the signatures as apk does: the first with a trusted key decides."""
    if not signed.signatures:
        verdict.signature = "unsigned"
        return
    for signature in signed.signatures:
        key = trusted_keys.get(signature.keyname)
        if key is None:
            continue
        verdict.keyname = signature.keyname
        digest = signed.digests[signature.digest_name]
        good = key.verify_digest(signature.value, digest, signature.algorithm)
        verdict.signature = "trusted" if good else "bad"
        return
    verdict.signature = "untrusted"
    verdict.keyname = signed.signatures[0].keyname


def signature_verdict(
    signed: SignedSection, trusted_keys: Mapping[str, PublicKey], path: str = ""
) -> Verdict:
    """How apk judges the signatures of a file already read (e.g. a fetched index), nothing else."""
    verdict = Verdict(path)
    _check_signature(signed, trusted_keys, verdict)
    return verdict


def unsafe_name_problem(name: str, is_dir: bool) -> str | None:
    """Why apk would refuse or skip an entry of this name, or None."""
    if not name:
        return "an entry without a name"
    if name.startswith("/"):
        return "an absolute path (apk ignores it as malicious)"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "control characters in the name (apk ignores it as malicious)"
    parts = name.rstrip("/").split("/")
    if any(part in (".", "..") for part in parts):
        return "'.' or '..' in the path (apk ignores it as malicious)"
    if name.startswith("."):
        return "a top-level name starting with '.' (apk skips it)"
    if not is_dir and parts[-1].startswith(".keep_"):
        return "a file named .keep_* (apk skips it)"
    return None


def _check_data(members: GzipMemberReader, control: PackageControl, problems: _Problems) -> None:
    """Stream the data member: per-entry checks, then datahash and size."""
    datahash = hashlib.sha256()
    if not members.next_member((datahash,)):
        problems.add("no data member")
        return
    reader = TarReader(members.read)
    directories: set[str] = set()
    files: set[str] = set()
    seen: set[str] = set()
    file_bytes = 0
    entries = 0
    for entry in reader:
        entries += 1
        path = entry.name.rstrip("/") if entry.is_dir else entry.name
        unsafe = unsafe_name_problem(entry.name, entry.is_dir)
        if unsafe is not None:
            problems.add(f"{entry.name!r}: {unsafe}")
            continue
        if path in seen:
            problems.add(f"{path}: stored twice")
        seen.add(path)
        parent = posixpath.dirname(path)
        if parent and parent not in directories:
            problems.add(
                f"{path}: no entry for its folder {parent}/ before it (apk: no dirent in archive)"
            )
        expected = entry.pax.get(CHECKSUM_RECORD)
        if entry.is_dir:
            directories.add(path)
        elif entry.is_file:
            sha1 = hashlib.sha1()
            for chunk in reader.read_content():
                sha1.update(chunk)
            file_bytes += entry.size
            files.add(path)
            if expected is None:
                problems.add(f"{path}: no {CHECKSUM_RECORD} record (apk audit would fail)")
            elif expected.lower() != sha1.hexdigest():
                problems.add(f"{path}: content does not match its SHA-1 checksum")
        elif entry.is_symlink:
            link = entry.linkname.encode()
            # abuild hashes the 100-byte ustar link field, so long targets may carry that hash
            accepted = {hashlib.sha1(link).hexdigest(), hashlib.sha1(link[:100]).hexdigest()}
            if expected is None:
                problems.add(f"{path}: no {CHECKSUM_RECORD} record for the symlink")
            elif expected.lower() not in accepted:
                problems.add(f"{path}: symlink target does not match its SHA-1 checksum")
        elif entry.is_hardlink:
            target = entry.linkname
            if target not in files:
                problems.add(f"{path}: hard link to {target}, which is not a file stored before it")
            elif "/" not in target:
                problems.add(f"{path}: hard link to a top-level file (apk cannot find its target)")
    if reader.bad_header_checksums:
        problems.add(f"{reader.bad_header_checksums[0]}: tar header checksum is wrong")
    if reader.end_blocks < 2:
        problems.add("the data tar lacks its end-of-archive blocks (truncated?)")
    while members.read(1 << 20):  # hash the rest of the member, if any
        pass
    expected_hash = control.first("datahash")
    if not expected_hash:
        problems.add("no datahash in .PKGINFO (apk warns; apk-tools 3 refuses)")
    elif expected_hash.lower() != datahash.hexdigest():
        problems.add("datahash does not match the data member (apk: BAD signature)")
    if members.next_member():
        problems.add("more than one data member (apk warns; apk-tools 3 refuses)")
    declared = control.first("size")
    computed = installed_size(file_bytes, entries > 0, bool(control.scripts))
    if declared != str(computed):
        problems.add(f".PKGINFO size = {declared} but the files add up to {computed}")


def _verify_package(
    path: Path, members: GzipMemberReader, control: PackageControl, verdict: Verdict
) -> None:
    problems = _Problems(control.signed.problems)
    name, version = control.first("pkgname"), control.first("pkgver")
    verdict.package = f"{name}-{version}"
    if not name or not version:
        problems.add(".PKGINFO lacks pkgname or pkgver")
    elif path.name != f"{name}-{version}.apk":
        problems.add(f"file name should be {name}-{version}.apk, as apk fetches it")
    try:
        _check_data(members, control, problems)
    except ArchiveError as exc:
        problems.add(f"unreadable data: {exc}")
    verdict.problems = problems.finish()


_INDEX_FIELDS = {
    "C": "identity",
    "P": "name",
    "V": "version",
    "S": "size",
    "I": "installed size",
    "T": "description",
    "U": "url",
    "L": "license",
    "o": "origin",
    "m": "maintainer",
    "t": "build time",
    "c": "commit",
    "k": "provider priority",
    "D": "depends",
    "p": "provides",
    "i": "install_if",
}


def _verify_index_blocks(path: Path, text: str, problems: _Problems) -> None:
    folder = path.parent
    folder_arch = folder.resolve().name
    try:
        blocks = list(parse_index_text(text))
    except ArchiveError as exc:
        problems.add(str(exc))
        return
    for block in blocks:
        fields = dict(block)
        label = f"{fields.get('P', '?')}-{fields.get('V', '?')}"
        if not all(letter in fields for letter in "CPVS"):
            problems.add(f"{label}: an index entry needs C:, P:, V: and S:")
            continue
        if fields.get("A") != folder_arch:
            problems.add(f"{label}: A:{fields.get('A', '')} but the index is in {folder_arch}/")
        package = folder / f"{fields['P']}-{fields['V']}.apk"
        if not package.is_file():
            problems.add(f"{label}: {package.name} is not in {folder}")
            continue
        try:
            actual: IndexEntry = read_index_entry(package)
        except (ArchiveError, OSError) as exc:
            problems.add(f"{label}: cannot read {package.name}: {exc}")
            continue
        expected = dict(
            (line[0], line[2:]) for line in actual.render(folder_arch).splitlines() if line
        )
        for letter in sorted(set(expected) | set(fields), key=lambda x: (x not in "CPVS", x)):
            if letter == "A":
                continue
            if fields.get(letter, "") != expected.get(letter, ""):
                what = _INDEX_FIELDS.get(letter, letter)
                problems.add(
                    f"{label}: {letter}: ({what}) is {fields.get(letter, '')!r} in the index "
                    f"but {expected.get(letter, '')!r} for {package.name}"
                )


def verify_file(path: str | Path, trusted_keys: Mapping[str, PublicKey] | None = None) -> Verdict:
    """Check a package (.apk) or an index (APKINDEX.tar.gz); never raises for a bad file.

    Anything but a regular file (a FIFO, a folder, a device) is bad without being read.
    """
    path = Path(path)
    verdict = Verdict(str(path))
    keys = trusted_keys or {}
    try:
        with open_regular_file(path) as handle:
            members = GzipMemberReader(handle)
            start = read_signed_start(members)
            names = {entry.name for entry, _ in start.entries}
            if "APKINDEX" in names:
                verdict.kind = "index"
                content = index_from(start, members)
                _check_signature(content.signed, keys, verdict)
                problems = _Problems(content.signed.problems)
                _verify_index_blocks(path, content.text, problems)
                verdict.problems = problems.finish()
            else:
                verdict.kind = "package"
                control = control_from(start)
                _check_signature(control.signed, keys, verdict)
                _verify_package(path, members, control, verdict)
    except NotRegularFileError as exc:
        verdict.problems.append(str(exc))
    except ArchiveError as exc:
        verdict.problems.append(f"unreadable: {exc}")
    except OSError as exc:
        verdict.problems.append(f"cannot read: {exc.strerror or exc}")
    return verdict
