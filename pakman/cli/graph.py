"""`pakman graph`: export the step graph (json, dot, mermaid, makefile, ninja, svg)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pakman.cli import EXIT_OK
from pakman.cli.options import path_arguments, project_argv, project_from_args, project_options

FORMATS = ("json", "dot", "mermaid", "makefile", "ninja", "svg")


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    graph = commands.add_parser(
        name,
        help=summary,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Print the graph of steps a build would run: each step with its key, what it
reads, the files it reads and what it produces (docs/graph.md describes the
formats).

  json      every step: id, stage, app, arch, key, reads, files, outputs, after
  dot       Graphviz (`dot -Tsvg`); svg draws it with Graphviz's `dot`
  mermaid   a Mermaid flowchart
  makefile  a GNU Makefile whose targets are the steps' manifests
  ninja     a build.ninja, the same graph for ninja

The makefile and ninja formats really build: `make -j2` or `ninja` builds the
signed repository, rerunning a step when a file it reads (instellar.yml, the
app's source files, the signing key) or a step before it changed. Each step
runs `CMD run-step OPTIONS -- STEP PATH...`, where CMD is --command and
OPTIONS and PATH are the build options, identity options and paths given to
`pakman graph` (each quoted once for the shell, `$` doubled for make and
ninja), so run-step compiles the same graph. Paths in the file are relative
to the current folder, the workspace: write the file there and run make or
ninja there (or with -C). run-step also reads the environment
(GITHUB_REPOSITORY, GITHUB_RUN_NUMBER, SOURCE_DATE_EPOCH, PAKMAN_MIRROR,
ABUILD_PRIVATE_KEY): keep it as at export, or pin values with options. Export
again after adding or removing an app's files or changing its hooks,
architectures or type; a step whose upstream steps ran with other inputs
stops with an error instead of mixing the two.""",
    )
    path_arguments(graph)
    graph.add_argument(
        "--format", choices=FORMATS, default="json", help="what to print (default json)"
    )
    graph.add_argument(
        "--affected",
        action="append",
        metavar="FILE|APP",
        help="print instead the ids of the steps that would run if FILE or APP changed",
    )
    graph.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write to FILE (only when its content changes) instead of standard output",
    )
    graph.add_argument(
        "--command",
        default="pakman",
        metavar="CMD",
        help="how the makefile and ninja formats call pakman, split like a shell line "
        "(default: pakman; e.g. 'python3 -m pakman')",
    )
    project_options(graph)
    graph.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman graph`; return its exit code."""
    import shlex

    from pakman.export import formats as export

    command = tuple(shlex.split(args.command))
    if not command:
        from pakman.errors import ConfigError

        raise ConfigError("--command is empty: give the command that runs pakman, e.g. pakman")
    if args.format in ("makefile", "ninja"):
        from pakman.workspace.layout import find_workspace

        workspace = find_workspace()
        if workspace != Path.cwd():
            from pakman.errors import ConfigError

            # The file's paths are the workspace's; run-step's options and PATHs are this folder's.
            raise ConfigError(
                f"the workspace is {workspace}: export a {args.format} file there "
                f"(cd {os.path.relpath(workspace)}), so that its paths and run-step's agree"
            )
    project = project_from_args(args)
    if args.affected:
        print("".join(f"{s.id}\n" for s in export.affected(project, args.affected)), end="")
        return EXIT_OK
    run_step = export.RunStep(command, tuple(project_argv(args)), tuple(args.paths))
    fmt = args.format
    if fmt == "json":
        text = export.to_json(project)
    elif fmt == "mermaid":
        text = export.to_mermaid(project.graph)
    elif fmt == "makefile":
        text = export.to_makefile(project, run_step)
    elif fmt == "ninja":
        text = export.to_ninja(project, run_step)
    else:
        text = export.to_dot(project.graph)
    data = text.encode()
    if fmt == "svg":
        data = export.render_svg(text)
    if args.output:
        from pakman.fileio import write_if_changed

        # Unchanged content keeps the file's time, so make does not rerun every step.
        write_if_changed(args.output, data)
    else:
        sys.stdout.buffer.write(data)
    return EXIT_OK
