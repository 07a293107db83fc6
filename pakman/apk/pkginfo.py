"""Package metadata: the `PackageInfo` model, its checks, and `.PKGINFO` text.

`.PKGINFO` holds `key = value` lines in abuild's order (abuild.in,
prepare_metafiles): pkgname, pkgver, pkgdesc, url, builddate, packager, size,
arch, origin, commit, maintainer, provider_priority, license, replaces*,
depend*, provides*, install_if, then datahash. apk maps them to index fields
(package.c, read_info_line) and ignores keys it does not know.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pakman.alpine import ARCHITECTURES
from pakman.apk.errors import PackageInputError
from pakman.apk.tarfmt import MAX_MTIME
from pakman.config.model import HOOK_NAMES
from pakman.config.rules import DEPENDENCY, ONE_LINE, PACKAGE_NAME, VERSION
from pakman.errors import Diagnostic

INSTALL_SCRIPTS = HOOK_NAMES  # pre-install, post-install, ..., post-deinstall
CONTROL_SCRIPTS = (*INSTALL_SCRIPTS, "trigger")  # what a control member may carry
# abuild adds `depend = /bin/sh` when a script's first line matches this (grep -E '^#!\s*/bin/sh')
_SH_SCRIPT = re.compile(rb"#![ \t\r\f\v]*/bin/sh")
_USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\Z")
_VERSION_PREFIX = re.compile(r"[<>=~]")


@dataclass(frozen=True)
class PackageInfo:
    """What a package says about itself; the tree it holds is given separately.

    `install_scripts` maps a script name (`pre-install`, ...) to its text.
    `owners` maps a path in the staged tree (relative, e.g. `var/lib/myapp`) to
    a (user, group) pair of names; other entries belong to root. Names are
    resolved on the installed system after the pre-install script ran, so
    they may name a user that script creates.
    `builddate` is the time stamp of every entry; None means SOURCE_DATE_EPOCH
    (or the current time when it is not set).
    """

    name: str
    version: str  # without the release, e.g. 1.2.3
    arch: str  # an Alpine architecture, or noarch
    release: int = 0
    description: str = ""
    url: str = ""
    license: str = ""
    origin: str = ""  # the main package's name; "" means this package's own name
    commit: str = ""
    maintainer: str = ""
    packager: str = "Unknown"
    depends: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    install_if: tuple[str, ...] = ()
    replaces: tuple[str, ...] = ()
    provider_priority: int | None = None
    install_scripts: Mapping[str, bytes | str] = field(default_factory=lambda: MappingProxyType({}))
    owners: Mapping[str, tuple[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    builddate: int | None = None
    # folders (globs) whose change runs the `trigger` install script, as apk fires them
    triggers: tuple[str, ...] = ()

    @property
    def full_version(self) -> str:
        """`<version>-r<release>`, as apk writes it."""
        return f"{self.version}-r{self.release}"

    @property
    def filename(self) -> str:
        """`<name>-<version>-r<release>.apk`: the only name apk fetches it by."""
        return f"{self.name}-{self.full_version}.apk"

    @property
    def origin_name(self) -> str:
        """The origin (main package) name."""
        return self.origin or self.name

    def script_bytes(self) -> dict[str, bytes]:
        """The install scripts as bytes, in apk's canonical order."""
        scripts = {}
        for name in CONTROL_SCRIPTS:
            text = self.install_scripts.get(name)
            if text is not None:
                scripts[name] = text.encode() if isinstance(text, str) else bytes(text)
        return scripts


def check_info(info: PackageInfo) -> None:
    """Raise PackageInputError listing every problem of `info` at once."""
    problems: list[tuple[str, str]] = []

    def need(ok: bool, where: str, message: str) -> None:
        if not ok:
            problems.append((where, message))

    need(PACKAGE_NAME.match(info.name), "name", f"{info.name!r} is not {PACKAGE_NAME.says}")
    need(VERSION.match(info.version), "version", f"{info.version!r} is not {VERSION.says}")
    need(
        isinstance(info.release, int) and info.release >= 0,
        "release",
        f"{info.release!r} is not a whole number >= 0",
    )
    need(
        info.arch in ARCHITECTURES,
        "arch",
        f"{info.arch!r} is not an Alpine architecture ({', '.join(ARCHITECTURES)})",
    )
    need(
        not info.origin or PACKAGE_NAME.match(info.origin),
        "origin",
        f"{info.origin!r} is not {PACKAGE_NAME.says}",
    )
    for key in ("description", "url", "license", "commit", "maintainer", "packager"):
        value = getattr(info, key)
        need(
            isinstance(value, str) and ONE_LINE.match(value),
            key,
            f"{value!r} must be {ONE_LINE.says}",
        )
    for key in ("depends", "provides", "install_if", "replaces"):
        values = getattr(info, key)
        if isinstance(values, str):
            problems.append((key, "must be a sequence of names, not one string"))
            continue
        for index, value in enumerate(values):
            need(
                isinstance(value, str) and DEPENDENCY.match(value),
                f"{key}[{index}]",
                f"{value!r} is not {DEPENDENCY.says}",
            )
    need(
        info.provider_priority is None
        or (isinstance(info.provider_priority, int) and info.provider_priority >= 0),
        "provider_priority",
        "must be a whole number >= 0",
    )
    need(
        info.builddate is None
        or (isinstance(info.builddate, int) and 0 <= info.builddate <= MAX_MTIME),
        "builddate",
        f"{info.builddate!r} is not a Unix time in 0..{MAX_MTIME} (what a tar header holds)",
    )
    for name, text in info.install_scripts.items():
        need(
            name in CONTROL_SCRIPTS,
            f"install_scripts[{name!r}]",
            f"unknown install script (known: {', '.join(CONTROL_SCRIPTS)})",
        )
        need(isinstance(text, (str, bytes)), f"install_scripts[{name!r}]", "must be text or bytes")
    need(
        isinstance(info.triggers, tuple)
        and all(
            isinstance(t, str) and t.startswith("/") and ONE_LINE.match(t) and " " not in t
            for t in info.triggers
        ),
        "triggers",
        "must be absolute folder paths or globs, without spaces",
    )
    need(
        bool(info.triggers) == ("trigger" in info.install_scripts),
        "triggers",
        "triggers and a `trigger` install script go together (apk runs the script when they fire)",
    )
    for path, owner in info.owners.items():
        parts = path.split("/")
        need(
            bool(path)
            and not path.startswith("/")
            and all(p not in ("", ".", "..") for p in parts),
            f"owners[{path!r}]",
            "must be a relative path inside the tree, without '.' or '..'",
        )
        good_owner = (
            isinstance(owner, tuple)
            and len(owner) == 2
            and all(isinstance(n, str) and _USER_NAME.match(n) for n in owner)
        )
        need(
            good_owner,
            f"owners[{path!r}]",
            "must be a (user, group) pair of names: lower-case letters, digits, '_', '.' "
            "and '-', at most 32 characters",
        )
    if problems:
        raise PackageInputError(
            [
                Diagnostic(f"package {info.name}", 0, 0, where, message)
                for where, message in problems
            ]
        )


def _has_dependency(depends: tuple[str, ...], name: str) -> bool:
    # abuild's deplist_has: compare names with any version constraint removed
    return any(_VERSION_PREFIX.split(dep, maxsplit=1)[0] == name for dep in depends)


def effective_depends(info: PackageInfo) -> tuple[str, ...]:
    """`depends` without the package itself, plus /bin/sh when a script needs it (as abuild adds)."""
    depends = tuple(dep for dep in info.depends if dep != info.name)
    if (
        info.name != "busybox"
        and not _has_dependency(info.depends, "busybox")
        and not _has_dependency(info.depends, "/bin/sh")
        and any(_SH_SCRIPT.match(text) for text in info.script_bytes().values())
    ):
        depends += ("/bin/sh",)
    return depends


def installed_size(file_bytes: int, has_entries: bool, has_scripts: bool) -> int:
    """The `size` field: bytes of regular files, but 1 instead of 0 when anything is packaged.

    apk 2 treats size 0 as a virtual package and would install nothing and
    run no scripts (abuild works around it the same way).
    """
    if file_bytes == 0 and (has_entries or has_scripts):
        return 1
    return file_bytes


def render_pkginfo(info: PackageInfo, *, builddate: int, size: int, datahash: str) -> str:
    """The `.PKGINFO` text, in abuild's field order, ending with `datahash`."""
    lines = [
        "# Generated by pakman",
        f"pkgname = {info.name}",
        f"pkgver = {info.full_version}",
        f"pkgdesc = {info.description}",
        f"url = {info.url}",
        f"builddate = {builddate}",
        f"packager = {info.packager}",
        f"size = {size}",
        f"arch = {info.arch}",
        f"origin = {info.origin_name}",
    ]
    if info.commit:
        lines.append(f"commit = {info.commit}")
    if info.maintainer:
        lines.append(f"maintainer = {info.maintainer}")
    if info.provider_priority is not None:
        lines.append(f"provider_priority = {info.provider_priority}")
    lines.append(f"license = {info.license}")
    lines += [f"replaces = {name}" for name in info.replaces]
    lines += [f"depend = {name}" for name in effective_depends(info)]
    lines += [f"provides = {name}" for name in info.provides]
    if info.triggers:
        lines.append(f"triggers = {' '.join(info.triggers)}")
    if info.install_if:
        lines.append(f"install_if = {' '.join(info.install_if)}")
    lines.append(f"datahash = {datahash}")
    return "\n".join(lines) + "\n"


def parse_pkginfo(text: str) -> list[tuple[str, str]]:
    """The (key, value) pairs of a `.PKGINFO`, in order; comments and other lines skipped as apk does."""
    pairs = []
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        key, separator, value = line.partition(" = ")
        if separator:
            pairs.append((key, value))
    return pairs
