"""Names and versions: who a package is, from options and the environment.

The file has no package name. It comes from an explicit option, else the
repository part of `GITHUB_REPOSITORY`, else `run.name`, else the app's
folder name, slugified like the original. The version comes from
`git describe --tags --always`; the release from an option or
`GITHUB_RUN_NUMBER`.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

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
) -> Identity:
    """Decide the package's organization, name, version, release, home page, licence and description."""
    env = os.environ if env is None else env
    owner, repo = _github_repository(app.root, env)
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
        version=_version(version, app.root),
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


def _version(explicit: str | None, root: Path) -> str:
    if explicit is not None:
        candidate = explicit[1:] if re.match(r"v[0-9]", explicit) else explicit
        if not is_version(candidate):
            raise ConfigError(f"the version {explicit!r} is not allowed: {VERSION.says}")
        return candidate
    return version_from_describe(git_describe(root))


def version_from_describe(described: str | None) -> str:
    """The package version from `git describe` output: `v1.2.3-4-gabc` -> `1.2.3`.

    Like the original, the part before the first '-' counts when it starts
    with MAJOR.MINOR.PATCH; a leading `v` is accepted; anything else is 0.0.0.
    The result is always a valid apk version.
    """
    if not described:
        return "0.0.0"
    candidate = described.strip().split("-", 1)[0]
    if re.match(r"v[0-9]", candidate):
        candidate = candidate[1:]
    prefix = _SEMVER_PREFIX.match(candidate)
    if prefix is None:
        return "0.0.0"
    return candidate if is_version(candidate) else prefix.group(0)


def git_dir(root: Path) -> Path | None:
    """The `.git` (a folder, or a file in a worktree) of the repository holding `root`."""
    root = root.resolve()
    for folder in (root, *root.parents):
        candidate = folder / ".git"
        if candidate.exists():
            return candidate
    return None


def git_describe(root: Path) -> str | None:
    """`git describe --tags --always` for the repository holding `root`, or None outside one.

    Run once per repository, however many apps it holds.
    """
    found = git_dir(root)
    return None if found is None or not _has_head(found) else _describe_repository(found.parent)


@functools.cache
def _describe_repository(top: Path) -> str | None:
    return _git(top, "describe", "--tags", "--always")


def _git(folder: Path, *args: str) -> str | None:
    """What `git ARGS` prints in `folder`, stripped; None when git fails or is missing."""
    try:
        result = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def clear_version_cache() -> None:
    """Forget what `git describe` said (for tests, and long-running callers)."""
    _describe_repository.cache_clear()


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


def last_commit_times(roots: Sequence[Path]) -> dict[Path, int | None]:
    """When each folder last changed in git (`git log -1 --format=%ct -- .` in it, as
    abuild dates a build), or None outside git or for a folder never committed.

    One git process per folder, a few at once: only a build that prepares
    every app asks (the plan keeps the answers while git's refs stay put).
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(roots, pool.map(_last_commit_time, roots), strict=True))


def _last_commit_time(root: Path) -> int | None:
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
