"""The generated files, declared once: template, what it reads, mode and where it is installed.

Imports no Jinja2, so the step graph can key a step on a template's text
without loading the renderer. A generated file is its template in
`templates/` and one `GeneratedFile` below: the pipeline's `generated-files`
stage becomes one render stage per declaration (`render-<kind>`, keyed on
exactly the `config` and `identity` it declares), the renderer
(render/engine.py) gives the template exactly that slice, and the Python
package() (steps/staging.py) and the APKBUILD's package() install it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

TEMPLATES = Path(__file__).with_name("templates")


class GeneratedFile(NamedTuple):
    """One kind of generated file (a named tuple: cheaper to define than a dataclass)."""

    kind: str  # the file is `<name>.<kind>` (the APKBUILD is `APKBUILD`)
    mode: int
    description: str  # what its render step does (`pakman graph`, `explain`)
    # Where a default-type app's package installs it (`{name}` the package
    # name); None: not installed (abuild reads it).
    installed: str | None = None
    # A file that runs the app: "services" when an app with services gets it,
    # "commands" when an app with commands only does. Such a file is only
    # generated for default-type apps that get it; the others for every app.
    runs: tuple[str, ...] = ()
    # What the template reads, and all it is given: keys of instellar.yml as
    # a stage's `reads: config:` names them (pipelines/default.yml), and
    # identity fields. The template sees `config` (by those keys) and
    # `identity` (those fields); a file without a context function of its
    # own in render/engine.py sees just these, plus `home` when it reads the name.
    config: tuple[str, ...] = ()
    identity: tuple[str, ...] = ()

    @property
    def template(self) -> str:
        return self.kind

    @property
    def file_name(self) -> str:
        """Its name in the app's render folder; `{name}` is the package name."""
        return "APKBUILD" if self.kind == "APKBUILD" else f"{{name}}.{self.kind}"

    @property
    def stage(self) -> str:
        """The name of its render stage in the step graph."""
        return f"render-{self.kind.lower()}"


GENERATED_FILES: tuple[GeneratedFile, ...] = (
    GeneratedFile(
        "APKBUILD",
        0o644,
        "write the APKBUILD (the release is filled in when packaging)",
        config=(
            "type",
            "dependencies",
            "build",
            "hook:names",
            "service-files",
            "architectures",
            "source",
            "package",
        ),
        identity=("name", "version", "url", "license", "description"),
    ),
    GeneratedFile(
        "initd",
        0o755,
        "write the OpenRC init script",
        "etc/init.d/{name}",
        ("services", "commands"),
        config=("run.commands", "service-files"),
        identity=("name",),
    ),
    GeneratedFile(
        "run",
        0o755,
        "write the s6 run script that starts the service chosen by SERVICE_MODE",
        "var/lib/{name}/service/run",
        ("services",),
        config=("run.services",),
        identity=("name",),
    ),
    GeneratedFile(
        "finish",
        0o755,
        "write the s6 finish script",
        "var/lib/{name}/service/finish",
        ("services",),
    ),
    GeneratedFile(
        "log",
        0o755,
        "write the s6 log script",
        "var/lib/{name}/service/log/run",
        ("services",),
        identity=("name",),
    ),
    GeneratedFile(
        "environment",
        0o755,
        "write the environment loader",
        "var/lib/{name}/bin/environment",
        ("services", "commands"),
    ),
    GeneratedFile(
        "env-exec",
        0o755,
        "write env-exec",
        "var/lib/{name}/bin/env-exec",
        ("services", "commands"),
        identity=("name",),
    ),
    GeneratedFile(
        "profile",
        0o644,
        "write the profile.d script",
        "etc/profile.d/{name}.sh",
        ("services", "commands"),
        identity=("name",),
    ),
    GeneratedFile(
        "pre-install",
        0o755,
        "write the pre-install script (user and group, then the pre-install hook)",
        config=("hook.pre-install",),
        identity=("name",),
    ),
)
# The generated files that run a default-type app, in the order of the
# APKBUILD's `source=` list; each is `<name>.<kind>` beside the APKBUILD. An
# app with services gets them all; one with commands only gets the init
# script (its commands) and what the commands run through; one that runs
# nothing gets none of them.
SERVICE_FILES: tuple[str, ...] = tuple(f.kind for f in GENERATED_FILES if "services" in f.runs)
COMMAND_FILES: tuple[str, ...] = tuple(f.kind for f in GENERATED_FILES if "commands" in f.runs)
# (kind, where it is installed, mode) of each file a default-type app's package installs.
INSTALLED_FILES: tuple[tuple[str, str, int], ...] = tuple(
    (f.kind, f.installed, f.mode) for f in GENERATED_FILES if f.installed is not None
)


def template_digest(name: str) -> str:
    """The sha256 of a template's source, for build keys."""
    return hashlib.sha256((TEMPLATES / name).read_bytes()).hexdigest()
