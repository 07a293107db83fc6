"""The `pakman` command: argument parsing, printing and exit codes.

Exit codes: 0 success, 1 a step failed, 2 bad usage, 3 invalid input.
The CLI prints results and diagnostics and chooses the exit code; library
code raises. What a build says while it runs is printed by the doit adapter
(pakman.doit: the reporter, a damaged database's warning), the build lock's
wait (workspace.lock), the watcher (fastpath.watcher, fastpath.protocol) and
the commands steps run (steps.shell, their output passed through).
Subcommand modules are imported when used, so `pakman --help` and no-op runs
start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from pakman import __version__
from pakman.fastpath import gcpause

if TYPE_CHECKING:
    from pakman.errors import Diagnostic
    from pakman.workspace.layout import Layout

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INVALID = 3
FORMATS = ("json", "dot", "mermaid", "makefile", "ninja", "svg")


def _identity_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    from pakman.compile.options import IDENTITY_OPTIONS

    group = parser.add_argument_group(
        "package identity",
        "By default the name comes from GITHUB_REPOSITORY, else run.name, else the app's "
        "folder; the version from `git describe --tags`; the release from GITHUB_RUN_NUMBER.",
    )
    return [_add_option(group, option) for option in IDENTITY_OPTIONS]


def _add_option(group: Any, option: Any) -> argparse.Action:
    """One option of pakman.compile.options.OPTIONS as an argparse argument."""
    if option.kind == "flag":
        action: argparse.Action = group.add_argument(
            option.flag, action="store_true", help=option.help
        )
    elif option.kind == "list":
        action = group.add_argument(
            option.flag, action="append", default=[], metavar=option.metavar, help=option.help
        )
    elif option.kind == "choice":
        action = group.add_argument(option.flag, choices=option.choices, help=option.help)
    else:
        action = group.add_argument(option.flag, metavar=option.metavar, help=option.help)
    return action


class _Parser(argparse.ArgumentParser):
    """argparse, plus one rule for where the apps are (see `_settle_paths`)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        found, rest = super().parse_known_args(args, namespace)
        if not _settle_paths(found):
            self.error("render takes one app: give one PATH")
        return found, rest


def _path_arguments(parser: argparse.ArgumentParser) -> None:
    """PATH arguments and -p/--path PATH: where the apps are, the same for every command."""
    parser.add_argument(
        "paths",
        nargs="*",
        default=[],
        metavar="PATH",
        help="an instellar.yml, an app folder or a folder searched for apps "
        "(default: the current folder)",
    )
    parser.add_argument(
        "-p",
        "--path",
        dest="path_options",
        action="append",
        default=[],
        metavar="PATH",
        help="the same as a PATH argument (repeatable)",
    )


def _settle_paths(args: argparse.Namespace) -> bool:
    """Merge -p/--path into `args.paths` (default: the current folder); False if unusable.

    explain's words name targets and paths alike: without -p, a word that
    names an existing file or folder is a PATH, any other a TARGET.
    """
    given = getattr(args, "path_options", None)
    if given is None:
        return True
    args.path_options = None
    if hasattr(args, "targets"):
        if given:
            args.paths = list(given)
        else:
            args.paths = [t for t in args.targets if os.path.exists(t)]
            args.targets = [t for t in args.targets if not os.path.exists(t)]
    elif hasattr(args, "path"):  # render: one app
        words = ([args.path] if args.path else []) + list(given)
        args.path = words[0] if words else "."
        return len(words) <= 1
    else:
        args.paths = [*args.paths, *given]
    args.paths = args.paths or ["."]
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pakman",
        description="Turn an app's instellar.yml into signed Alpine Linux packages.",
        epilog="Run `pakman COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"pakman {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = commands.add_parser(
        "check",
        help="validate instellar.yml files",
        description="Validate instellar.yml files and print every warning and error with "
        "file:line:column and key path. Exit 0 when all are valid, 3 when any is invalid.",
        epilog="PATH is an instellar.yml, an app folder, or a folder searched for apps "
        "(default: the current folder).",
    )
    _path_arguments(check)
    check.add_argument("--strict", action="store_true", help="treat unknown keys as errors")
    check.add_argument("--json", action="store_true", help="print one JSON report instead of text")
    check.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    check.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print each app's package name, version and architectures",
    )
    _identity_options(check)
    check.set_defaults(handler=_check)

    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of instellar.yml",
        description="Print a JSON Schema (draft-07) of instellar.yml, for editors and YAML "
        "language servers (e.g. `# yaml-language-server: $schema=instellar.schema.json`).",
    )
    schema.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE instead of standard output"
    )
    schema.set_defaults(handler=_schema)

    render = commands.add_parser(
        "render",
        help="write the APKBUILD, service files and install scripts",
        description="Generate the files the original PAKman generates: the APKBUILD that "
        "Alpine's abuild builds, the OpenRC init script, the s6 run/finish/log scripts, the "
        "environment loader, env-exec, the profile script, pre-install and one script per "
        "hook. They go into <app>/.apk/<org>/<name>/, where `abuild snapshot && abuild -r` "
        "builds them on Alpine. Files whose content is unchanged are not rewritten; files "
        "it rendered there before and no longer generates are removed (it keeps their list "
        "in .pakman-rendered, and touches nothing else).",
        epilog="PATH is an app folder or its instellar.yml (default: the current folder).",
    )
    render.add_argument(
        "path", nargs="?", metavar="PATH", help="the app: its folder or its instellar.yml"
    )
    render.add_argument(
        "-p", "--path", dest="path_options", action="append", default=[], help=argparse.SUPPRESS
    )
    render.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="write the files into DIR instead of <app>/.apk/<org>/<name>/",
    )
    _identity_options(render)
    render.set_defaults(handler=_render)

    bootstrap = commands.add_parser(
        "bootstrap",
        help="`render` as the original's GitHub Action step runs it",
        description="Compatible with the original `pakman bootstrap`: renders the app in "
        "GITHUB_WORKSPACE (default: the current folder) into "
        "$GITHUB_WORKSPACE/.apk/<org>/<name>/, naming the package after GITHUB_REPOSITORY "
        "and numbering the release with GITHUB_RUN_NUMBER. It does not set up signing keys.",
    )
    bootstrap.add_argument(
        "--config",
        metavar="FILE",
        help="the instellar.yml to read (default: $GITHUB_WORKSPACE/instellar.yml)",
    )
    _identity_options(bootstrap)
    bootstrap.set_defaults(handler=_bootstrap)

    build = commands.add_parser(
        "build",
        help="build apps into a signed local repository",
        description="Build every app under PATH (default: the current folder) into a signed "
        "Alpine repository, REPO/<arch>/ with the .apk files and a signed APKINDEX.tar.gz "
        "(default REPO: .pakman/repo). Steps run through doit on .pakman/doit.sqlite3: a "
        "step runs again only when something it reads changed, so a second build with "
        "nothing changed runs nothing. Exit 0 when built, 1 when a step failed (its log "
        "tail is shown), 3 when the input is invalid.",
        epilog="Keys: --key FILE, else ABUILD_PRIVATE_KEY (PEM text), else a project key made "
        "once under .pakman/keys/. Dependencies are checked against the stack's index on "
        "the Alpine mirror (--mirror or PAKMAN_MIRROR); --offline skips that. Builds run in "
        "the stack's Alpine by default (--build-on alpine), which needs the mirror or, with "
        "--offline, the indexes and packages an earlier build cached in .pakman/cache/.",
    )
    _path_arguments(build)
    _project_options(build)
    build.add_argument(
        "-j", "--jobs", type=_at_least(1), default=1, metavar="N", help="run N steps at once"
    )
    build.add_argument("-v", "--verbose", action="store_true", help="show build output live")
    build.add_argument("--json", action="store_true", help="print one JSON event per step")
    build.add_argument(
        "--no-wait",
        action="store_true",
        help="fail instead of waiting when another build holds the workspace",
    )
    build.add_argument(
        "--always",
        action="store_true",
        help="run every step, up to date or not (none is restored from the store)",
    )
    build.add_argument(
        "--explain", action="store_true", help="first say why each step that will run runs"
    )
    build.set_defaults(handler=_build)

    graph = commands.add_parser(
        "graph",
        help="export the step graph (json, dot, mermaid, makefile, ninja, svg)",
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
    _path_arguments(graph)
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
    _project_options(graph)
    graph.set_defaults(handler=_graph)

    explain = commands.add_parser(
        "explain",
        help="say why steps will run",
        description="For each step that a build would run, say which input changed since it "
        "last ran: a source file, a config key, a template, an upstream step, the release, "
        "the key. TARGET is an app (pyweb), an app's stage (pyweb:build) or a step "
        "(pyweb:build:x86_64); without one, every step that will run.",
    )
    explain.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET|PATH",
        help="a word naming an existing file or folder is a PATH (where the apps are), "
        "any other a TARGET",
    )
    explain.add_argument(
        "-p",
        "--path",
        dest="path_options",
        action="append",
        default=[],
        metavar="PATH",
        help="where the apps are (repeatable; default: the current folder); with -p, "
        "every word is a TARGET",
    )
    explain.add_argument("--all", action="store_true", help="list up-to-date steps too")
    explain.add_argument("--json", action="store_true", help="print JSON instead of text")
    _project_options(explain)
    explain.set_defaults(handler=_explain)

    gc = commands.add_parser(
        "gc",
        help="prune the store of step outputs, unused build roots and cached packages",
        description="Remove entries of the step store (.pakman/store/) unused for longer than "
        "--max-age, then the least recently used ones until the rest fit in --max-size, and "
        "leftovers of interrupted builds (in the store and in .pakman/trash/); then the build "
        "roots (.pakman/roots/) and cached .apk files (.pakman/cache/apk/) that no current "
        "build lock references, unless a build is running.",
    )
    gc.add_argument(
        "--max-age", type=_days, default=30.0, metavar="DAYS", help="default 30 (0: any age)"
    )
    gc.add_argument("--max-size", default="5G", metavar="SIZE", help="e.g. 500M, 5G (default 5G)")
    gc.add_argument("-n", "--dry-run", action="store_true", help="only say what would be removed")
    gc.set_defaults(handler=_gc)

    watch = commands.add_parser(
        "watch",
        help="tell builds which apps changed (inotify), so they check only those",
        description="Run in the foreground, watching (with inotify) every folder the apps of "
        "this workspace were last prepared from. Builds in the workspace ask it, through "
        ".pakman/watch.sock, which apps had any change since the build before, and look at "
        "only those files instead of every file of every app; whenever it cannot be sure "
        "(just started, events lost, a folder it cannot watch) they look at everything, as "
        "without it. It follows the folders of each new build. Ctrl-C or SIGTERM stops it.",
    )
    watch.add_argument("-v", "--verbose", action="store_true", help="say what each build was told")
    watch.set_defaults(handler=_watch)

    run_step = commands.add_parser(
        "run-step",
        help="run one step of the graph, up to date or not (what exported Makefiles call)",
        description="Run one step, named as in `pakman graph` (e.g. pyweb:build:x86_64), "
        "whatever its state, up to date or not: it runs the step's action, unless the store "
        "(.pakman/store/) holds outputs made with the step's key, which it then restores "
        "instead (and says `restored`); then it records the step's manifest, so a build "
        "after it finds the step up to date. The steps before it must "
        "have run with the keys this graph gives them (else exit 1, naming them). Give the "
        "same paths and options as to `pakman graph` so both see the same graph; exported "
        "files call `pakman run-step OPTIONS -- STEP PATH...`. Steps share the workspace lock "
        "(any number run at once, as make -j or ninja run them); a build waits for them, "
        "and they for it.",
    )
    run_step.add_argument(
        "step", metavar="STEP", help="the step's id, as `pakman graph` lists it (app:stage:arch)"
    )
    _path_arguments(run_step)
    _project_options(run_step)
    run_step.add_argument("-v", "--verbose", action="store_true", help="show build output live")
    run_step.set_defaults(handler=_run_step)
    _apk_commands(commands)
    return parser


def _project_options(parser: argparse.ArgumentParser) -> None:
    from pakman.compile.options import OPTIONS

    group = parser.add_argument_group("build options")
    actions = [_add_option(group, o) for o in OPTIONS if o.group == "build"]
    actions += _identity_options(parser)
    # Remembered so that `pakman graph` can hand exactly these on to `run-step`.
    parser.set_defaults(project_actions=tuple(actions))


def project_argv(args: argparse.Namespace) -> list[str]:
    """The build and identity options in `args`, as arguments again (`--name=value`, `--flag`).

    `pakman graph` writes them into the run-step commands of an exported
    Makefile or build.ninja, so each step compiles the graph that was exported.
    """
    argv: list[str] = []
    for action in args.project_actions:
        option = next(o for o in action.option_strings if o.startswith("--"))
        value = getattr(args, action.dest)
        if action.nargs == 0:  # a flag (store_true)
            argv += [option] if value else []
        elif isinstance(value, list):
            argv += [f"{option}={v}" for v in value]
        elif value is not None:
            argv.append(f"{option}={value}")
    return argv


# --- Alpine packages: keygen, index, verify ---------------------------------


def _signing_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "signing key",
        "The private key comes from --private-key, else from the PEM text in "
        "ABUILD_PRIVATE_KEY (then --key-name is needed). The public key is derived "
        "from it unless given (--public-key or ABUILD_PUBLIC_KEY), and then must match. "
        "An encrypted key's passphrase is read from PAKMAN_KEY_PASSPHRASE.",
    )
    group.add_argument(
        "--private-key", metavar="FILE", help="the private key (PEM), e.g. myorg-myapp.rsa"
    )
    group.add_argument(
        "--public-key", metavar="FILE", help="the public key (PEM); its file name is the key name"
    )
    group.add_argument(
        "--key-name",
        metavar="NAME",
        help="the public key's file name in /etc/apk/keys, e.g. myorg-myapp.rsa.pub "
        "(default: the public key's file name, or the private key's plus .pub)",
    )
    group.add_argument(
        "--rsa256", action="store_true", help="sign with SHA-256 (.SIGN.RSA256.) instead of SHA-1"
    )


def _apk_commands(commands: Any) -> None:
    keygen = commands.add_parser(
        "keygen",
        help="create an RSA key pair for signing packages",
        description="Write a new key pair as abuild-keygen does: NAME-XXXXXXXX.rsa (private, "
        "mode 0600) and NAME-XXXXXXXX.rsa.pub, where XXXXXXXX is the time in hex. Existing "
        "files are never overwritten. Install the .pub file into /etc/apk/keys/ on the "
        "machines that install the packages.",
    )
    keygen.add_argument(
        "-n",
        "--name",
        metavar="NAME",
        help="the start of the file names (default: the e-mail address in PACKAGER, else $USER)",
    )
    keygen.add_argument(
        "-d",
        "--dir",
        metavar="DIR",
        default=None,
        help="where to write the keys (default ~/.abuild)",
    )
    keygen.add_argument(
        "-b",
        "--bits",
        type=_at_least(1024),
        default=4096,
        metavar="BITS",
        help="key size, at least 1024 (default 4096)",
    )
    keygen.set_defaults(handler=_keygen)

    index = commands.add_parser(
        "index",
        help="write the signed APKINDEX.tar.gz of a repository folder",
        description="Write REPO/ARCH/APKINDEX.tar.gz for the .apk files in that folder, signed, "
        "as abuild does. noarch packages are listed with the folder's architecture. Entries of "
        "packages that did not change since the last run are reused from a cache kept outside "
        "the folder, in $XDG_CACHE_HOME/pakman/index/ (default ~/.cache): nothing but "
        "APKINDEX.tar.gz is written into the folder. Time stamps come from SOURCE_DATE_EPOCH. Exit 0 "
        "when written, 3 when a package is misnamed, in the wrong folder, truncated or corrupted "
        "(its data does not match its datahash), or the key is bad.",
    )
    index.add_argument(
        "folder", metavar="REPO/ARCH", help="a repository's architecture folder, e.g. repo/x86_64"
    )
    index.add_argument(
        "--description",
        metavar="TEXT",
        help="the index's DESCRIPTION (e.g. the repository and a version)",
    )
    _signing_options(index)
    index.set_defaults(handler=_index)

    verify = commands.add_parser(
        "verify",
        help="check packages and indexes",
        description="Check .apk packages and APKINDEX.tar.gz files: signatures against the "
        "trusted keys, datahash, every file's checksum, folder entries, unsafe names, file "
        "names against .PKGINFO, and each index entry against its package file. Prints one "
        "verdict per file: ok, UNTRUSTED (sound, but no trusted key signed it) or BAD. "
        "The trusted keys are those given (--key, --keys-dir) and the workspace's own "
        "(.pakman/keys/, what `pakman build` signs with when no key is given); it says "
        "which on standard error. Exit 0 when all are ok, 1 when any is not.",
    )
    verify.add_argument(
        "files", nargs="+", metavar="FILE", help="an .apk package or an APKINDEX.tar.gz"
    )
    verify.add_argument(
        "-k",
        "--key",
        action="append",
        default=[],
        metavar="FILE",
        help="a trusted public key file, named as in /etc/apk/keys (repeatable)",
    )
    verify.add_argument(
        "--keys-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of trusted public keys, like /etc/apk/keys (repeatable)",
    )
    verify.add_argument(
        "--no-workspace-key",
        dest="workspace_key",
        action="store_false",
        help="do not trust the workspace's own keys (.pakman/keys/*.pub of the workspace, "
        "found as build finds it), which are trusted by default",
    )
    verify.add_argument(
        "--allow-untrusted",
        action="store_true",
        help="accept files whose signing key is not trusted (like apk's option)",
    )
    verify.add_argument("--json", action="store_true", help="print one JSON report instead of text")
    verify.set_defaults(handler=_verify)


def _load_key_from_args(args: argparse.Namespace) -> Any:
    import os

    from pakman.apk import load_signing_key

    return load_signing_key(
        private_key=args.private_key,
        public_key=args.public_key,
        keyname=args.key_name,
        passphrase=os.environ.get("PAKMAN_KEY_PASSPHRASE") or None,
        algorithm="RSA256" if args.rsa256 else "RSA",
    )


def _keygen(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from pakman.apk import generate_key
    from pakman.apk.keys import default_key_name

    name = args.name or default_key_name(os.environ)
    directory = Path(args.dir) if args.dir else Path.home() / ".abuild"
    private, public = generate_key(directory, name, bits=args.bits)
    print(f"wrote {private} (private key, mode 0600: keep it secret, back it up)")
    print(f"wrote {public}")
    print(f"install {public.name} into /etc/apk/keys/ where the packages are installed")
    return EXIT_OK


def _index(args: argparse.Namespace) -> int:
    from pakman.apk import write_index
    from pakman.apk.index import CACHE_FILE, user_cache_file

    key = _load_key_from_args(args)
    cache = user_cache_file(args.folder)
    report = write_index(args.folder, key, description=args.description, cache=cache)
    # Older versions kept their cache in the folder, which is published.
    with contextlib.suppress(OSError):
        (Path(args.folder) / CACHE_FILE).unlink()
    print(
        f"{report.path}: {report.packages} package{'s' * (report.packages != 1)} "
        f"({report.packages - report.reused} read, {report.reused} unchanged), "
        f"signed with {key.keyname}"
    )
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from pakman.apk import load_public_keys, verify_file

    keys = load_public_keys([*args.key, *args.keys_dir])
    origin = dict.fromkeys(keys, "given")
    if args.workspace_key:
        from pakman.workspace.layout import find_workspace

        folder = find_workspace() / ".pakman" / "keys"
        if folder.is_dir():
            own = load_public_keys([folder])
            origin.update({name: os.path.relpath(folder) for name in own if name not in keys})
            keys = {**own, **keys}
    trusted = ", ".join(f"{name} ({where})" for name, where in sorted(origin.items()))
    sys.stderr.write(f"pakman: trusting {trusted or 'no key (give --key or --keys-dir)'}\n")
    verdicts = [verify_file(path, keys) for path in args.files]
    passed = all(v.passed(args.allow_untrusted) for v in verdicts)
    if args.json:
        report = {"files": [v.as_dict() for v in verdicts], "ok": passed, "trusted": sorted(keys)}
        print(json.dumps(report, indent=2))
    else:
        for verdict in verdicts:
            print(verdict.summary())
            for problem in verdict.problems[1:]:
                print(f"    {problem}")
    return EXIT_OK if passed else EXIT_FAILED


def _at_least(minimum: int) -> Any:
    """An argparse type: a whole number >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    return parse


def _days(text: str) -> float:
    """An argparse type: a number of days, >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 0 <= value < 1e6:
        raise argparse.ArgumentTypeError(f"{text} days: give a number from 0 to 999999")
    return value


def run() -> NoReturn:
    """The `pakman` command (and `python -m pakman`): `main`, then end the process at once.

    A normal interpreter exit collects and frees every object the command
    loaded, a noticeable part of a one-file build at hundreds of apps. Every file
    pakman writes is closed by the time `main` returns (the journal, the
    records, doit's database), so only the output streams are flushed
    before `os._exit`.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a reader that went away: nothing more can reach it
            code = code or 141
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from pakman.errors import PakmanError

    terminated = False

    def on_terminate(signum: int, frame: object) -> None:
        # CI cancelling a job, docker stop, systemd: stop as on Ctrl-C, so that
        # the shell of a running step is stopped too and nothing half-done is kept.
        nonlocal terminated
        terminated = True
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_terminate)
    except ValueError:  # not the main thread (pakman called as a library): leave signals be
        previous = None
    try:
        # The collector is paused until the project is loaded (see pakman.fastpath.gcpause).
        with gcpause.collector_paused():
            code: int = args.handler(args)
    except PakmanError as exc:
        _print_error(exc, sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pakman: interrupted", file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:
        # The reader went away (`pakman ... | head`): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        # A file or folder pakman needs is not what it should be (say .pakman/cache
        # is a file): one line naming it, not a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"pakman: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        _wait_for_trash()
    return code


def _wait_for_trash() -> None:
    """Let the folders this command discarded be deleted before it ends (see pakman.workspace.trash)."""
    trash = sys.modules.get("pakman.workspace.trash")
    if trash is not None:
        with contextlib.suppress(KeyboardInterrupt):  # what is left, the next build deletes
            trash.wait_all()


def _print_error(exc: Exception, out: TextIO) -> None:
    from pakman.errors import ConfigError

    if isinstance(exc, ConfigError):
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=out)
    else:
        print(f"pakman: {exc}", file=out)


def _identity_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": args.package_name,
        "organization": args.organization,
        "version": args.package_version,
        "release": args.release,
        "url": args.url,
    }


def _check(args: argparse.Namespace) -> int:
    from pakman.config.identity import resolve_identity
    from pakman.config.lint import lint_app
    from pakman.config.schema import validate
    from pakman.config.source import load_file
    from pakman.errors import ConfigError
    from pakman.render.engine import check_app_files
    from pakman.workspace.discovery import find_configs

    configs = find_configs(args.paths)
    reports: list[dict[str, Any]] = []
    invalid = errors = warnings = 0
    for config in configs:
        diagnostics: list[Diagnostic]
        summary = ""
        try:
            document = load_file(config)
            app, diagnostics = validate(document, file=config, strict=args.strict)
        except ConfigError as exc:
            diagnostics = list(exc.diagnostics)
        else:
            # What build and render would also refuse or warn about: names,
            # hooks calling unknown services, files the package needs. The
            # version (git) is asked only when shown: the checks need the name.
            options = _identity_kwargs(args)
            if not args.verbose:
                options["version"] = options["version"] or "0.0.0"
            # A bad option (e.g. --release x) is not the file's fault: it
            # propagates and ends the run with exit 3.
            identity = resolve_identity(app, **options)
            diagnostics = sorted(
                diagnostics + lint_app(app, identity, document), key=lambda d: (d.line, d.column)
            )
            try:
                check_app_files(app, document)
            except ConfigError as exc:
                diagnostics += exc.diagnostics
            if args.verbose:
                summary = (
                    f"{identity.name} {identity.full_version} ({app.type.value}, "
                    f"{app.stack}, {' '.join(app.architectures)})"
                )
        bad = [d for d in diagnostics if d.severity == "error"]
        invalid += bool(bad)
        errors += len(bad)
        warnings += len(diagnostics) - len(bad)
        reports.append(
            {
                "file": str(config),
                "valid": not bad,
                "package": summary or None,
                "diagnostics": [d.as_dict() for d in diagnostics],
            }
        )
        if args.json:
            continue
        for diagnostic in diagnostics:
            if not (args.quiet and diagnostic.severity == "warning"):
                print(diagnostic)
        if not bad and not args.quiet:
            print(f"{config}: ok" + (f": {summary}" if summary else ""))
    if args.json:
        print(json.dumps({"files": reports, "valid": invalid == 0}, indent=2))
    elif not args.quiet or invalid:
        print(
            f"checked {len(configs)} file{'s' * (len(configs) != 1)}: "
            f"{len(configs) - invalid} valid, {invalid} invalid "
            f"({errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)})"
        )
    return EXIT_INVALID if invalid else EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from pakman.config.schema import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.output:
        from pakman.fileio import write_atomic

        write_atomic(args.output, text.encode())
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    base = Path(args.path)
    config = base if base.is_file() else base / "instellar.yml"
    if base.is_dir() and not config.is_file():
        from pakman.errors import ConfigError

        raise ConfigError(f"{base}: no instellar.yml in this folder (render takes one app)")
    return _render_app(args, config, Path(args.output) if args.output else None, config.parent)


def _bootstrap(args: argparse.Namespace) -> int:
    import os

    workspace = Path(os.environ.get("GITHUB_WORKSPACE") or ".")
    config = Path(args.config) if args.config else workspace / "instellar.yml"
    return _render_app(args, config, None, workspace)


def _render_app(args: argparse.Namespace, config: Path, output: Path | None, workdir: Path) -> int:
    """Render one app into `output`, else `<workdir>/.apk/<org>/<name>/`."""
    from pakman.config.identity import resolve_identity
    from pakman.config.lint import lint_app
    from pakman.config.schema import load_app
    from pakman.config.source import load_file
    from pakman.render.engine import check_app_files, prune_rendered, render_all, write_rendered

    app, warnings = load_app(config)
    identity = resolve_identity(app, **_identity_kwargs(args))
    document = load_file(config)
    warnings += lint_app(app, identity, document)
    for warning in warnings:
        print(warning, file=sys.stderr)
    check_app_files(app, document)
    files = render_all(app, identity)
    out_dir = output or workdir / ".apk" / identity.organization / identity.name
    if output is None:
        from pakman.fileio import refuse_links

        refuse_links(workdir, out_dir)  # a checkout's `.apk` may be a link to anywhere
    results = write_rendered(files, out_dir)
    # Files rendered there before and no longer generated (a hook or service removed).
    removed = prune_rendered(files, out_dir)
    for path, written in results:
        print(f"{'wrote' if written else 'unchanged'} {path}")
    for path in removed:
        print(f"removed {path}")
    count = sum(written for _, written in results)
    print(
        f"{identity.name} {identity.full_version}: {len(results)} files in {out_dir}, "
        f"{count} written, {len(results) - count} unchanged"
        + (f", {len(removed)} removed" if removed else "")
    )
    return EXIT_OK


def _settings(args: argparse.Namespace) -> Any:
    from pakman.compile.options import settings_from_arguments

    return settings_from_arguments(vars(args), args.paths, os.environ, root=_workspace())


def _workspace() -> str:
    """The workspace (see layout.find_workspace), from the current folder; said when not `.`."""
    from pakman.workspace.layout import find_workspace

    found = find_workspace()
    if found == Path.cwd():
        return "."
    relative = os.path.relpath(found)
    # One write: several pakman (make -j) may share stderr.
    sys.stderr.write(f"pakman: workspace {relative} ({found}): the nearest folder with .pakman/\n")
    return relative


def _load(args: argparse.Namespace) -> Any:
    from pakman.compile.project import load_project

    project = load_project(_settings(args))
    gcpause.loaded()
    _show_project_messages(project)
    return project


def _show_project_messages(project: Any) -> None:
    for message in [*project.warnings, *project.notes]:
        sys.stderr.write(f"{message}\n")  # one write each: several pakman may share stderr


def _build(args: argparse.Namespace) -> int:
    from pakman.fastpath.plan import inspect

    settings = _settings(args)
    inspection = inspect(settings)
    _delete_leftovers(inspection.layout)
    if inspection.nothing_to_do and not (args.explain or args.always):
        # Nothing changed since the last build: say so without preparing it.
        from pakman.doit.reporter import PakmanReporter

        for text in inspection.warnings():
            print(text, file=sys.stderr)
        repository = inspection.layout.relative(inspection.layout.repo)
        reporter = PakmanReporter(sys.stdout, json_events=args.json, repository=repository)
        reporter.up_to_date_without_doit(inspection.step_ids())
        reporter.complete_run()
        return EXIT_OK

    from pakman.compile.project import load_project
    from pakman.doit.tasks import run_build

    project = load_project(settings, lazy=not args.always, inspection=inspection)
    gcpause.loaded()
    _show_project_messages(project)
    if args.explain:
        from pakman.compile.explain import explain_steps

        explanations = explain_steps(
            project.graph, project.layout, project.graph.order(), build_on=settings.build_on
        )
        for explanation in explanations:
            if explanation.will_run:
                print(explanation.text())
    code, _ = run_build(
        project, jobs=args.jobs, json_events=args.json, wait=not args.no_wait, always=args.always
    )
    return code


def _delete_leftovers(layout: Layout) -> None:
    """Delete, while the build goes on, what a killed build left in `.pakman/trash/`.

    One scandir when there is nothing to delete; the command waits for the
    deletion before it ends (see `_wait_for_trash`).
    """
    try:
        with os.scandir(layout.state / "trash") as entries:
            if next(entries, None) is None:
                return
    except OSError:  # no trash folder: nothing was ever discarded
        return
    from pakman.workspace.trash import workspace_trash

    workspace_trash(layout).delete_leftovers()


def _graph(args: argparse.Namespace) -> int:
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
    project = _load(args)
    if args.affected:
        print("".join(f"{s.id}\n" for s in export.affected(project, args.affected)), end="")
        return EXIT_OK
    run = export.RunStep(command, tuple(project_argv(args)), tuple(args.paths))
    fmt = args.format
    if fmt == "json":
        text = export.to_json(project)
    elif fmt == "mermaid":
        text = export.to_mermaid(project.graph)
    elif fmt == "makefile":
        text = export.to_makefile(project, run)
    elif fmt == "ninja":
        text = export.to_ninja(project, run)
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


def _explain(args: argparse.Namespace) -> int:
    from pakman.compile.explain import explain_steps, select
    from pakman.errors import ConfigError

    project = _load(args)
    steps = select(project.graph, args.targets)
    if args.targets and not steps:
        raise ConfigError(f"no app or step named {', '.join(args.targets)} (see `pakman graph`)")
    explanations = explain_steps(
        project.graph, project.layout, steps, build_on=project.settings.build_on
    )
    shown = [e for e in explanations if args.all or e.will_run]
    if args.json:
        print(json.dumps([e.as_dict() for e in shown], indent=2))
    else:
        for explanation in shown:
            print(explanation.text())
        running = sum(e.will_run for e in explanations)
        print(f"{running} of {len(explanations)} steps will run")
    return EXIT_OK


def _gc(args: argparse.Namespace) -> int:
    from pakman.errors import ConfigError
    from pakman.workspace.store import Store, parse_size

    try:
        max_bytes = parse_size(args.max_size)
    except ValueError:
        raise ConfigError(
            f"--max-size {args.max_size!r}: use a size such as 500M or 5G (0 or more)"
        ) from None
    root = Path(_workspace())
    store = Store(root / ".pakman" / "store")
    removed, kept = store.collect_garbage(
        max_age_days=args.max_age, max_bytes=max_bytes, dry_run=args.dry_run
    )
    from pakman.workspace.layout import Layout

    layout = Layout.at(root)
    if not args.dry_run:
        from pakman.workspace.trash import workspace_trash

        workspace_trash(layout).empty()  # what a killed build did not delete
    verb = "would remove" if args.dry_run else "removed"
    for entry in removed:
        print(f"{verb} {entry.key[:16]} ({entry.size / 1e6:.1f} MB)")
    freed = sum(e.size for e in removed) / 1e6
    kept_size = sum(e.size for e in kept) / 1e6
    print(f"{verb} {len(removed)} entries ({freed:.1f} MB); {len(kept)} kept ({kept_size:.1f} MB)")
    if layout.state.is_dir():
        _gc_roots(layout, dry_run=args.dry_run)
    return EXIT_OK


def _gc_roots(layout: Layout, *, dry_run: bool) -> None:
    """Remove the build roots and cached .apk files no current lock references, unless a build runs."""
    from pakman.steps.buildroot import remove_unused, unused_roots_and_packages
    from pakman.workspace.lock import LockBusy, run_lock

    try:
        # A build holds the workspace lock while it makes or uses a root: none runs meanwhile.
        with run_lock(layout, wait=False):
            unused, kept = unused_roots_and_packages(layout.state)
            if not dry_run:
                remove_unused(unused, layout.state)
    except LockBusy:
        print(
            "build roots and cached packages left alone: a build is running in this workspace "
            "(run gc again when it is done)"
        )
        return
    verb = "would remove" if dry_run else "removed"
    for item in unused:
        print(f"{verb} {item.kind} {item.path.name} ({item.size / 1e6:.1f} MB)")
    roots = sum(item.kind == "root" for item in unused)
    packages = sum(item.kind == "package" for item in unused)
    leftovers = len(unused) - roots - packages
    freed = sum(item.size for item in unused) / 1e6
    print(
        f"{verb} {roots} build roots, {packages} cached packages and {leftovers} leftovers "
        f"({freed:.1f} MB); {kept} kept"
    )


def _watch(args: argparse.Namespace) -> int:
    from pakman.fastpath.watcher import serve
    from pakman.workspace.layout import Layout

    gcpause.loaded()  # it runs for days: the collector runs as usual
    return serve(Layout.at(Path(_workspace())), sys.stdout, verbose=args.verbose)


def _run_step(args: argparse.Namespace) -> int:
    from pakman.errors import ConfigError
    from pakman.steps import execute_step, record_provisional, require_upstream
    from pakman.workspace.lock import run_lock

    project = _load(args)
    if args.step not in project.graph.steps:
        import difflib

        close = difflib.get_close_matches(args.step, list(project.graph.steps), n=3)
        hint = f"; did you mean: {', '.join(close)}?" if close else " (see `pakman graph`)"
        raise ConfigError(f"no step named {args.step!r}{hint}")
    step = project.graph[args.step]
    # Steps that make or ninja run at once share the workspace lock; a build waits for them.
    with run_lock(project.layout, out=sys.stderr, shared=True):
        require_upstream(step, project.graph, project.layout)
        outcome = execute_step(step, project.context)
        if outcome.provisional:  # the mirror could not be reached: the steps after it go on
            record_provisional(step, project.layout)
    for warning in outcome.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    # One write: make -j and ninja run several of these at once on one output,
    # and print() may write the text and its newline separately.
    sys.stdout.write(f"{'restored' if outcome.restored else 'ran'} {args.step}\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
