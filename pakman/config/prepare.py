"""One app, prepared: its instellar.yml loaded, validated, named and linted.

`pakman check`, `pakman render` (and `bootstrap`) and the build's graph
(`build`, `graph`, `explain`, `run-step`, plain doit) all prepare an app
through `prepare_app`, so they accept, refuse and warn about the same files
in the same words.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pakman.config.identity import resolve_identity
from pakman.config.lint import lint_app
from pakman.config.model import AppConfig, AppType, Identity
from pakman.config.schema import validate
from pakman.config.source import Document, load_file
from pakman.errors import ConfigError, Diagnostic
from pakman.fileio import confined

if TYPE_CHECKING:
    from pakman.config.gitmeta import Revision


class InvalidApp(ConfigError):
    """The app's own files are invalid; carries every diagnostic found (warnings too)."""


@dataclass(frozen=True)
class PreparedApp:
    """A valid app, named, with the document it was read from and its warnings."""

    config: AppConfig
    identity: Identity
    document: Document  # for positions: later stages locate their errors with it
    warnings: tuple[Diagnostic, ...]  # in file order


def prepare_app(
    path: Path,
    *,
    strict: bool = False,
    name: str | None = None,
    organization: str | None = None,
    version: str | None = None,
    release: int | str | None = None,
    url: str | None = None,
    license: str | None = None,
    description: str | None = None,
    epoch: int = 0,
    revision: Revision | None = None,
) -> PreparedApp:
    """Load, validate, name (built at `epoch`) and lint the instellar.yml at `path`.

    `revision`: the file is in that commit's tree, and git is asked at it.

    Raises InvalidApp with every diagnostic found, warnings included, when
    the file is invalid or the package needs a file the app lacks. A bad
    option (say `release="x"`) is not the file's fault: it raises a plain
    ConfigError.
    """
    try:
        document = load_file(path)
        config, warnings = validate(document, file=path, strict=strict)
    except ConfigError as exc:
        raise InvalidApp(exc.diagnostics) from None
    identity = resolve_identity(
        config,
        name=name,
        organization=organization,
        version=version,
        release=release,
        url=url,
        revision=revision,
        license=license,
        description=description,
    )
    identity = dataclasses.replace(identity, epoch=epoch)
    found = sorted([*warnings, *lint_app(config, identity, document)], key=_position)
    try:
        check_app_files(config, document)
    except ConfigError as exc:
        raise InvalidApp([*found, *exc.diagnostics]) from None
    return PreparedApp(config, identity, document, tuple(found))


def check_app_files(app: AppConfig, document: Document | None = None) -> None:
    """Files the generated package needs from the app itself; raise ConfigError if missing.

    With the loaded `document`, the error is located at the `type` key.
    """
    if app.type is AppType.STATIC:
        confined(app.root / "nginx.conf", app.root, "nginx.conf")
    if app.type is AppType.STATIC and not (app.root / "nginx.conf").is_file():
        message = (
            f"`type: static` installs the app's nginx.conf as /etc/<name>/default.conf, "
            f"but {app.root / 'nginx.conf'} does not exist"
        )
        raise ConfigError(
            document.diagnostic(("type",), message)
            if document is not None
            else Diagnostic(str(app.file), 0, 0, "type", message)
        )


def _position(diagnostic: Diagnostic) -> tuple[int, int]:
    return (diagnostic.line, diagnostic.column)
