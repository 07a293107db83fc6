"""Rendering the packaging files: the APKBUILD, the service files and the install scripts.

One Jinja2 environment, one template per generated file in `pakman/render/templates/`
(named after the file), and one generic renderer (`render_generated`): a file
declared in render/files.py is rendered from exactly the slice of
configuration it declares, which is what its render step's key is made of.
Rendering does no I/O besides reading templates; `write_rendered` writes the
results (each only when changed) and `prune_rendered` removes the files an app
no longer generates.

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
    Dependency,
    Identity,
    Service,
    runtime_dependencies,
)
from pakman.config.reads import config_data, config_slice
from pakman.errors import ConfigError, PakmanError
from pakman.fileio import read_regular, write_if_changed
from pakman.render import files as declarations
from pakman.render.files import TEMPLATES, GeneratedFile


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
# What the files say, from the slice of configuration each reads
#
# A file's slice is `{"config": {key: value}, "identity": {field: value}}`
# with the keys and fields its declaration in render/files.py names (keys as
# a stage's `reads: config:` names them: `run.services`, `hook:names`, ...),
# as plain data: a render step's key is made of exactly this, and its action
# gets nothing else.

Slice = Mapping[str, Any]


def _home(name: str) -> str:
    """The app's folder on the installed system: `/var/lib/<name>`."""
    return app_home(name)


def _argv(item: Mapping[str, Any], call: str, name: str) -> list[str]:
    """The program and arguments a service or command runs: `<path>/<binary> <call...>`."""
    path = item.get("path")
    if path is None:
        folder = f"{_home(name)}/bin"
    elif path.startswith("/"):
        folder = path
    else:  # the original's scripts ran it from the app's folder
        folder = f"{_home(name)}/{path}"
    try:
        arguments = shlex.split(call)
    except ValueError as exc:
        raise RenderError(f"{call!r} cannot be split into arguments: {exc}") from None
    return [f"{folder.rstrip('/')}/{item['binary']}", *arguments]


def home(identity: Identity) -> str:
    """The app's folder on the installed system: `/var/lib/<name>`."""
    return _home(identity.name)


def argv(item: Service | Command, identity: Identity) -> list[str]:
    """The program and arguments a service or command of the model runs."""
    call = item.start if isinstance(item, Service) else item.call
    return _argv({"binary": item.binary, "path": item.path}, call, identity.name)


def _options(config: Slice) -> list[str]:
    """abuild's options: `!check`, `!tracedeps` unless traced, `!strip` when not stripped."""
    chosen = ["!check"]
    if not config["dependencies"]["trace"]:
        chosen.append("!tracedeps")
    if not config["build"]["strip_binary"]:
        chosen.append("!strip")
    return chosen


def _depends(config: Slice) -> list[str]:
    """`depends`: the runtime list, plus nginx for a static site."""
    runtime = map(Dependency.parse, config["dependencies"]["runtime"])
    return runtime_dependencies(AppType(config["type"]), runtime)


def _hook_scripts(names: Iterable[str]) -> list[str]:
    """The hooks that become install scripts of their own (pre-install is merged)."""
    unknown = sorted(set(names) - set(HOOK_NAMES))
    if unknown:
        raise RenderError(f"unknown hook {unknown[0]!r}; hooks are {', '.join(HOOK_NAMES)}")
    return [h for h in HOOK_NAMES if h in names and h != "pre-install"]


def hook_scripts(app: AppConfig) -> list[str]:
    """The hooks of an app that become install scripts of their own."""
    return _hook_scripts(app.hooks)


def _apkbuild(config: Slice, identity: Slice) -> dict[str, Any]:
    """The APKBUILD that abuild builds (a build's render step leaves the release to packaging)."""
    files = tuple(config["service-files"])
    app_type = config["type"]
    return dict(
        identity={"release": 0, **identity},
        architectures=" ".join(config["architectures"]),
        options=" ".join(_options(config)),
        depends=" ".join(_depends(config)),
        makedepends=" ".join(config["dependencies"]["build"]),
        # `<name>-openrc` when an init script is installed; a custom app's own
        # package() may install one, as with the original.
        openrc=app_type == AppType.CUSTOM.value or "initd" in files,
        hooks=_hook_scripts(config["hook:names"]),
        service_files=files,
        installs=[
            (kind, f"{mode:o}", target.format(name="$pkgname"))
            for kind, target, mode in declarations.INSTALLED_FILES
            if kind in files
        ],
        source=config["source"] or "",
        default_package=config["package"] is None,
        static=app_type == AppType.STATIC.value,
        build_command=config["build"]["command"],
        destinations=config["build"]["destinations"],
        package=config["package"] or "",
    )


def _initd(config: Slice, identity: Slice) -> dict[str, Any]:
    """The OpenRC init script: s6 supervision, and one function per command."""
    name, commands = identity["name"], config["run.commands"] or ()
    return dict(
        identity=identity,
        supervised="run" in config["service-files"],
        description=f"{name} service",
        extra_commands=" ".join(function_name(c["name"]) for c in commands),
        commands=[{"name": c["name"], "argv": _argv(c, c["call"], name)} for c in commands],
        home=_home(name),
        env_exec=f"{_home(name)}/bin/env-exec",
        service_dir=f"{_home(name)}/service",
    )


def _run(config: Slice, identity: Slice) -> dict[str, Any]:
    """The s6 run script: starts the service that SERVICE_MODE names, else the first."""
    name = identity["name"]
    services = [
        {"name": s["name"], "argv": _argv(s, s["start"]["call"], name)}
        for s in config["run.services"] or ()
    ]
    if not services:
        raise ValueError("an app without services has no run script (see AppConfig.service_files)")
    return dict(
        identity=identity,
        environment=f"{_home(name)}/bin/environment",
        home=_home(name),
        services=services,
        default_service=services[0],
    )


def _log(config: Slice, identity: Slice) -> dict[str, Any]:
    """The s6 log/run script: timestamped, rotated logs in /var/log/<name>."""
    return dict(log_dir=f"/var/log/{identity['name']}")


def _env_exec(config: Slice, identity: Slice) -> dict[str, Any]:
    """env-exec: runs a command line with the app's environment."""
    home = _home(identity["name"])
    return dict(environment=f"{home}/bin/environment", home=home)


def _profile(config: Slice, identity: Slice) -> dict[str, Any]:
    """The /etc/profile.d script that puts the app's bin folder on PATH."""
    return dict(bin_dir=f"{_home(identity['name'])}/bin")


def _pre_install(config: Slice, identity: Slice) -> dict[str, Any]:
    """The pre-install script: user and group, then the user's own pre-install hook."""
    return dict(identity=identity, home=_home(identity["name"]), hook=config["hook.pre-install"])


# The files whose templates want more than their slice as is: values derived
# from it (paths, argument lists, abuild's options). A file without an entry
# here renders from `config`, `identity` and (when it reads the name) `home`.
Context = Callable[[Slice, Slice], dict[str, Any]]
CONTEXTS: dict[str, Context] = {
    "APKBUILD": _apkbuild,
    "initd": _initd,
    "run": _run,
    "log": _log,
    "env-exec": _env_exec,
    "profile": _profile,
    "pre-install": _pre_install,
}
HOOK_FILE_MODE = 0o755


def render_generated(generated: GeneratedFile, reads: Slice) -> str:
    """The text of a generated file from exactly the slice it declares (`reads`)."""
    config: Slice = reads.get("config", {})
    identity: Slice = reads.get("identity", {})
    context = CONTEXTS.get(generated.kind)
    if context is not None:
        return _render(generated.template, **context(config, identity))
    extra = {"home": _home(identity["name"])} if "name" in identity else {}
    return _render(generated.template, config=config, identity=identity, **extra)


def render_hook_script(body: str) -> str:
    """One install script, of the hook's own shell."""
    return _render("hook", hook=body)


def declared(kind: str) -> GeneratedFile:
    """The declaration of a kind of generated file (render/files.py)."""
    return next(f for f in declarations.GENERATED_FILES if f.kind == kind)


# --------------------------------------------------------------------------
# Every file of an app


def file_reads(generated: GeneratedFile, app: AppConfig, identity: Identity) -> dict[str, Any]:
    """An app's slice for a generated file: what its render step's key is made of."""
    data = config_data(app)
    reads: dict[str, Any] = {}
    if generated.config:
        reads["config"] = {k: config_slice(data, k, None) for k in generated.config}
    if generated.identity:
        reads["identity"] = {k: getattr(identity, k) for k in generated.identity}
    return reads


def render_kind(kind: str, app: AppConfig, identity: Identity) -> str:
    """One generated file of an app, as `pakman render` writes it."""
    generated = declared(kind)
    reads = file_reads(generated, app, identity)
    if kind == "APKBUILD":
        # Written on its own, the APKBUILD carries the release; a build's
        # render step leaves it to packaging, so that its key does not read it.
        reads["identity"]["release"] = identity.release
    return render_generated(generated, reads)


def render_hook(app: AppConfig, identity: Identity, hook: str) -> str:
    """One install script from `hook.<name>`."""
    return render_hook_script(app.hooks[hook])


@dataclass(frozen=True)
class RenderedFile:
    """A generated file: its name in the .apk/<org>/<name>/ folder, kind, text and mode."""

    name: str
    kind: str  # a GeneratedFile.kind, or "hook" for hook.<k>
    template: str
    text: str
    mode: int


def file_kinds(app: AppConfig) -> list[GeneratedFile]:
    """The generated files the app gets, besides one per hook (see `render_all`).

    The files that run the app, for those that get them; the others always
    (as the pipeline's render stages: `Stage.applies_to`).
    """
    return [f for f in declarations.GENERATED_FILES if not f.runs or f.kind in app.service_files]


def render_all(app: AppConfig, identity: Identity) -> dict[str, RenderedFile]:
    """Every file generated for the app, by file name (`APKBUILD`, `<name>.initd`, ...).

    Besides the declared files, each hook but pre-install becomes
    `<name>.<hook>` from the template `hook`, reading `hook.<hook>`.
    """
    if identity.name in ("", ".", "..") or "/" in identity.name:
        raise RenderError(f"the package name {identity.name!r} cannot name a file")
    files: dict[str, RenderedFile] = {}
    for generated in file_kinds(app):
        name = generated.file_name.format(name=identity.name)
        text = render_kind(generated.kind, app, identity)
        files[name] = RenderedFile(name, generated.kind, generated.template, text, generated.mode)
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
    "CONTEXTS",
    "ENVIRONMENT",
    "FILTERS",
    "HOOK_FILE_MODE",
    "RenderError",
    "RenderedFile",
    "argv",
    "declared",
    "execline",
    "file_kinds",
    "file_reads",
    "home",
    "prune_rendered",
    "render_all",
    "render_generated",
    "render_hook",
    "render_hook_script",
    "render_kind",
    "sh",
    "sh_glob",
    "sh_words",
    "write_rendered",
]
