"""Raw data -> the typed model, collecting every problem before raising once.

The shape of instellar.yml is declared once, as a tree of specs from
`pakman.config.shape` (`Text`, `Flag`, `Number`, `Items`, `Fields`, ...). The same tree checks a
document and produces the JSON Schema that `pakman schema` prints, so the
editor's view and pakman's view of the file cannot drift apart. Rules that
span several keys (the app type, the older shapes, unique names) follow the
shape check, then the model is built from data known to be well-formed.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

from pakman.alpine import ARCHITECTURES
from pakman.config import rules
from pakman.config.model import (
    DEFAULT_STACK,
    HOOK_NAMES,
    PLATFORM_KEYS,
    AppConfig,
    AppType,
    Build,
    Command,
    Dependencies,
    Dependency,
    Fork,
    FrozenDict,
    Kit,
    Port,
    Run,
    Service,
    Stop,
    Variable,
    freeze,
)
from pakman.config.rules import Rule
from pakman.config.shape import (
    Checker,
    Field,
    Fields,
    Flag,
    Free,
    Items,
    Number,
    OneOf,
    Plain,
    Text,
    kind,
)
from pakman.config.source import Document, load_file
from pakman.errors import ConfigError, Diagnostic, KeyPath, format_path, show

SCHEMA_ID = "urn:pakman:schema:instellar.yml"

# Functions openrc-run defines or relies on, and the shell's special
# built-ins: a command with one of these names would break the init script.
RESERVED_COMMANDS = frozenset(
    [
        "start",
        "stop",
        "restart",
        "status",
        "describe",
        "zap",
        "depend",
        "start_pre",
        "start_post",
        "stop_pre",
        "stop_post",
        "reload",
        "checkconfig",
        "ebegin",
        "eend",
        "einfo",
        "ewarn",
        "eerror",
        "eindent",
        "eoutdent",
        "veinfo",
        "vewarn",
        "yesno",
        "supervise",
        "service_set_value",
        "service_get_value",
        "mark_service_started",
        "mark_service_stopped",
        "ineed",
        "iuse",
        "iwant",
        "needsme",
        "usesme",
        "wantsme",
        "iafter",
        "ibefore",
        "iprovide",
        "broken",
        "break",
        "colon",
        "continue",
        "eval",
        "exec",
        "exit",
        "export",
        "readonly",
        "return",
        "set",
        "shift",
        "times",
        "trap",
        "unset",
        "cd",
        "command",
        "echo",
        "false",
        "getopts",
        "hash",
        "printf",
        "pwd",
        "read",
        "test",
        "true",
        "type",
        "ulimit",
        "umask",
        "wait",
        "local",
        "source",
        "alias",
        "unalias",
        "kill",
        "let",
    ]
)


# --------------------------------------------------------------------------
# The shape of instellar.yml


def _shell_words(text: str) -> str | None:
    try:
        shlex.split(text)
    except ValueError as exc:
        return f"{show(text)} cannot be split into arguments: {exc}"
    return None


# Your own shell (or APKBUILD text), used verbatim: anything but NUL, which
# no script can hold.
_SCRIPT = Rule(r"^[^\x00]*$", "any text but a NUL character (\\0), which no script can hold")


def _script(description: str = "") -> Text:
    return Text(description, rule=_SCRIPT)


CALL = Text(
    "Arguments passed to the binary, split like a shell splits words (quotes group words; "
    "nothing is expanded).",
    rule=rules.ONE_LINE,
    extra=_shell_words,
)
BINARY = Text("The executable's file name (or a path relative to `path`).", rule=rules.BINARY)
BIN_PATH = Text(
    "Folder holding the binary (e.g. /usr/bin; a relative one is under /var/lib/<name>); "
    "default /var/lib/<name>/bin.",
    rule=rules.BIN_PATH,
)
ONE_LINE = Text(rule=rules.ONE_LINE)
DEPENDENCY_LIST = Items(Text(rule=rules.DEPENDENCY))
CALL_MAP = Fields({"call": Field(CALL, required=True)})
STOP = Fields(
    {
        "call": Field(CALL),
        "kill": Field(Flag()),
        "pid_path": Field(Text(rule=rules.ONE_LINE)),
    },
    "How the service stops (recorded; the generated files stop services through s6).",
)

SERVICE = Fields(
    {
        "name": Field(
            Text("Service name; selected with SERVICE_MODE=<name>.", rule=rules.SERVICE_NAME),
            required=True,
        ),
        "binary": Field(BINARY, required=True),
        "path": Field(BIN_PATH),
        "start": Field(CALL_MAP, required=True),
        "stop": Field(STOP),
    }
)
COMMAND = Fields(
    {
        "name": Field(
            Text("Run with `rc-service <app> <name>`.", rule=rules.COMMAND_NAME), required=True
        ),
        "binary": Field(BINARY, required=True),
        "path": Field(BIN_PATH),
        "call": Field(CALL),
    }
)
LEGACY_COMMAND = Fields(
    {
        "call": Field(CALL),
        "variations": Field(
            Fields({}, unknown="allow", description="Command name -> extra arguments."),
        ),
    }
)
RUN = Fields(
    {
        "name": Field(
            Text("The service name; normally the package name.", rule=rules.PACKAGE_NAME)
        ),
        "services": Field(Items(SERVICE)),
        "commands": Field(Items(COMMAND)),
        "binary": Field(BINARY, deprecated="run.services[].binary"),
        "start": Field(CALL_MAP, deprecated="run.services[].start"),
        "stop": Field(CALL_MAP, deprecated="run.services[].stop"),
        "process": Field(CALL_MAP, deprecated="run.services[].start"),
        "command": Field(LEGACY_COMMAND, deprecated="run.commands"),
    },
    "How the app runs: its services and one-shot commands.",
)
VARIABLE = Fields(
    {
        "key": Field(Text(rule=rules.ENV_KEY), required=True),
        "default_value": Field(Plain()),
        "driver": Field(Text(rule=rules.DRIVER)),
        "driver_options": Field(
            Free(
                "Kept verbatim; {{ }} placeholders are filled in by the platform.", shape="mapping"
            )
        ),
    }
)
PORT = Fields(
    {
        "name": Field(Text(rule=rules.SERVICE_NAME), required=True),
        "target": Field(Number(minimum=1, maximum=65535), required=True),
        "main": Field(Flag()),
    }
)
FORK = Fields(
    {
        "name": Field(Text(rule=rules.SERVICE_NAME), required=True),
        "description": Field(ONE_LINE),
        "variables": Field(Items(VARIABLE)),
    }
)
KIT = Fields(
    {
        "name": Field(Text(rule=rules.SERVICE_NAME), required=True),
        "description": Field(ONE_LINE),
        "main": Field(Flag()),
        "ports": Field(Items(PORT)),
        "variables": Field(Items(VARIABLE)),
        "forks": Field(Items(FORK)),
    }
)
NAMED_ENTRY = Fields({"name": Field(ONE_LINE, required=True)}, unknown="allow")

INSTELLAR = Fields(
    {
        "dependencies": Field(
            Fields(
                {
                    "build": Field(
                        Items(
                            Text(rule=rules.DEPENDENCY),
                            description="Alpine packages needed to build (makedepends).",
                        )
                    ),
                    "runtime": Field(
                        Items(
                            Text(rule=rules.DEPENDENCY),
                            description="Alpine packages needed at run time (depends).",
                        )
                    ),
                    "trace": Field(
                        Flag(
                            "Let abuild scan binaries for shared-library dependencies (default false: !tracedeps)."
                        )
                    ),
                }
            ),
            required=True,
        ),
        "stack": Field(
            Text(
                f"The Alpine branch: alpine/3.NN or alpine/edge (default {DEFAULT_STACK}).",
                rule=rules.STACK,
            )
        ),
        "type": Field(
            Text(
                "default: an app with services; static: a site served by nginx; custom: you write `package`.",
                enum=tuple(t.value for t in AppType),
            )
        ),
        "build": Field(
            Fields(
                {
                    "command": Field(_script("Shell run in a copy of the app's source.")),
                    "destinations": Field(
                        Items(
                            Text(rule=rules.DESTINATION),
                            description="Paths (globs allowed) copied into /var/lib/<name>/.",
                        )
                    ),
                    "destination": Field(
                        OneOf((Text(rule=rules.DESTINATION), Items(Text(rule=rules.DESTINATION)))),
                        deprecated="build.destinations (a list)",
                    ),
                    "strip_binary": Field(
                        Flag("false adds the abuild option !strip (default true).")
                    ),
                    "git": Field(
                        Flag(
                            "pakman only: true gives the build the repository's commit and tags "
                            "in a .git of its own; each commit reruns the build (default false)."
                        )
                    ),
                }
            ),
            required=True,
        ),
        "run": Field(RUN),
        "hook": Field(
            Fields(
                {name: Field(_script()) for name in HOOK_NAMES},
                "Install-lifecycle shell scripts.",
                unknown="error",
                unknown_hint=f"allowed hooks: {', '.join(HOOK_NAMES)}",
            )
        ),
        "architectures": Field(
            Items(
                Text(enum=ARCHITECTURES),
                description="Alpine architectures (default [x86_64]).",
                min_items=1,
            )
        ),
        "source": Field(_script("Raw text added to the APKBUILD source= list.")),
        "package": Field(_script("Shell body that replaces the generated package() function.")),
        "license": Field(
            Text(
                "pakman only: the package's licence, an SPDX licence expression such as MIT or "
                "Apache-2.0 OR MIT (default MIT, which the original writes on every package; "
                "--license and PAKMAN_LICENSE override it).",
                rule=rules.ONE_LINE,
                extra=rules.license_problem,
            )
        ),
        "description": Field(
            Text(
                "pakman only: the package's one-line description, pkgdesc (default the package "
                "name, as the original; --description and PAKMAN_DESCRIPTION override it).",
                rule=rules.DESCRIPTION,
            )
        ),
        "kits": Field(
            Items(KIT, description="Deployment kits (platform metadata, carried verbatim).")
        ),
        "sizes": Field(Items(NAMED_ENTRY)),
        "plans": Field(Items(NAMED_ENTRY)),
        "page": Field(Free(shape="mapping")),
        "orchestration": Field(Free(shape="mapping")),
    },
    "instellar.yml: how an app is built into an Alpine package and run.",
)


# --------------------------------------------------------------------------
# Validation: shape, then the rules across keys, then the model


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft-07) of instellar.yml for editors and YAML language servers."""
    body = INSTELLAR.json_schema()
    custom = {"properties": {"type": {"const": "custom"}}, "required": ["type"]}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "instellar.yml",
        **body,
        "allOf": [{"if": custom, "then": {"required": ["package"]}}],
    }


def load_app(
    path: Path | str, *, strict: bool = False, name: str | None = None
) -> tuple[AppConfig, list[Diagnostic]]:
    """Load and validate an instellar.yml (or the one in a folder).

    Returns the model and its warnings; raises ConfigError with every
    diagnostic (warnings included) when the file is invalid.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "instellar.yml"
    document = load_file(path, name)
    return validate(document, file=path, strict=strict)


def validate(
    document: Document, *, file: Path | None = None, strict: bool = False
) -> tuple[AppConfig, list[Diagnostic]]:
    """Check a loaded document and build the model."""
    ctx = Checker(document, strict)
    INSTELLAR.check(document.data, (), ctx)
    app = _Assembler(document.data, ctx, Path(file or document.name).absolute()).assemble()
    diagnostics = ctx.sorted()
    if app is None or any(d.severity == "error" for d in diagnostics):
        raise ConfigError(diagnostics)
    positions = FrozenDict({format_path(path): at for path, at in document.marks.items()})
    return dataclasses.replace(app, positions=positions), diagnostics


_LEGACY_RUN_KEYS = ("binary", "start", "stop", "process", "command")


def _legacy_run_keys(raw: dict[str, Any]) -> list[str]:
    return [k for k in _LEGACY_RUN_KEYS if raw.get(k) is not None]


def _modern_run(raw: dict[str, Any]) -> bool:
    return bool(raw.get("services") or raw.get("commands"))


def _dump(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000).rstrip()


def _clean_destination(destination: str) -> str:
    """Without a leading `./` or a trailing `/` (both mean nothing to `cp -r`)."""
    while destination.startswith("./"):
        destination = destination[2:]
    return destination.rstrip("/")


def _legacy_destinations(legacy: str | list[str]) -> list[str]:
    """The `destinations` meaning what the singular `build.destination` meant.

    The original moved the folder's *contents* into /var/lib/<name>/
    (`mv "$srcdir"/<destination>/* ...`, 2021-2023), so a folder becomes
    `<folder>/*` (the app folder itself, `*`). A value already holding a glob
    names what to copy and is kept; a list (never a shape of the original) is
    read as `destinations`.
    """
    if not isinstance(legacy, str):
        return list(legacy)
    if any(c in legacy for c in "*?["):
        return [legacy]
    folder = _clean_destination(legacy)
    return ["*"] if folder in ("", ".") else [f"{folder}/*"]


class _Assembler:
    """Applies the rules that span keys and builds the model, section by section.

    A section with shape errors is skipped (its problems are reported already);
    the others are still checked so that one run reports everything.
    """

    def __init__(self, data: dict[str, Any], ctx: Checker, file: Path) -> None:
        self.data = data
        self.ctx = ctx
        self.file = file

    def section(self, key: str) -> Any:
        value = self.data.get(key)
        return value if value is not None and self.ctx.clean((key,)) else None

    def assemble(self) -> AppConfig | None:
        data, ctx = self.data, self.ctx
        dependencies = self.dependencies(self.section("dependencies") or {})
        build = self.build(self.section("build") or {})
        raw_run = data.get("run")
        if isinstance(raw_run, dict):
            # Checked whatever else is wrong in `run`, so that one run reports it all.
            self.check_run_shape(raw_run)
            self.check_run_names(raw_run)
        run = self.run(self.section("run")) if self.section("run") else None
        app_type = AppType(data.get("type") or "default") if ctx.clean(("type",)) else None
        stack = data.get("stack")
        if stack is None:
            ctx.warn(("stack",), f"no `stack` given; using {DEFAULT_STACK}")
        hooks = {k: v for k, v in (self.section("hook") or {}).items() if v is not None}
        architectures = self.architectures(self.section("architectures") or ["x86_64"])
        kits = tuple(self.kit(k) for k in self.section("kits") or ())
        if app_type is not None:
            self.type_rules(app_type, run)
        if run is not None:
            self.lint_service_mode(run, kits)
        if app_type is None or dependencies is None or build is None:
            return None
        if any(d.severity == "error" for d in ctx.diagnostics):
            return None
        return AppConfig(
            file=self.file,
            type=app_type,
            stack=stack or DEFAULT_STACK,
            dependencies=dependencies,
            build=build,
            run=run,
            hooks=FrozenDict(hooks),
            architectures=architectures,
            source=data.get("source"),
            package=data.get("package"),
            license=data.get("license"),
            description=data.get("description"),
            kits=kits,
            platform=freeze({k: data[k] for k in PLATFORM_KEYS if data.get(k) is not None}),
        )

    def architectures(self, raw: list[str]) -> tuple[str, ...]:
        """The architectures, each once (a repeat is a warning: abuild reads it once too)."""
        first: dict[str, int] = {}
        for i, arch in enumerate(raw):
            if arch in first:
                self.ctx.warn(
                    ("architectures", i),
                    f"{show(arch)} is listed twice (also item [{first[arch]}])",
                )
            first.setdefault(arch, i)
        return tuple(first)

    def dependencies(self, raw: dict[str, Any]) -> Dependencies | None:
        if not self.ctx.clean(("dependencies",)):
            return None
        return Dependencies(
            build=tuple(Dependency.parse(d) for d in raw.get("build") or ()),
            runtime=tuple(Dependency.parse(d) for d in raw.get("runtime") or ()),
            trace=bool(raw.get("trace", False)),
        )

    def build(self, raw: dict[str, Any]) -> Build | None:
        if not self.ctx.clean(("build",)):
            return None
        destinations = raw.get("destinations")
        legacy = raw.get("destination")
        key = "destinations"
        if legacy is not None and destinations is not None:
            # The original read one or the other, never both (`destinations`
            # since 2023): the newer reading wins.
            self.ctx.warn(
                ("build", "destination"),
                "is ignored: `destinations` is given too (the original reads only "
                "`destinations`); remove `destination`",
                at_key=True,
            )
        elif legacy is not None:
            key = "destination"
            destinations = _legacy_destinations(legacy)
            modern = _dump({"destinations": destinations})
            meaning = (
                f"; it copies what {show(legacy)} holds (as the original did), so write instead"
                if isinstance(legacy, str) and destinations != [legacy]
                else "; write instead"
            )
            self.ctx.warn(
                ("build", "destination"),
                f"`destination` is deprecated{meaning}:\n{modern}",
                at_key=True,
            )
        cleaned: list[str] = []
        for i, destination in enumerate(destinations or ()):
            destination = _clean_destination(destination)
            if destination in ("", "."):
                self.ctx.error(
                    ("build", key, i),
                    "names the whole app folder; list what to install instead "
                    "(`*` for every top-level entry, plus dot-files by name)",
                )
                return None
            cleaned.append(destination)
        return Build(
            command=raw.get("command") or "",
            destinations=tuple(cleaned),
            strip_binary=raw.get("strip_binary", True) is not False,
            git=raw.get("git", False) is True,
        )

    def run(self, raw: dict[str, Any]) -> Run | None:
        if _legacy_run_keys(raw) and not _modern_run(raw):
            modern = self.modernize_run(raw)
            if modern is None:
                return None
            raw = modern
        services = tuple(
            Service(
                name=s["name"],
                binary=s["binary"],
                start=s["start"]["call"],
                path=self.folder(s.get("path")),
                stop=Stop(**s["stop"]) if s.get("stop") else None,
            )
            for s in raw.get("services") or ()
        )
        commands = tuple(
            Command(
                name=c["name"],
                binary=c["binary"],
                call=c.get("call") or "",
                path=self.folder(c.get("path")),
            )
            for c in raw.get("commands") or ()
        )
        return Run(name=raw.get("name"), services=services, commands=commands)

    def check_run_shape(self, raw: dict[str, Any]) -> None:
        """The older shape beside services/commands is not read (a warning)."""
        legacy = _legacy_run_keys(raw)
        if legacy and _modern_run(raw):
            # The original reads one shape or the other, never both (services
            # and commands since 2023): the newer reading wins.
            keys = ", ".join(f"`{k}`" for k in legacy)
            self.ctx.warn(
                ("run", legacy[0]),
                f"{keys} {'is' if len(legacy) == 1 else 'are'} ignored: the older run shape "
                "(binary/start/process/stop/command directly under run) is not read when "
                "services or commands are given; remove it",
                at_key=True,
            )

    def check_run_names(self, raw: dict[str, Any]) -> None:
        """Commands must not shadow OpenRC or the shell; a name used twice is a warning.

        Checked item by item, so these are reported even when other parts of
        `run` have errors.
        """
        for key in ("services", "commands"):
            items = raw.get(key)
            if not isinstance(items, list):
                continue
            first: dict[str, int] = {}
            for i, item in enumerate(items):
                path: KeyPath = ("run", key, i, "name")
                if not isinstance(item, dict) or not self.ctx.clean(path):
                    continue
                name = item.get("name")
                if not isinstance(name, str):
                    continue
                if name in first:
                    outcome = (
                        f"SERVICE_MODE={name} starts run.services[{first[name]}], never this one"
                        if key == "services"
                        else f"this definition replaces run.commands[{first[name]}]"
                    )
                    self.ctx.warn(path, f"`{name}` is defined twice: {outcome}")
                first.setdefault(name, i)
                if key == "commands" and name in RESERVED_COMMANDS:
                    self.ctx.error(
                        path, f"`{name}` is reserved by OpenRC or the shell; choose another name"
                    )

    @staticmethod
    def folder(path: str | None) -> str | None:
        return None if path is None else (path.rstrip("/") or "/")

    def modernize_run(self, raw: dict[str, Any]) -> dict[str, Any] | None:
        """Translate the older `run` shape, warning with the modern equivalent.

        `start` (or `process`) makes one service named `web`; `command` makes
        one command per variation. Without `start` the app runs no service:
        a `run` holding only `command` defines commands.
        """
        ctx = self.ctx
        binary = raw.get("binary") or raw.get("name")
        start = raw.get("start") or raw.get("process")
        command = raw.get("command")
        if binary is None and (start or (command and command.get("variations"))):
            ctx.error(
                ("run",), "the old run shape needs `binary` (or `name`) to know what to start"
            )
            return None
        modern: dict[str, Any] = {}
        if raw.get("name"):
            modern["name"] = raw["name"]
        if start is not None:
            service: dict[str, Any] = {
                "name": "web",
                "binary": binary,
                "start": {"call": start["call"]},
            }
            if raw.get("stop"):
                service["stop"] = dict(raw["stop"])
            modern["services"] = [service]
        commands = []
        if command:
            base = command.get("call") or ""
            variations = command.get("variations") or {}
            if not variations:
                ctx.warn(
                    ("run", "command"), "has no `variations`, so it defines no command", at_key=True
                )
            for name, args in variations.items():
                path: KeyPath = ("run", "command", "variations", name)
                if not rules.COMMAND_NAME.match(name) or name in RESERVED_COMMANDS:
                    ctx.error(
                        path,
                        f"{show(name)} is not allowed: {rules.COMMAND_NAME.says}, "
                        "and not a name reserved by OpenRC or the shell",
                        at_key=True,
                    )
                    continue
                if args is not None and not isinstance(args, (str, int, float)):
                    ctx.error(path, f"expected a string of arguments, got {kind(args)}")
                    continue
                call = f"{base} {'' if args is None else args}".strip()
                if not CALL.check(call, path, ctx):
                    continue
                commands.append({"name": name, "binary": binary, "call": call})
        if commands:
            modern["commands"] = commands
        unused = [f"`{k}`" for k in ("binary", "stop") if raw.get(k) is not None]
        note = ""
        if start is None and unused:
            verb = "is" if len(unused) == 1 else "are"
            note = (
                f" (without `start` or `process` it starts no service, so "
                f"{' and '.join(unused)} {verb} not used)"
            )
        ctx.warn(
            ("run",),
            "this `run` shape (binary/start/process/command directly under run) is deprecated"
            f"{note}; write instead:\n{_dump({'run': modern})}",
            at_key=True,
        )
        return modern

    def type_rules(self, app_type: AppType, run: Run | None) -> None:
        ctx, data = self.ctx, self.data
        if app_type is AppType.DEFAULT and not (run is not None and run.services):
            if run is not None and run.commands:
                ctx.warn(
                    ("run",),
                    "defines commands but no service: the package installs an OpenRC script "
                    "for `rc-service <name> <command>` that starts nothing",
                    at_key=True,
                )
            elif ctx.clean(("run",)):
                ctx.warn(
                    ("run",),
                    "runs no service: the package installs its files in /var/lib/<name> with "
                    "no init script or s6 service; add run.services to run one",
                    at_key=data.get("run") is not None,
                )
        if app_type is AppType.STATIC and run is not None:
            ctx.warn(("run",), "is ignored for `type: static` (nginx serves the site)", at_key=True)
        elif app_type is AppType.CUSTOM:
            if data.get("package") is None:
                ctx.error(
                    ("type",),
                    "`type: custom` needs a `package` body: the shell that installs files "
                    "into $pkgdir",
                )
            if run is not None and (run.services or run.commands):
                ctx.warn(
                    ("run",),
                    "services and commands are not used for `type: custom`: no init script "
                    "or service files are generated (your package() installs what runs)",
                    at_key=True,
                )

    def lint_service_mode(self, run: Run, kits: tuple[Kit, ...]) -> None:
        known = {s.name for s in run.services}
        for k, kit in enumerate(kits):
            for f, fork in enumerate(kit.forks):
                for v, variable in enumerate(fork.variables):
                    mode = variable.default_value
                    if variable.key == "SERVICE_MODE" and mode not in known:
                        self.ctx.warn(
                            ("kits", k, "forks", f, "variables", v, "default_value"),
                            f"SERVICE_MODE {show(mode)} names no service of run.services "
                            f"({', '.join(sorted(known))}); the fork would run the default service",
                        )

    def kit(self, raw: dict[str, Any]) -> Kit:
        return Kit(
            name=raw["name"],
            description=raw.get("description") or "",
            main=bool(raw.get("main", False)),
            ports=tuple(
                Port(p["name"], p["target"], bool(p.get("main", False)))
                for p in raw.get("ports") or ()
            ),
            variables=tuple(self.variable(v) for v in raw.get("variables") or ()),
            forks=tuple(
                Fork(
                    f["name"],
                    f.get("description") or "",
                    tuple(self.variable(v) for v in f.get("variables") or ()),
                )
                for f in raw.get("forks") or ()
            ),
        )

    @staticmethod
    def variable(raw: dict[str, Any]) -> Variable:
        return Variable(
            key=raw["key"],
            default_value=raw.get("default_value"),
            driver=raw.get("driver"),
            driver_options=freeze(raw.get("driver_options") or {}),
        )


__all__ = [
    "INSTELLAR",
    "Checker",
    "json_schema",
    "load_app",
    "validate",
]
