"""Names and versions: who a package is, from options and the environment.

The file has no package name. It comes from an explicit option, else the
repository part of `GITHUB_REPOSITORY`, else `run.name`, else the app's
folder name, slugified like the original. The version comes from the
app's git history: its own tag or the repository's, and its commits since
(`app_version`); the release from an option or `GITHUB_RUN_NUMBER`.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pakman.config.model import AppConfig, Identity
from pakman.config.rules import (
    DESCRIPTION,
    PACKAGE_NAME,
    URL,
    VERSION,
    is_version,
    license_problem,
    normal_license,
    slugify,
)
from pakman.errors import ConfigError
from pakman.fileio import read_regular

if TYPE_CHECKING:
    from pakman.config.gitmeta import Revision

DEFAULT_ORGANIZATION = "local"
# What the original writes on every package, whatever the app's licence.
DEFAULT_LICENSE = "MIT"
DEFAULT_LICENSE_FROM = "the default of PAKman, which writes MIT on every package: nobody chose it"
DEFAULT_DESCRIPTION_FROM = "the default of PAKman: the package name"
_SEMVER_PREFIX = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")


def resolve_identity(
    app: AppConfig,
    *,
    name: str | None = None,
    organization: str | None = None,
    version: str | None = None,
    release: int | str | None = None,
    url: str | None = None,
    license: str | None = None,
    description: str | None = None,
    env: Mapping[str, str] | None = None,
    revision: Revision | None = None,
) -> Identity:
    """Decide the package's organization, name, version, release, home page, licence and
    description.

    With `revision`, the app was read from that commit's tree: git is asked
    at that commit, for the folder the app's stands for.
    """
    env = os.environ if env is None else env
    root = revision.real(app.root) if revision is not None else app.root
    owner, repo = _github_repository(root, env)
    pkgname = _slug(
        "package name", name or repo or (app.run.name if app.run else None) or app.root.name
    )
    org = _slug("organization", organization or owner or DEFAULT_ORGANIZATION)
    if url is None:
        # Like the original: the GitHub repository page (abuild requires a url).
        server = env.get("GITHUB_SERVER_URL") or "https://github.com"
        url = (
            f"{server}/{owner}/{repo}" if owner and repo else f"https://github.com/{org}/{pkgname}"
        )
    elif not URL.match(url):
        raise ConfigError(f"the url {url!r} is not allowed: {URL.says}")
    license_text, license_from = _chosen(
        "license", license, env, app.license, DEFAULT_LICENSE, DEFAULT_LICENSE_FROM
    )
    if license_from.startswith("--"):  # the file's value was checked when it was read
        problem = license_problem(license_text)
        if problem is not None:
            raise ConfigError(f"{license_from}: {problem}")
    description_text, description_from = _chosen(
        "description", description, env, app.description, "", DEFAULT_DESCRIPTION_FROM
    )
    if description_from != DEFAULT_DESCRIPTION_FROM and not DESCRIPTION.match(description_text):
        raise ConfigError(
            f"{description_from} {description_text!r} is not allowed: {DESCRIPTION.says}"
        )
    return Identity(
        organization=org,
        name=pkgname,
        version=_version(version, app, pkgname, root, revision),
        release=_release(release, env),
        url=url,
        license=normal_license(license_text)
        if license_from != DEFAULT_LICENSE_FROM
        else license_text,
        license_from=license_from,
        description=description_text,
        description_from=description_from,
    )


def _chosen(
    key: str,
    option: str | None,
    env: Mapping[str, str],
    written: str | None,
    default: str,
    default_from: str,
) -> tuple[str, str]:
    """A value and where it came from: --KEY, else PAKMAN_KEY, else instellar.yml's `KEY`, else the default."""
    variable = f"PAKMAN_{key.upper()}"
    if option is not None:
        return option, f"--{key} / {variable}"
    if env.get(variable):
        return env[variable], f"--{key} / {variable}"
    if written is not None:
        return written, f"instellar.yml `{key}`"
    return default, default_from


def _github_repository(root: Path, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """`GITHUB_REPOSITORY` names the app at the workspace root only.

    In a repository holding several apps, the others take their own names.
    """
    value = env.get("GITHUB_REPOSITORY", "")
    if "/" not in value:
        return None, None
    workspace = env.get("GITHUB_WORKSPACE")
    if workspace and Path(workspace).resolve() != root.resolve():
        return None, None
    owner, _, repo = value.partition("/")
    return owner, repo


def _slug(what: str, text: str) -> str:
    slug = slugify(text)
    if not slug or not PACKAGE_NAME.match(slug):
        raise ConfigError(
            f"the {what} {text!r} gives no usable name; it must become {PACKAGE_NAME.says}"
        )
    return slug


def _version(
    explicit: str | None,
    app: AppConfig,
    name: str,
    root: Path,
    revision: Revision | None = None,
) -> str:
    if explicit is not None:
        candidate = explicit[1:] if re.match(r"v[0-9]", explicit) else explicit
        if not is_version(candidate):
            raise ConfigError(f"the version {explicit!r} is not allowed: {VERSION.says}")
        return candidate
    # An app whose build sees git's metadata (`build.git`) reads every commit:
    # each one that changes what it sees moves its version.
    return app_version(root, name, whole_repository=app.build.git, revision=revision)


def version_from_tag(tag: str) -> str | None:
    """The version a repository tag names, or None: `v1.2.3` -> `1.2.3`, `release-1` -> None.

    Like the original, the part before the first '-' counts when it starts
    with MAJOR.MINOR.PATCH; a leading `v` is accepted. The result is always a
    valid apk version (`1.2.3foo` -> `1.2.3`).
    """
    candidate = tag.strip().split("-", 1)[0]
    if re.match(r"v[0-9]", candidate):
        candidate = candidate[1:]
    prefix = _SEMVER_PREFIX.match(candidate)
    if prefix is None:
        return None
    return candidate if is_version(candidate) else prefix.group(0)


def app_tag_version(tag: str, name: str) -> str | None:
    """The version an app's own tag names (`<name>-v1.2.3`, `<name>@1.2.3`), or None."""
    for separator in ("-v", "@"):
        if tag.startswith(name + separator):
            rest = tag[len(name) + len(separator) :]
            return version_from_tag(rest) if rest[:1].isdigit() or separator == "@" else None
    return None


def app_version(
    root: Path, name: str, *, whole_repository: bool = False, revision: Revision | None = None
) -> str:
    """The version git gives the app `name` in `root`: its tag, then its commits since.

    The tag is the highest of the app's own tags (`<name>-v1.2.3`,
    `<name>@1.2.3`) in HEAD's history, else the highest repository tag
    (`v1.2.3`, `1.2.3`); other apps' tags never count. Each commit since that
    changed a file in the app's folder adds to a `_p<N>` suffix, which apk sorts after
    the tag's version and before the next (`1.2.3 < 1.2.3_p4 < 1.2.4`), so no
    two commits that changed the app share a version, and a commit that did
    not change it keeps it. Untagged, the app's commits count from the start
    (`0.0.0_p<N>`; `0.0.0` for a folder never committed). Uncommitted changes
    keep the version; outside git it is `0.0.0`. With `whole_repository`
    (an app built with `build.git: true`, whose outputs depend on HEAD),
    every commit counts. With `revision`, all of this at its commit instead
    of HEAD (`root` is then the work tree's folder the app stands for).
    """
    if revision is not None:
        top, commit = revision.top.resolve(), revision.commit
    else:
        found = git_dir(root)
        if found is None or not _has_head(found):
            return "0.0.0"
        top, commit = found.parent.resolve(), "HEAD"
    try:
        folder = root.resolve().relative_to(top).as_posix() or "."
    except ValueError:
        return "0.0.0"
    if whole_repository:
        folder = "."
    tags = _tags_in_head(top, commit)
    own = [(v, t) for t in tags if (v := app_tag_version(t, name)) is not None]
    shared = [(v, t) for t in tags if (v := version_from_tag(t)) is not None]
    candidates = own or shared
    base, tag = max(candidates, key=_tag_order) if candidates else ("0.0.0", None)
    count = _changes_since(top, tag, commit).get(folder, 0)
    return f"{base}_p{count}" if count else base


_PRE_RELEASE = re.compile(r"_(alpha|beta|pre|rc)")


def _tag_order(candidate: tuple[str, str]) -> tuple[tuple[int, ...], int, str, str]:
    """Highest first by the numbers, then a release over its pre-releases, then by text."""
    version, tag = candidate
    numbers = version.split("_", 1)[0]
    digits = tuple(int(part) for part in re.findall(r"[0-9]+", numbers))
    suffix = version[len(numbers) :]
    rank = 0 if _PRE_RELEASE.match(suffix) else 1 if not suffix else 2
    return digits, rank, suffix, tag


@functools.cache
def _tags_in_head(top: Path, commit: str = "HEAD") -> tuple[str, ...]:
    """The tags in the commit's history (one git process per repository, however many apps)."""
    text = _git(top, "for-each-ref", "--merged", commit, "--format=%(refname:strip=2)", "refs/tags")
    return tuple(text.splitlines()) if text else ()


@functools.cache
def _changes_since(top: Path, tag: str | None, commit: str = "HEAD") -> dict[str, int]:
    """For each folder, how many commits of `commit`'s history since `tag` (all, for None)
    changed it.

    One git process for every app counted from the same tag (the repository's,
    or none), instead of one `git rev-list --count TAG..HEAD -- <folder>` per
    app: merges count through the commits they bring, not themselves.
    """
    from pakman.config.gitmeta import run_git

    revisions = f"refs/tags/{tag}..{commit}" if tag is not None else commit
    try:
        result = run_git(
            top,
            "-c",
            "log.showRoot=true",
            "log",
            "-z",
            "--no-merges",
            "--no-renames",
            "--name-only",
            "--format=%x01",
            revisions,
            "--",
            timeout=300,
        )
    except OSError:
        return {}
    if result.returncode != 0:
        return {}
    counts: dict[str, int] = {}
    for record in result.stdout.decode("utf-8", "surrogateescape").split("\x01\0"):
        folders: set[str] = set()
        for path in record.lstrip("\n").split("\0"):
            parts = path.split("/")[:-1]
            folders.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
            if path:
                folders.add(".")
        for folder in folders:
            counts[folder] = counts.get(folder, 0) + 1
    return counts


def git_dir(root: Path) -> Path | None:
    """The `.git` (a folder, or a file in a worktree) of the repository holding `root`."""
    root = root.resolve()
    for folder in (root, *root.parents):
        candidate = folder / ".git"
        if candidate.exists():
            return candidate
    return None


def _git(folder: Path, *args: str) -> str | None:
    """What `git ARGS` prints in `folder`, stripped; None when git fails or is missing."""
    from pakman.config.gitmeta import run_git

    try:
        result = run_git(folder, *args, timeout=30)
    except OSError:
        return None
    text = result.stdout.decode("utf-8", "replace").strip()
    return text if result.returncode == 0 else None


def uncommitted_changes(root: Path, outside: Sequence[Path] = ()) -> bool | None:
    """Whether the work tree holding `root` has changes not committed (None outside git).

    Untracked files count (those git does not ignore), except under `outside`
    (the workspace's `.pakman/`, the repository). Asked with plumbing that
    runs nothing a checkout's own configuration names (its fsmonitor hook,
    its clean filters), which would run on the host, outside any sandbox.
    """
    from pakman.config.gitmeta import run_git

    found = git_dir(root)
    if found is None or not _has_head(found):
        return None
    top = found.parent.resolve()
    skipped: list[str] = []
    for folder in outside:
        try:
            skipped.append(folder.resolve().relative_to(top).as_posix() + "/")
        except ValueError:
            continue
    # A file whose times changed is compared by content, through the clean
    # filter its attributes name: every filter the configuration defines is
    # emptied for these commands (listing them runs nothing).
    listed = _git(top, "config", "-z", "--name-only", "--get-regexp", r"^filter\.")
    quiet: list[str] = []  # (run_git's SAFE_GIT already turns core.fsmonitor off)
    for key in (listed or "").split("\0"):
        name = key.removeprefix("filter.").rpartition(".")[0]
        if key.startswith("filter.") and name:
            quiet += ["-c", f"filter.{name}.clean=", "-c", f"filter.{name}.process="]
    for args in (
        ("diff-index", "--name-only", "-z", "HEAD", "--"),
        ("ls-files", "-z", "--others", "--directory", "--exclude-standard"),
    ):
        try:
            result = run_git(top, *quiet, *args, timeout=60)
        except OSError:
            return None
        if result.returncode != 0:
            return None
        for path in result.stdout.decode("utf-8", "surrogateescape").split("\0"):
            if path and not (path + "/").startswith(tuple(skipped)):
                return True
    return False


def clear_version_cache() -> None:
    """Forget what git said about tags and commits (each build asks again)."""
    _tags_in_head.cache_clear()
    _changes_since.cache_clear()


def version_inputs(root: Path) -> list[Path]:
    """Paths whose change can change the version git gives `root` (for cheap change checks).

    The repository's HEAD, the ref it names, packed refs and the tags; outside
    a repository, each `.git` that could appear (not the folders it would
    appear in: /tmp or a home folder changes all the time, and the version
    with it only when a `.git` comes).
    """
    found = git_dir(root)
    if found is None:
        resolved = root.resolve()
        return [folder / ".git" for folder in (resolved, *resolved.parents)]
    meta = found
    if found.is_file():  # a worktree or submodule: "gitdir: <path>"
        text = _git_text(found)
        meta = (found.parent / text.removeprefix("gitdir:").strip()).resolve()
    paths = [found, meta / "HEAD", meta / "packed-refs"]
    common = meta
    if (meta / "commondir").is_file():
        common = (meta / _git_text(meta / "commondir")).resolve()
        paths.append(common / "packed-refs")
    head = _git_text(meta / "HEAD")
    if head.startswith("ref:"):
        paths.append(common / head.removeprefix("ref:").strip())
    tags = common / "refs" / "tags"
    paths.append(tags)
    if tags.is_dir():
        paths.extend(p for p in tags.rglob("*"))
    return paths


_GIT_TEXT_LIMIT = 64 << 10  # HEAD, a .git file and commondir hold one line


def _git_text(path: Path) -> str:
    """A one-line file of a repository's metadata, "" when it cannot be read or is absurd.

    A checkout from an archive brings its own `.git`: its HEAD may be a FIFO
    or lead to /dev/zero, which must neither block nor be read whole.
    """
    try:
        raw = read_regular(path, _GIT_TEXT_LIMIT)
    except OSError:
        return ""
    return "" if len(raw) > _GIT_TEXT_LIMIT else raw.decode("utf-8", "replace").strip()


def _has_head(found: Path) -> bool:
    """Whether the repository's HEAD is a file git can read (a FIFO there would hang git)."""
    meta = found
    if found.is_file():
        meta = found.parent / _git_text(found).removeprefix("gitdir:").strip()
    return _git_text(meta / "HEAD") != ""


EARLIEST_EPOCH = 315532800  # 1980-01-01: zip files (shiv, wheels) cannot hold earlier times


def epoch_variable(env: Mapping[str, str] | None = None) -> int | None:
    """SOURCE_DATE_EPOCH from the environment, or None when it is not set."""
    env = os.environ if env is None else env
    text = env.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise ConfigError(
            f"SOURCE_DATE_EPOCH={text!r} is not allowed: seconds since 1970, e.g. 1700000000"
        )
    return int(text)


def last_commit_times(
    roots: Sequence[Path], revision: Revision | None = None
) -> dict[Path, int | None]:
    """When each folder last changed in git (`git log -1 --format=%ct -- .` in it, as
    abuild dates a build), or None outside git or for a folder never committed.

    At HEAD, or at `revision`'s commit for the folders of its tree. One git
    process per folder, a few at once: only a build that prepares every app
    asks (the plan keeps the answers while git's refs stay put).
    """
    from concurrent.futures import ThreadPoolExecutor

    def last(root: Path) -> int | None:
        return _last_commit_time(root, revision)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(roots, pool.map(last, roots), strict=True))


def _last_commit_time(root: Path, revision: Revision | None = None) -> int | None:
    if revision is not None:
        folder = revision.real(root).relative_to(revision.top).as_posix()
        text = _git(revision.top, "log", "-1", "--format=%ct", revision.commit, "--", folder)
        return int(text) if text is not None and text.isascii() and text.isdigit() else None
    found = git_dir(root)
    if found is None or not _has_head(found):
        return None
    text = _git(root, "log", "-1", "--format=%ct", "--", ".")
    return int(text) if text is not None and text.isascii() and text.isdigit() else None


def build_epoch(variable: int | None, committed: int | None, now: int) -> int:
    """An app's SOURCE_DATE_EPOCH: the variable, else its last commit, else `now`; never before 1980."""
    value = variable if variable is not None else committed if committed is not None else now
    return max(value, EARLIEST_EPOCH)


def _release(explicit: int | str | None, env: Mapping[str, str]) -> int:
    source, value = (
        ("--release", explicit)
        if explicit is not None
        else ("GITHUB_RUN_NUMBER", env.get("GITHUB_RUN_NUMBER"))
    )
    if value is None or value == "":
        return 0
    text = str(value).strip()
    # isdigit() alone accepts '²' and other digits int() refuses.
    if not (text.isascii() and text.isdigit()):
        raise ConfigError(
            f"{source}={value!r} is not allowed: the release must be a whole number >= 0"
        )
    return int(text)
