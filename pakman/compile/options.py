"""The build options, declared once: each one's flag, PAKMAN_* variable, Settings field and help.

`pakman build` and the commands that compile the same graph (graph,
explain, run-step) add them to argparse from this table; plain `doit`
(pakman/dodo.py) reads their variables from it; both make `Settings`
through it. Imports nothing slow: `pakman --help` reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pakman.compile.settings import BUILD_BASE_VARIABLE, BUILD_ON, NETWORKS, Settings

Kind = Literal["text", "flag", "list", "choice"]
PATH_VARIABLE = "PAKMAN_PATH"


@dataclass(frozen=True)
class Option:
    """One build option: where it is read from and which Settings field it sets."""

    field: str  # the Settings field
    flag: str  # the long option, e.g. --only
    help: str
    kind: Kind = "text"
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    # "remote": only `pakman build` has it (a step that graph, explain or run-step
    # compiles or runs never asks the remote cache)
    group: Literal["build", "identity", "remote"] = "build"
    # The command line falls back on the variable when the flag is absent (plain
    # doit always reads the variables). Other variables serve plain doit only.
    command_line_reads_variable: bool = False
    variable: str = ""  # default: PAKMAN_ + the flag in capitals
    # Checks a value on the command line (argparse's type; UsageError when wrong);
    # a variable's value is checked where it is used.
    check: Callable[[str], object] | None = None

    @property
    def env(self) -> str:
        return self.variable or "PAKMAN_" + self.flag.removeprefix("--").replace("-", "_").upper()

    @property
    def dest(self) -> str:
        """The argparse attribute."""
        return self.flag.removeprefix("--").replace("-", "_")

    def from_text(self, text: str | None) -> Any:
        """The Settings value of a variable's text (None: unset)."""
        if self.kind == "flag":
            return (text or "").strip().lower() not in ("", "0", "false", "no")
        if self.kind == "list":
            return tuple(n.strip() for n in (text or "").split(",") if n.strip())
        if self.field == "build_base":
            return text  # set but empty: no base set
        return text or None


def _check_shard(text: str) -> object:
    from pakman.compile.shard import parse_shard

    return parse_shard(text)


OPTIONS: tuple[Option, ...] = (
    Option(
        "only",
        "--only",
        "only this app (repeatable); a build keeps the others' packages in the repository",
        kind="list",
        metavar="APP",
    ),
    Option("repo", "--repo", "the repository folder (default .pakman/repo)", metavar="DIR"),
    Option("key_file", "--key", "the private signing key (PEM)", metavar="FILE"),
    Option(
        "mirror",
        "--mirror",
        "the Alpine mirror (default: PAKMAN_MIRROR, else the official CDN)",
        metavar="URL",
    ),
    Option(
        "offline",
        "--offline",
        "ask no mirror: dependencies stay unchecked, except that a build on alpine "
        "resolves its root from the indexes and packages an earlier build cached",
        kind="flag",
    ),
    Option(
        "require_deps",
        "--require-deps",
        "fail when dependencies cannot be checked",
        kind="flag",
    ),
    Option(
        "alpine_keys",
        "--alpine-keys",
        "public keys that fetched indexes and packages must be signed with",
        metavar="DIR",
    ),
    Option(
        "build_base",
        "--build-base-packages",
        "what every build has besides dependencies.build (names separated by spaces "
        "or commas; default: PAKMAN_BUILD_BASE, else the original's build environment)",
        metavar="LIST",
        variable=BUILD_BASE_VARIABLE,
    ),
    Option(
        "build_on",
        "--build-on",
        "where build.command runs: alpine (a bubblewrap sandbox on a root of the "
        "stack's Alpine with dependencies.build) or host (its tools and libraries); "
        "default: PAKMAN_BUILD_ON, else alpine",
        kind="choice",
        choices=BUILD_ON,
        command_line_reads_variable=True,
    ),
    Option(
        "network",
        "--network",
        "the network a build on alpine sees: host (shared, the default) or none",
        kind="choice",
        choices=NETWORKS,
        command_line_reads_variable=True,
    ),
    Option(
        "shard",
        "--shard",
        "build only shard I of N of the apps (1 <= I <= N), chosen by a stable hash of "
        "each app's package name: their steps, no repository steps (index, sign), no "
        "repository written; a later build without --shard reuses what the shards built",
        metavar="I/N",
        command_line_reads_variable=True,
        check=_check_shard,
    ),
    Option(
        "allow_rebuild",
        "--allow-rebuild",
        "replace a package the repository has with other bytes under the same name, "
        "version and release (refused when the working tree is clean)",
        kind="flag",
    ),
    Option(
        "remote_cache",
        "--remote-cache",
        "a cache server on Bazel's HTTP cache protocol (GET/PUT {URL}/ac/, {URL}/cas/): "
        "steps about to run are restored from it when it has them, and what ran is "
        "uploaded; the header PAKMAN_REMOTE_CACHE_HEADER ('Name: value') is sent with every "
        "request; default: PAKMAN_REMOTE_CACHE",
        metavar="URL",
        command_line_reads_variable=True,
        group="remote",
    ),
    Option(
        "remote_cache_readonly",
        "--remote-cache-readonly",
        "read the remote cache, never write to it (for untrusted branches and pull requests)",
        kind="flag",
        command_line_reads_variable=True,
        group="remote",
    ),
    Option(
        "remote_cache_all_outputs",
        "--remote-cache-all-outputs",
        "put in place every step the remote cache sends (by default a step no step that "
        "runs reads, such as a build folder, stays in the local store until one does)",
        kind="flag",
        command_line_reads_variable=True,
        group="remote",
    ),
    Option(
        "remote_cache_timeout",
        "--remote-cache-timeout",
        "seconds a remote cache request may wait (default 10)",
        metavar="SECONDS",
        command_line_reads_variable=True,
        group="remote",
    ),
    Option("strict", "--strict", "treat unknown keys in instellar.yml as errors", kind="flag"),
    Option(
        "name",
        "--package-name",
        "the package name (slugified)",
        metavar="NAME",
        group="identity",
    ),
    Option(
        "organization",
        "--organization",
        "the organization (default: the owner in GITHUB_REPOSITORY, else 'local')",
        metavar="ORG",
        group="identity",
    ),
    Option(
        "version",
        "--package-version",
        "the version, e.g. 1.2.3 (a leading v is dropped)",
        metavar="VER",
        group="identity",
    ),
    Option(
        "url",
        "--url",
        "the project's home page (default: the GitHub repository page)",
        metavar="URL",
        group="identity",
    ),
    Option(
        "release",
        "--release",
        "the release number pkgrel (default GITHUB_RUN_NUMBER, else 0)",
        metavar="N",
        group="identity",
    ),
    Option(
        "license",
        "--license",
        "the package's licence, an SPDX licence expression (default: PAKMAN_LICENSE, else "
        "instellar.yml's `license`, else MIT as the original writes)",
        metavar="SPDX",
        group="identity",
    ),
    Option(
        "description",
        "--description",
        "the package's one-line description, pkgdesc (default: PAKMAN_DESCRIPTION, else "
        "instellar.yml's `description`, else the package name as the original)",
        metavar="TEXT",
        group="identity",
    ),
)
IDENTITY_OPTIONS = tuple(o for o in OPTIONS if o.group == "identity")
REMOTE_OPTIONS = tuple(o for o in OPTIONS if o.group == "remote")
# -v: each command words its own help (what it shows); plain doit's PAKMAN_VERBOSE.
VERBOSE = Option("verbose", "--verbose", "print more", kind="flag")


def variables() -> dict[str, str]:
    """Plain doit's variables and the options they stand in for (for docs and tests)."""
    described = {PATH_VARIABLE: "PATH... (folders, `:`-separated; default the folder of dodo.py)"}
    for option in (*OPTIONS, VERBOSE):
        flag = "-v" if option is VERBOSE else option.flag
        if option.kind == "flag":
            described[option.env] = f"{flag} (1)"
        elif option.kind == "list":
            described[option.env] = f"{flag} (values `,`-separated)"
        elif option.choices:
            described[option.env] = f"{flag} ({' or '.join(option.choices)})"
        else:
            described[option.env] = flag
    return described


def settings_from_arguments(
    values: Mapping[str, Any], paths: Iterable[str], environ: Mapping[str, str], root: str = "."
) -> Settings:
    """Settings from parsed arguments (argparse's attributes by `Option.dest`)."""
    chosen: dict[str, Any] = {}
    for option in OPTIONS:
        value = values.get(option.dest)
        if option.kind == "list":
            value = tuple(value or ())
        elif option.kind == "flag":
            value = bool(value) or (
                option.command_line_reads_variable and option.from_text(environ.get(option.env))
            )
        elif value is None and option.command_line_reads_variable:
            value = option.from_text(environ.get(option.env))
        if value is not None:
            chosen[option.field] = value
    return Settings(paths=tuple(paths), root=root, verbose=bool(values.get(VERBOSE.dest)), **chosen)


def settings_from_environment(
    environ: Mapping[str, str], paths: tuple[str, ...] | None = None
) -> Settings:
    """Settings from the PAKMAN_* variables, as plain doit reads them."""
    chosen: dict[str, Any] = {}
    for option in (*OPTIONS, VERBOSE):
        value = option.from_text(environ.get(option.env))
        if value is not None:
            chosen[option.field] = value
    return Settings(paths=paths or tuple(environ.get(PATH_VARIABLE, ".").split(":")), **chosen)
