"""The generated files, declared once: template, mode and where the package installs each.

Imports no Jinja2, so the step graph can key a step on a template's text
without loading the renderer. The renderer (render.py: one render_<kind>
each), the Python package() (staging.py) and the APKBUILD's package() all
read this table; a generated file is its template, its render function, its
render stage in pipelines/default.yml, and one line here.
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
    # Where a default-type app's package installs it (`{name}` the package
    # name); None: not installed (abuild reads it).
    installed: str | None = None
    # A file that runs the app: "services" when an app with services gets it,
    # "commands" when an app with commands only does.
    runs: tuple[str, ...] = ()

    @property
    def template(self) -> str:
        return self.kind


GENERATED_FILES: tuple[GeneratedFile, ...] = (
    GeneratedFile("APKBUILD", 0o644),
    GeneratedFile("initd", 0o755, "etc/init.d/{name}", ("services", "commands")),
    GeneratedFile("run", 0o755, "var/lib/{name}/service/run", ("services",)),
    GeneratedFile("finish", 0o755, "var/lib/{name}/service/finish", ("services",)),
    GeneratedFile("log", 0o755, "var/lib/{name}/service/log/run", ("services",)),
    GeneratedFile("environment", 0o755, "var/lib/{name}/bin/environment", ("services", "commands")),
    GeneratedFile("env-exec", 0o755, "var/lib/{name}/bin/env-exec", ("services", "commands")),
    GeneratedFile("profile", 0o644, "etc/profile.d/{name}.sh", ("services", "commands")),
    GeneratedFile("pre-install", 0o755),
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
