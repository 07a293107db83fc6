"""The typed, frozen model of one app's instellar.yml (no I/O).

`schema.py` builds it from raw data after validation, so every value here is
already known to be well-formed: names are safe for file paths and shells,
versions and dependency constraints are valid for apk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from pakman.errors import Diagnostic, KeyPath, Severity, format_path
from pakman.render import files as generated

HOOK_NAMES = (
    "pre-install",
    "post-install",
    "pre-upgrade",
    "post-upgrade",
    "pre-deinstall",
    "post-deinstall",
)
DEFAULT_STACK = "alpine/3.22"
DEFAULT_ARCHITECTURES = ("x86_64",)
PLATFORM_KEYS = ("kits", "sizes", "plans", "page", "orchestration")


class FrozenDict(dict[str, Any]):
    """A read-only dict that still pickles (the model crosses process boundaries)."""

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise TypeError("this mapping is read-only")

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))


EMPTY: Mapping[str, Any] = FrozenDict()


class AppType(str, Enum):
    """What kind of package the app becomes."""

    DEFAULT = "default"  # an application with services
    STATIC = "static"  # a static site served by nginx
    CUSTOM = "custom"  # the config writes package() itself


@dataclass(frozen=True)
class Dependency:
    """An Alpine dependency: a name (or provider such as `so:libc.so`) and a constraint."""

    name: str
    constraint: str = ""  # e.g. ">=20" or "~3.1"; "" for any version
    conflict: bool = False  # written `!name`: must not be installed

    def __str__(self) -> str:
        return f"{'!' if self.conflict else ''}{self.name}{self.constraint}"

    @classmethod
    def parse(cls, text: str) -> Dependency:
        """`!name`, `name`, `name>=1.2`: the inverse of str()."""
        conflict = text.startswith("!")
        body = text[1:] if conflict else text
        for i, char in enumerate(body):
            if char in "<>=~":
                return cls(body[:i], body[i:], conflict)
        return cls(body, "", conflict)


@dataclass(frozen=True)
class Dependencies:
    build: tuple[Dependency, ...] = ()
    runtime: tuple[Dependency, ...] = ()
    trace: bool = False


@dataclass(frozen=True)
class Build:
    command: str = ""
    destinations: tuple[str, ...] = ()
    strip_binary: bool = True
    git: bool = False  # pakman's: the build sees the repository's git metadata


@dataclass(frozen=True)
class Stop:
    """How a service stops; kept for the record (the generated files do not use it)."""

    call: str | None = None
    kill: bool = False
    pid_path: str | None = None


@dataclass(frozen=True)
class Service:
    """A long-running process; the first of an app is the default one."""

    name: str
    binary: str
    start: str  # start.call: the arguments, split like a shell would
    path: str | None = (
        None  # folder of the binary (relative: under /var/lib/<name>); None = its bin
    )
    stop: Stop | None = None


@dataclass(frozen=True)
class Command:
    """A one-shot command exposed as `rc-service <app> <name>`."""

    name: str
    binary: str
    call: str = ""
    path: str | None = None


@dataclass(frozen=True)
class Run:
    name: str | None = None
    services: tuple[Service, ...] = ()
    commands: tuple[Command, ...] = ()


@dataclass(frozen=True)
class Variable:
    """A kit variable: a default value or a platform driver (kept verbatim)."""

    key: str
    default_value: Any = None
    driver: str | None = None
    driver_options: Mapping[str, Any] = field(default_factory=FrozenDict)


@dataclass(frozen=True)
class Port:
    name: str
    target: int
    main: bool = False


@dataclass(frozen=True)
class Fork:
    name: str
    description: str = ""
    variables: tuple[Variable, ...] = ()


@dataclass(frozen=True)
class Kit:
    name: str
    description: str = ""
    main: bool = False
    ports: tuple[Port, ...] = ()
    variables: tuple[Variable, ...] = ()
    forks: tuple[Fork, ...] = ()


@dataclass(frozen=True)
class AppConfig:
    """One app's validated configuration."""

    file: Path  # the instellar.yml it was read from
    type: AppType = AppType.DEFAULT
    stack: str = DEFAULT_STACK  # "alpine/3.18" or "alpine/edge"
    dependencies: Dependencies = Dependencies()
    build: Build = Build()
    run: Run | None = None
    hooks: Mapping[str, str] = field(default_factory=FrozenDict)
    architectures: tuple[str, ...] = DEFAULT_ARCHITECTURES
    source: str | None = None
    package: str | None = None
    # pakman only (the original ignores them): the package's licence and pkgdesc, None: unset
    license: str | None = None
    description: str | None = None
    kits: tuple[Kit, ...] = ()
    # kits, sizes, plans, page, orchestration exactly as written (deep-frozen).
    platform: Mapping[str, Any] = field(default_factory=FrozenDict)
    # Where each value is written in `file`: formatted key path -> (line, column), so a
    # later stage places a problem without reading the file again.
    positions: Mapping[str, tuple[int, int]] = field(
        default_factory=FrozenDict, compare=False, repr=False
    )

    def where(self, path: KeyPath) -> tuple[int, int]:
        """Line and column of a key path's value, else of its nearest parent; (0, 0) if unknown."""
        while True:
            position = self.positions.get(format_path(path))
            if position is not None:
                return position
            if not path:
                return (0, 0)
            path = path[:-1]

    def diagnostic(self, path: KeyPath, message: str, *, warning: bool = False) -> Diagnostic:
        """A diagnostic placed where `path` is written: `file:line:col: key: message`."""
        line, column = self.where(path)
        severity: Severity = "warning" if warning else "error"
        return Diagnostic(str(self.file), line, column, format_path(path), message, severity)

    @property
    def services(self) -> tuple[Service, ...]:
        """The services the package runs (none for a static or custom app)."""
        if self.type is not AppType.DEFAULT or self.run is None:
            return ()
        return self.run.services

    @property
    def commands(self) -> tuple[Command, ...]:
        """The commands the package's init script defines (none for a static or custom app)."""
        if self.type is not AppType.DEFAULT or self.run is None:
            return ()
        return self.run.commands

    @property
    def service_files(self) -> tuple[str, ...]:
        """The kinds of generated file that run the app (`SERVICE_FILES`, `COMMAND_FILES` or none)."""
        if self.services:
            return generated.SERVICE_FILES
        return generated.COMMAND_FILES if self.commands else ()

    @property
    def root(self) -> Path:
        """The app's source folder."""
        return self.file.parent

    @property
    def branch(self) -> str:
        """The Alpine repository branch of the stack: `v3.18` or `edge`."""
        version = self.stack.partition("/")[2]
        return "edge" if version == "edge" else f"v{version}"


@dataclass(frozen=True)
class Identity:
    """Who the package is: from options and the environment (licence and description also from the file)."""

    organization: str
    name: str
    version: str
    release: int = 0
    url: str = ""  # the project's home page (APKBUILD url=, .PKGINFO url)
    # SOURCE_DATE_EPOCH of its build: file times and build date (see pakman.config.identity).
    epoch: int = 0
    # The licence (an SPDX expression) and pkgdesc, and where each came from (the
    # SBOM says so): an option, its variable, instellar.yml, or the original's default.
    license: str = "MIT"
    license_from: str = ""
    description: str = ""  # "": the name (as the original)
    description_from: str = ""

    @property
    def full_version(self) -> str:
        """`<version>-r<release>`, as apk writes it."""
        return f"{self.version}-r{self.release}"

    @property
    def keyname(self) -> str:
        """The signing key's base name, `<org>-<name>` like the original."""
        return f"{self.organization}-{self.name}"


def freeze(value: Any) -> Any:
    """Deep-freeze plain data: mappings become read-only, lists become tuples."""
    if isinstance(value, dict):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of `freeze`: plain dicts and lists again (for JSON and YAML)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def runtime_dependencies(app_type: AppType, runtime: Iterable[Dependency]) -> list[str]:
    """`depends`: the runtime list, plus nginx for a static site."""
    runtime = tuple(runtime)
    depends = [str(d) for d in runtime]
    if app_type is AppType.STATIC and not any(d.name == "nginx" for d in runtime):
        depends.append("nginx")
    return depends
