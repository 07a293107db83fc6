"""Warnings about a valid configuration that would not work as intended.

Pure functions over the model, the identity and (optionally) the loaded
document for positions; they return warning diagnostics and never raise.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

from pakman.alpine import OPENRC_ACTIONS
from pakman.config.model import HOOK_NAMES, AppConfig, AppType, Identity
from pakman.config.source import Document
from pakman.errors import Diagnostic, KeyPath, format_path

_OPERATOR_CHARS = frozenset(";&|()<>")


def lint_app(
    app: AppConfig, identity: Identity, document: Document | None = None
) -> list[Diagnostic]:
    """Every warning about the app as rendered for `identity`."""
    found = (
        lint_run_name(app, identity, document)
        + lint_hooks(app, identity, document)
        + lint_openrc_dependency(app, identity, document)
    )
    return sorted(found, key=lambda d: (d.line, d.column))


def lint_openrc_dependency(
    app: AppConfig, identity: Identity, document: Document | None = None
) -> list[Diagnostic]:
    """A runtime dependency on `<name>-openrc` when the package makes no such split."""
    if app.type is not AppType.DEFAULT or "initd" in app.service_files:
        return []
    openrc = f"{identity.name}-openrc"
    return [
        _warning(
            app,
            document,
            ("dependencies", "runtime", i),
            f"`{openrc}` is not made: the package installs no init script (`run` defines "
            "no service or command), so nothing provides it; remove it",
        )
        for i, dependency in enumerate(app.dependencies.runtime)
        if dependency.name == openrc and not dependency.conflict
    ]


def lint_run_name(
    app: AppConfig, identity: Identity, document: Document | None = None
) -> list[Diagnostic]:
    """A `run.name` other than the package name: the service is installed as the package."""
    if app.type is not AppType.DEFAULT or app.run is None or app.run.name in (None, identity.name):
        return []
    message = (
        f"the package is named `{identity.name}`, so the service is installed and run as "
        f"`{identity.name}` (/etc/init.d/{identity.name}, /var/lib/{identity.name}), "
        f"not `{app.run.name}`; use `rc-service {identity.name} ...` in hooks"
    )
    return [_warning(app, document, ("run", "name"), message)]


def lint_hooks(
    app: AppConfig, identity: Identity, document: Document | None = None
) -> list[Diagnostic]:
    """`rc-service`/`rc-update` lines in hooks that name an unknown service or command.

    The package's own service must be called by the package name; a command
    must be one of `run.commands` or an OpenRC action. Other services are
    accepted when a runtime dependency of that name provides them (nginx for
    a static site).
    """
    found: list[Diagnostic] = []
    for hook in HOOK_NAMES:
        for tool, service, action in _service_calls(app.hooks.get(hook) or ""):
            message = _problem(app, identity, tool, service, action)
            if message:
                words = [action, service] if tool == "rc-update" else [service, action]
                call = " ".join([tool, *(w for w in words if w)])
                found.append(_warning(app, document, ("hook", hook), f"`{call}`: {message}"))
    return found


def _problem(
    app: AppConfig, identity: Identity, tool: str, service: str, action: str | None
) -> str | None:
    known = {identity.name} | {d.name for d in app.dependencies.runtime}
    if app.type is AppType.STATIC:
        known.add("nginx")
    if service not in known:
        if app.run is not None and service == app.run.name:
            return (
                f"the service is installed as `{identity.name}` (the package name), not `{service}`"
            )
        return (
            f"no service `{service}`: it is neither this package (`{identity.name}`) "
            "nor one of its runtime dependencies"
        )
    if service != identity.name:
        return None
    if app.type is AppType.STATIC:
        return "a `type: static` package installs no OpenRC service of its own"
    if app.type is AppType.DEFAULT and "initd" not in app.service_files:
        return "the package installs no OpenRC service: `run` defines no service or command"
    if app.type is AppType.CUSTOM:
        return None  # its package() may install an init script
    commands = {c.name for c in app.run.commands} if app.run else set()
    if tool == "rc-service" and action and action not in commands | OPENRC_ACTIONS:
        defined = ", ".join(sorted(commands)) or "none"
        return (
            f"`{action}` is neither a command of run.commands ({defined}) nor an "
            "OpenRC action (start, stop, restart, status, ...)"
        )
    return None


def _service_calls(body: str) -> Iterator[tuple[str, str, str | None]]:
    """(tool, service, action) for each rc-service/rc-update call in a shell script.

    For rc-update the action is add/del; for rc-service it is the command.
    Arguments holding variables or substitutions are skipped: their values
    are unknown here.
    """
    for line in body.splitlines():
        words = _words(line)
        for i, word in enumerate(words):
            tool = word.rsplit("/", 1)[-1]
            if tool not in ("rc-service", "rc-update"):
                continue
            args: list[str] = []
            for arg in words[i + 1 :]:
                if set(arg) <= _OPERATOR_CHARS:
                    break
                if not arg.startswith("-"):
                    args.append(arg)
            if tool == "rc-service" and args:
                service, action = args[0], (args[1] if len(args) > 1 else None)
            elif tool == "rc-update" and len(args) >= 2 and args[0] in ("add", "del", "delete"):
                service, action = args[1], args[0]
            else:
                continue
            if any(c in service + (action or "") for c in "$`"):
                continue
            yield tool, service, action


def _words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote: the line continues elsewhere
        return line.split("#", 1)[0].split()


def _warning(app: AppConfig, document: Document | None, path: KeyPath, message: str) -> Diagnostic:
    if document is not None:
        return document.diagnostic(path, message, warning=True, at_key=True)
    return Diagnostic(str(app.file), 0, 0, format_path(path), message, "warning")


__all__ = ["lint_app", "lint_hooks", "lint_openrc_dependency", "lint_run_name"]
