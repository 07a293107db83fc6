"""Rendering the packaging files: the APKBUILD, the service files and the install scripts.

One Jinja2 environment, one template per generated file in `pakman/render/templates/`
(named after the file), one `render_*` function per file. The `render_*`
functions do no I/O besides reading templates. The module's file I/O is in
three functions at its end: `check_app_files` (the app's own files a
generated package needs, e.g. a static site's nginx.conf), `write_rendered`
(writes the results, each only when changed) and `prune_rendered` (removes
the files an app no longer generates and rewrites the folder's list of what
was rendered there).

Every configuration value reaches a script through one of the escaping
filters below, never through quotes written in a template:

- `sh`: one shell word (`shlex.quote`);
- `sh_words`: a list of words, each quoted, joined by spaces;
- `sh_glob`: a destination pattern: literal runs quoted, `*`, `?` and simple
  `[...]` left bare so the shell still expands them;
- `execline`: one word of an execline script;
- `word`: a constant of pakman's own (a hook name, a file kind) that needs no
  quoting in any context; anything else is refused;
- `function_name`: a shell function name; anything but a plain name is refused;
- `verbatim`: the user's own shell (hook bodies, `build.command`, `package`,
  `source`), inserted as written, by design.

`call` strings are data: split with `shlex.split` into arguments, nothing
expanded. The tests render hostile values into every field and execute the
scripts.
"""

from __future__ import annotations

import errno
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from pakman.alpine import app_home
from pakman.config.model import (
    HOOK_NAMES,
    AppConfig,
    AppType,
    Command,
    Identity,
    Service,
    runtime_dependencies,
)
from pakman.errors import ConfigError, PakmanError
from pakman.fileio import read_regular, write_if_changed
from pakman.render.files import GENERATED_FILES, INSTALLED_FILES, TEMPLATES


class RenderError(ConfigError):
    """A value cannot be written safely into a generated file (the validator prevents it)."""


# --------------------------------------------------------------------------
# The escaping filters

_SAFE_WORD = re.compile(r"[A-Za-z0-9_.+-]+\Z")
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_EXECLINE_BARE = re.compile(r"[A-Za-z0-9_./:,+@%=-]+\Z")
# A bracket expression left to the shell: only characters that are inert
# unquoted, so the class cannot carry anything but a set of characters.
_GLOB_PART = re.compile(r"\*|\?|\[!?[A-Za-z0-9_.,+@%:=-]+\]")


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise RenderError(f"{text!r} contains a NUL byte, which no script can hold")
    return text


def sh(value: object) -> str:
    """One shell word that means exactly `value`."""
    return shlex.quote(_no_nul(str(value)))


def sh_words(words: Iterable[object]) -> str:
    """Shell words, each quoted, separated by spaces."""
    return " ".join(sh(word) for word in words)


def sh_glob(pattern: str) -> str:
    """A glob for the shell: literal runs quoted, `*`, `?` and `[...]` left to expand."""
    out: list[str] = []
    position = 0
    for match in _GLOB_PART.finditer(_no_nul(pattern)):
        if match.start() > position:
            out.append(sh(pattern[position : match.start()]))
        out.append(match.group())
        position = match.end()
    if position < len(pattern) or not out:
        out.append(sh(pattern[position:]))
    return "".join(out)


def execline(value: object) -> str:
    """One word of an execline script: bare when plain, else double-quoted."""
    text = _no_nul(str(value))
    if _EXECLINE_BARE.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def word(value: object) -> str:
    """A value that needs no quoting in any shell context; refuse anything else."""
    text = str(value)
    if not _SAFE_WORD.match(text):
        raise RenderError(f"{text!r} is not a plain word")
    return text


def function_name(value: object) -> str:
    """A shell function name; refuse anything else (a name cannot be quoted)."""
    text = str(value)
    if not _FUNCTION_NAME.match(text):
        raise RenderError(
            f"the command name {text!r} cannot be a shell function name: "
            "letters, digits and '_', not starting with a digit"
        )
    return text


def verbatim(text: str) -> str:
    """The user's own shell, as written (trailing newlines left to the template)."""
    return _no_nul(text).rstrip("\n")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(
        sh=sh,
        sh_words=sh_words,
        sh_glob=sh_glob,
        execline=execline,
        word=word,
        function_name=function_name,
        verbatim=verbatim,
    )
    return env


ENVIRONMENT = _environment()
FILTERS = ("sh", "sh_words", "sh_glob", "execline", "word", "function_name", "verbatim")


def _render(template: str, **context: Any) -> str:
    return ENVIRONMENT.get_template(template).render(**context)


# --------------------------------------------------------------------------
# What the files say


def home(identity: Identity) -> str:
    """The app's folder on the installed system: `/var/lib/<name>`."""
    return app_home(identity.name)


def argv(item: Service | Command, identity: Identity) -> list[str]:
    """The program and arguments a service or command runs: `<path>/<binary> <call...>`."""
    call = item.start if isinstance(item, Service) else item.call
    if item.path is None:
        folder = f"{home(identity)}/bin"
    elif item.path.startswith("/"):
        folder = item.path
    else:  # the original's scripts ran it from the app's folder
        folder = f"{home(identity)}/{item.path}"
    try:
        arguments = shlex.split(call)
    except ValueError as exc:
        raise RenderError(f"{call!r} cannot be split into arguments: {exc}") from None
    return [f"{folder.rstrip('/')}/{item.binary}", *arguments]


def options(app: AppConfig) -> list[str]:
    """abuild's options: `!check`, `!tracedeps` unless traced, `!strip` when not stripped."""
    chosen = ["!check"]
    if not app.dependencies.trace:
        chosen.append("!tracedeps")
    if not app.build.strip_binary:
        chosen.append("!strip")
    return chosen


def service_files(app: AppConfig) -> tuple[str, ...]:
    """The kinds of file generated to run the app (see `AppConfig.service_files`)."""
    return app.service_files


def openrc_subpackage(app: AppConfig) -> bool:
    """Whether the APKBUILD declares `<name>-openrc`: when an init script is installed.

    A custom app's own package() may install one, as with the original.
    """
    return app.type is AppType.CUSTOM or "initd" in app.service_files


def hook_scripts(app: AppConfig) -> list[str]:
    """The hooks that become install scripts of their own (pre-install is merged)."""
    unknown = sorted(set(app.hooks) - set(HOOK_NAMES))
    if unknown:
        raise RenderError(f"unknown hook {unknown[0]!r}; hooks are {', '.join(HOOK_NAMES)}")
    return [h for h in HOOK_NAMES if h in app.hooks and h != "pre-install"]


# --------------------------------------------------------------------------
# One function per generated file


def render_apkbuild(app: AppConfig, identity: Identity) -> str:
    """The APKBUILD that abuild builds."""
    default_package = app.package is None
    return _render(
        "APKBUILD",
        identity=identity,
        architectures=" ".join(app.architectures),
        options=" ".join(options(app)),
        depends=" ".join(runtime_dependencies(app)),
        makedepends=" ".join(str(d) for d in app.dependencies.build),
        openrc=openrc_subpackage(app),
        hooks=hook_scripts(app),
        service_files=service_files(app),
        installs=[
            (kind, f"{mode:o}", target.format(name="$pkgname"))
            for kind, target, mode in INSTALLED_FILES
            if kind in service_files(app)
        ],
        source=app.source or "",
        default_package=default_package,
        static=app.type is AppType.STATIC,
        build_command=app.build.command,
        destinations=app.build.destinations,
        package=app.package or "",
    )


def render_initd(app: AppConfig, identity: Identity) -> str:
    """The OpenRC init script: s6 supervision, and one function per command."""
    commands = app.commands
    return _render(
        "initd",
        identity=identity,
        supervised=bool(app.services),
        description=f"{identity.name} service",
        extra_commands=" ".join(function_name(c.name) for c in commands),
        commands=[{"name": c.name, "argv": argv(c, identity)} for c in commands],
        home=home(identity),
        env_exec=f"{home(identity)}/bin/env-exec",
        service_dir=f"{home(identity)}/service",
    )


def render_run(app: AppConfig, identity: Identity) -> str:
    """The s6 run script: starts the service that SERVICE_MODE names, else the first."""
    services = [{"name": s.name, "argv": argv(s, identity)} for s in app.services]
    if not services:
        raise ValueError("an app without services has no run script (see AppConfig.service_files)")
    return _render(
        "run",
        identity=identity,
        environment=f"{home(identity)}/bin/environment",
        home=home(identity),
        services=services,
        default_service=services[0],
    )


def render_finish(app: AppConfig, identity: Identity) -> str:
    """The s6 finish script: stop restarting after repeated failures."""
    return _render("finish")


def render_log(app: AppConfig, identity: Identity) -> str:
    """The s6 log/run script: timestamped, rotated logs in /var/log/<name>."""
    return _render("log", log_dir=f"/var/log/{identity.name}")


def render_environment(app: AppConfig, identity: Identity) -> str:
    """The environment loader sourced before the app runs."""
    return _render("environment")


def render_env_exec(app: AppConfig, identity: Identity) -> str:
    """env-exec: runs a command line with the app's environment."""
    return _render("env-exec", environment=f"{home(identity)}/bin/environment", home=home(identity))


def render_profile(app: AppConfig, identity: Identity) -> str:
    """The /etc/profile.d script that puts the app's bin folder on PATH."""
    return _render("profile", bin_dir=f"{home(identity)}/bin")


def render_pre_install(app: AppConfig, identity: Identity) -> str:
    """The pre-install script: user and group, then the user's own pre-install hook."""
    return _render(
        "pre-install", identity=identity, home=home(identity), hook=app.hooks.get("pre-install")
    )


def render_hook(app: AppConfig, identity: Identity, hook: str) -> str:
    """One install script from `hook.<name>`."""
    return _render("hook", hook=app.hooks[hook])


# --------------------------------------------------------------------------
# Every file of an app


@dataclass(frozen=True)
class FileKind:
    """One kind of generated file: its template, renderer and mode.

    What each file reads is declared once, by its render stage in
    pipelines/default.yml; tests check that declaration against the renderer.
    """

    kind: str
    template: str
    render: Callable[[AppConfig, Identity], str]
    mode: int


_RENDERERS: dict[str, Callable[[AppConfig, Identity], str]] = {
    "APKBUILD": render_apkbuild,
    "initd": render_initd,
    "run": render_run,
    "finish": render_finish,
    "log": render_log,
    "environment": render_environment,
    "env-exec": render_env_exec,
    "profile": render_profile,
    "pre-install": render_pre_install,
}
RENDERED_FILES: tuple[FileKind, ...] = tuple(
    FileKind(f.kind, f.template, _RENDERERS[f.kind], f.mode) for f in GENERATED_FILES
)
HOOK_FILE_MODE = 0o755
_KINDS = {k.kind: k for k in RENDERED_FILES}


@dataclass(frozen=True)
class RenderedFile:
    """A generated file: its name in the .apk/<org>/<name>/ folder, kind, text and mode."""

    name: str
    kind: str  # a FileKind.kind, or "hook" for hook.<k>
    template: str
    text: str
    mode: int


def file_kinds(app: AppConfig) -> list[FileKind]:
    """The kinds of file the app gets, besides one per hook (see `render_all`)."""
    return [_KINDS["APKBUILD"], *(_KINDS[k] for k in service_files(app)), _KINDS["pre-install"]]


def render_all(app: AppConfig, identity: Identity) -> dict[str, RenderedFile]:
    """Every file generated for the app, by file name (`APKBUILD`, `<name>.initd`, ...).

    Besides the kinds of `RENDERED_FILES`, each hook but pre-install becomes
    `<name>.<hook>` from the template `hook` (`render_hook`), reading
    `app.hooks.<hook>`.
    """
    if identity.name in ("", ".", "..") or "/" in identity.name:
        raise RenderError(f"the package name {identity.name!r} cannot name a file")
    files: dict[str, RenderedFile] = {}
    for spec in file_kinds(app):
        name = "APKBUILD" if spec.kind == "APKBUILD" else f"{identity.name}.{spec.kind}"
        text = spec.render(app, identity)
        files[name] = RenderedFile(name, spec.kind, spec.template, text, spec.mode)
    for hook in hook_scripts(app):
        name = f"{identity.name}.{hook}"
        text = render_hook(app, identity, hook)
        files[name] = RenderedFile(name, "hook", "hook", text, HOOK_FILE_MODE)
    return files


# --------------------------------------------------------------------------
# Writing


def write_rendered(files: Mapping[str, RenderedFile], out_dir: Path) -> list[tuple[Path, bool]]:
    """Write each file atomically unless unchanged; (path, written) for each."""
    results = []
    for name in sorted(files):
        path = out_dir / name
        rendered = files[name]
        try:
            written = write_if_changed(path, rendered.text.encode(), rendered.mode)
        except OSError as exc:
            raise PakmanError(f"cannot write {path}: {exc.strerror or exc}") from None
        results.append((path, written))
    return results


RENDERED_LIST = ".pakman-rendered"  # in the output folder: the files written last time
RENDERED_LIST_LIMIT = 1 << 20  # a few file names; a checkout can commit anything there


def prune_rendered(names: Iterable[str], out_dir: Path) -> list[Path]:
    """Remove the files rendered into `out_dir` before that are no longer generated.

    Only files named in the folder's list of what was rendered there are
    touched (abuild's own files and anything else stay); the list is then
    replaced by `names`. Returns the paths removed.
    """
    listing = out_dir / RENDERED_LIST
    try:
        raw = read_regular(listing, RENDERED_LIST_LIMIT)
    except FileNotFoundError:
        raw = b""
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EISDIR):
            raise PakmanError(f"cannot read {listing}: {exc.strerror or exc}") from None
        raw = b""  # a FIFO or a device committed there: bookkeeping lost, nothing pruned
    try:
        before = set(raw.decode("utf-8").splitlines()) if len(raw) <= RENDERED_LIST_LIMIT else set()
    except UnicodeDecodeError:  # not pakman's list: nothing pruned, and it is replaced
        before = set()
    now = sorted(set(names))
    removed = []
    for name in sorted(before - set(now)):
        path = out_dir / name
        if name and "/" not in name and not name.startswith(".") and path.is_file():
            path.unlink()
            removed.append(path)
    try:
        write_if_changed(listing, "".join(f"{name}\n" for name in now).encode(), 0o644)
    except OSError as exc:
        raise PakmanError(f"cannot write {listing}: {exc.strerror or exc}") from None
    return removed


__all__ = [
    "ENVIRONMENT",
    "FILTERS",
    "RENDERED_FILES",
    "FileKind",
    "RenderError",
    "RenderedFile",
    "argv",
    "execline",
    "file_kinds",
    "prune_rendered",
    "render_all",
    "render_apkbuild",
    "render_env_exec",
    "render_environment",
    "render_finish",
    "render_hook",
    "render_initd",
    "render_log",
    "render_pre_install",
    "render_profile",
    "render_run",
    "sh",
    "sh_glob",
    "sh_words",
    "write_rendered",
]
