"""The step graph, exported: JSON, Graphviz dot, Mermaid, a Makefile, build.ninja.

The Makefile and build.ninja really build. Each step is a target: the
manifest it leaves under `.pakman/steps/` when it succeeds. Its
prerequisites are the files it reads directly (`step_files`: the app's
instellar.yml, the source files for the build step, the signing key for the
steps that sign) and the manifests of the steps it depends on. Its recipe
is `pakman run-step OPTIONS -- STEP PATH...`, with the options and paths
`pakman graph` was given (a `RunStep`), so that each step runs in the same
graph, with the same keys, as the exported one. Paths are relative to the
workspace (the folder `pakman graph` ran in): make and ninja run there.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pakman import __version__
from pakman.compile.graph import Step, StepGraph
from pakman.errors import ConfigError, PakmanError
from pakman.project import Project

JSON_FORMAT = 1  # the version of the JSON layout; raised when a field changes or goes


@dataclass(frozen=True)
class RunStep:
    """How an exported Makefile or build.ninja calls `pakman run-step`."""

    command: tuple[str, ...] = ("pakman",)  # pakman itself, e.g. ("python3", "-m", "pakman")
    options: tuple[str, ...] = ()  # the graph's options, as `--name=value` or `--flag`
    paths: tuple[str, ...] = (".",)  # where the apps are, relative to the workspace

    def shell_words(self, words: Sequence[str]) -> str:
        """Words quoted once for /bin/sh (neither make nor ninja quote for the shell)."""
        for word in words:
            if "\n" in word or "\r" in word:
                raise ConfigError(
                    f"{word!r}: an exported Makefile or build.ninja cannot pass an argument "
                    "with a line break"
                )
        return " ".join(shlex.quote(w) for w in words)


def step_files(project: Project, step: Step) -> list[str]:
    """Files a step reads directly, as seen from the workspace: config, sources, signing key."""
    layout = project.layout
    files: list[str] = []
    if step.app is not None and ("config" in step.reads or "identity" in step.reads):
        files.append(layout.relative(step.app.config.file))
    if step.source is not None:
        files.extend(
            layout.relative(step.source.root / f.path) for f in step.source.files if f.kind != "d"
        )
    if "key" in step.reads and project.settings.key_file:
        # Only a key given with --key: the workspace's own key under .pakman/keys/
        # never changes, and is made again (under another name) after a clean.
        files.append(layout.relative(Path(project.settings.key_file).absolute()))
    return files


def affected(project: Project, targets: Sequence[str]) -> list[Step]:
    """The steps that would run if these apps or files changed: those that read them, and downstream.

    A target is an app's name or a file (as given, relative to the current
    folder): its instellar.yml, one of its source files, the --key file.
    """
    layout = project.layout
    steps = project.graph.order()
    apps = {s.app.name for s in steps if s.app is not None}
    seeds: list[str] = []
    for target in targets:
        if target in apps:
            found = [s.id for s in steps if s.app is not None and s.app.name == target]
        else:
            given = Path(os.path.abspath(target))
            path = layout.relative(given.parent.resolve() / given.name)
            found = [s.id for s in steps if path in step_files(project, s)]
        if not found:
            raise ConfigError(f"{target}: no app of that name, and no step reads it")
        seeds.extend(found)
    return project.graph.affected(seeds)


def to_data(project: Project) -> dict[str, Any]:
    """The graph as JSON-ready data (its layout is documented in docs/graph.md)."""
    layout = project.layout
    return {
        "format": JSON_FORMAT,
        "pakman": __version__,
        "workspace": str(layout.root),
        "repository": layout.relative(layout.repo),
        # --shard I/N: the steps are the shard's apps' only (no repository step)
        **({"shard": str(project.shard)} if project.shard else {}),
        "steps": [
            {
                "id": step.id,
                "stage": step.stage,
                "app": step.app.name if step.app else None,
                "arch": step.arch,
                "item": step.item,
                "description": step.description,
                "action": step.action,
                "key": step.key,
                "reads": step.reads,
                "files": step_files(project, step),
                "after": list(project.graph.dag.predecessors(step.id)),
                "outputs": [layout.relative_str(o) for o in step.outputs],
                "manifest": layout.relative(layout.manifest(step.id)),
            }
            for step in project.graph.order()
        ],
    }


def to_json(project: Project) -> str:
    return json.dumps(to_data(project), indent=2, ensure_ascii=False) + "\n"


def _by_namespace(graph: StepGraph) -> list[tuple[str, list[Step]]]:
    groups: dict[str, list[Step]] = {}
    for step in graph.order():
        groups.setdefault(step.namespace, []).append(step)
    return sorted(groups.items())


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: StepGraph) -> str:
    """Graphviz: one cluster per app (and one for the repository), an edge per dependency."""
    lines = [
        "digraph pakman {",
        "  rankdir=LR;",
        '  node [shape=box, fontname="monospace"];',
    ]
    for i, (namespace, steps) in enumerate(_by_namespace(graph)):
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f"    label={_dot_string(namespace)};")
        for step in steps:
            attributes = (
                f"label={_dot_string(step.local_name)}, tooltip={_dot_string(step.description)}"
            )
            lines.append(f"    {_dot_string(step.id)} [{attributes}];")
        lines.append("  }")
    for step in graph.order():
        for upstream in graph.dag.predecessors(step.id):
            lines.append(f"  {_dot_string(upstream)} -> {_dot_string(step.id)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def mermaid_id(name: str) -> str:
    """A Mermaid node id for a step id: letters and digits kept, anything else `_` + hex.

    One-to-one (so two steps never share a node), and the `s_` prefix keeps
    ids clear of Mermaid's keywords (`end`, `graph`, ...).
    """
    out = ["s_"]
    for char in name:
        if char.isascii() and char.isalnum():
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"_{ord(char):02x}")
        else:
            out.append(f"_u{ord(char):06x}")
    return "".join(out)


_MERMAID_ENTITIES = {'"': "#quot;", "#": "#35;", "<": "#lt;", ">": "#gt;", "&": "#amp;"}


def mermaid_text(text: str) -> str:
    """A Mermaid label in double quotes: quotes, `#`, `<`, `>` and `&` as entity codes."""
    escaped = "".join(_MERMAID_ENTITIES.get(c, c) for c in text.replace("\n", " "))
    return f'"{escaped}"'


def to_mermaid(graph: StepGraph) -> str:
    """A Mermaid flowchart: one subgraph per app (and one for the repository)."""
    lines = ["flowchart LR"]
    for namespace, steps in _by_namespace(graph):
        lines.append(f"  subgraph {mermaid_id(namespace)}[{mermaid_text(namespace)}]")
        for step in steps:
            lines.append(f"    {mermaid_id(step.id)}[{mermaid_text(step.local_name)}]")
        lines.append("  end")
    for step in graph.order():
        for upstream in graph.dag.predecessors(step.id):
            lines.append(f"  {mermaid_id(upstream)} --> {mermaid_id(step.id)}")
    return "\n".join(lines) + "\n"


# --- Makefile ----------------------------------------------------------------

_MAKE_SPECIAL = re.compile(r"([ \t:#*?\[\]|])")


def make_path(path: str) -> str:
    """A file name in a rule line of GNU make; names make cannot spell are refused."""
    for bad, what in (("\n", "a line break"), ("\r", "a carriage return"), (";", "`;`")):
        if bad in path:
            raise _unnameable(path, "a Makefile", what)
    if "\\" in path:
        raise _unnameable(path, "a Makefile", "a backslash")
    return _MAKE_SPECIAL.sub(r"\\\1", path).replace("$", "$$").replace("=", "$(EQUALS)")


def _unnameable(path: str, where: str, what: str) -> ConfigError:
    return ConfigError(
        f"{path}: {where} cannot name a file with {what} in its name; rename it, use "
        "another format, or build with `pakman build`"
    )


def _define(name: str, value: str) -> list[str]:
    # `define` keeps the value as written (no comments, no stripping); only `$` is special.
    return [f"define {name}", value.replace("$", "$$"), "endef"]


def _app_targets(project: Project) -> dict[str, list[str]]:
    """Per app, the manifests of its packages: `make pyweb` builds just those.

    An app whose name is also a file the steps read (an app in the workspace
    root with a file named after it) gets no such target: it would hide the file.
    """
    named = {"all"} | {f for step in project.graph.order() for f in step_files(project, step)}
    targets: dict[str, list[str]] = {}
    for step in project.graph.order():
        if step.app is not None and step.stage == "package" and step.app.name not in named:
            manifest = project.layout.relative(project.layout.manifest(step.id))
            targets.setdefault(step.app.name, []).append(manifest)
    return targets


def _final_targets(project: Project) -> list[str]:
    graph = project.graph
    return [
        project.layout.relative(project.layout.manifest(s.id))
        for s in graph.order()
        if graph.dag.out_degree(s.id) == 0
    ]


_HEADER = """\
# Generated by `pakman graph --format {fmt}`; export again rather than edit.
#
# Run `{run}` in the workspace: the folder `pakman graph` ran in, where
# this file belongs (from elsewhere: `{run_elsewhere}`). Every path here
# is relative to it.
#
# Each target is a step's manifest under .pakman/steps/. A step runs again
# when a file it reads (its app's instellar.yml, the app's source files, a
# --key file) or the manifest of a step before it is newer. `all` (the
# default) builds the signed repository; a target per app builds only that
# app's packages.
#
# Each step runs `pakman run-step OPTIONS -- STEP PATH...` with the options
# and paths `pakman graph` was given, so that it compiles the same graph.
# run-step also reads the environment: keep GITHUB_REPOSITORY,
# GITHUB_RUN_NUMBER, SOURCE_DATE_EPOCH, PAKMAN_MIRROR and ABUILD_PRIVATE_KEY
# as they were at export, or pin them with options. Export again after
# adding or removing an app's files or changing its hooks, architectures or
# type. A step whose upstream steps ran with other inputs stops with an
# error rather than mix old outputs with new.
"""


def to_makefile(project: Project, run: RunStep) -> str:
    """A GNU Makefile whose targets are the steps' manifests."""
    layout = project.layout
    apps = _app_targets(project)
    lines = _HEADER.format(
        fmt="makefile", run="make -j2", run_elsewhere="make -C WORKSPACE -f FILE -j2"
    ).splitlines()
    lines += [
        "",
        "MAKEFLAGS += --no-builtin-rules",
        ".SUFFIXES:",
        ".DELETE_ON_ERROR:",
        "EQUALS := =",
        # This file is a prerequisite of every step: exported again with other
        # options it changes, and every step runs again (as ninja reruns a
        # build line whose command changed).
        "EXPORTED := $(lastword $(MAKEFILE_LIST))",
        "",
        *_define("PAKMAN", run.shell_words(run.command)),
        *_define("PAKMAN_OPTIONS", run.shell_words(run.options)),
        *_define("PAKMAN_PATHS", run.shell_words(run.paths)),
        "",
        ".PHONY: all " + " ".join(apps),
        "all: " + " ".join(make_path(t) for t in _final_targets(project)),
    ]
    for name, targets in apps.items():
        lines.append(f"{name}: " + " ".join(make_path(t) for t in targets))
    lines.append("")
    for step in project.graph.order():
        target = make_path(layout.relative(layout.manifest(step.id)))
        prerequisites = [make_path(f) for f in step_files(project, step)]
        prerequisites += [
            make_path(layout.relative(layout.manifest(u)))
            for u in project.graph.dag.predecessors(step.id)
        ]
        prerequisites.append("$(EXPORTED)")
        lines.append(f"{target}: {' '.join(prerequisites)}")
        lines.append(
            f"\t$(PAKMAN) run-step $(PAKMAN_OPTIONS) -- {shlex.quote(step.id)} $(PAKMAN_PATHS)"
        )
        lines.append("")
    return "\n".join(lines)


# --- build.ninja -------------------------------------------------------------


def ninja_path(path: str) -> str:
    """A file name in a ninja build line; a line break cannot be spelled."""
    if "\n" in path or "\r" in path:
        raise _unnameable(path, "build.ninja", "a line break")
    return path.replace("$", "$$").replace(" ", "$ ").replace(":", "$:").replace("|", "${pipe}")


def to_ninja(project: Project, run: RunStep) -> str:
    """A build.ninja whose outputs are the steps' manifests."""
    layout = project.layout
    apps = _app_targets(project)
    lines = _HEADER.format(
        fmt="ninja", run="ninja -j2", run_elsewhere="ninja -C WORKSPACE -f FILE -j2"
    ).splitlines()
    lines += [
        "",
        "ninja_required_version = 1.7",
        "builddir = .pakman/ninja",
        "pipe = |",
        f"pakman = {run.shell_words(run.command).replace('$', '$$')}",
        f"options = {run.shell_words(run.options).replace('$', '$$')}",
        f"paths = {run.shell_words(run.paths).replace('$', '$$')}",
        "",
        "rule step",
        "  command = $pakman run-step $options -- $step $paths",
        "  description = $step",
        "",
    ]
    for step in project.graph.order():
        target = ninja_path(layout.relative(layout.manifest(step.id)))
        inputs = [ninja_path(f) for f in step_files(project, step)]
        inputs += [
            ninja_path(layout.relative(layout.manifest(u)))
            for u in project.graph.dag.predecessors(step.id)
        ]
        lines.append(f"build {target}: step {' '.join(inputs)}".rstrip())
        lines.append(f"  step = {shlex.quote(step.id)}")
    lines.append("")
    for name, targets in apps.items():
        lines.append(f"build {name}: phony {' '.join(ninja_path(t) for t in targets)}")
    lines.append(f"build all: phony {' '.join(ninja_path(t) for t in _final_targets(project))}")
    lines += ["default all", ""]
    return "\n".join(lines)


def render_svg(dot_text: str) -> bytes:
    """The graph as SVG, drawn by Graphviz's `dot`."""
    dot = shutil.which("dot")
    if dot is None:
        raise PakmanError(
            "--format svg needs Graphviz's `dot`, which is not on PATH "
            "(Debian: apt-get install graphviz); --format dot prints its input"
        )
    result = subprocess.run(
        [dot, "-Tsvg"], input=dot_text.encode(), capture_output=True, check=False
    )
    if result.returncode != 0:
        raise PakmanError(f"dot failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout
