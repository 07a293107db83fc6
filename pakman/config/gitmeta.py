"""The git metadata a build may see (`build.git: true`), read from the repository's files.

pakman runs no git command in the checkout for this: its `.git` is the
author's (hooks, `core.fsmonitor`, aliases), so it is read as data. Read:
HEAD (followed through symbolic refs), the loose and packed tags, and where
the objects are. Refused: a `.git`, object folder or ref that is a symbolic link (it
could lead anywhere on the machine), files that are not regular (a FIFO
would block), ids and tag names that are not git's.

The build then gets a repository of its own (`write_build_repository`):
HEAD detached at the commit, the tags as packed refs, and the real objects
through `objects/info/alternates`, so `git rev-parse HEAD`, `git describe
--tags` and `git log` work, and `git config` writes only into the copy.
`index_build_repository` adds an index (the host's git, run on that
repository only) for an app at the top of its work tree.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pakman.fileio import read_regular

_ID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # sha1, or sha256
# A tag name as git allows it, conservatively: no spaces, controls, `..`, `~^:?*[\`.
_TAG = re.compile(r"[A-Za-z0-9._+@=,-]+(?:/[A-Za-z0-9._+@=,-]+)*")
_SMALL = 64 << 10  # HEAD, a ref, a .git file
_PACKED_LIMIT = 64 << 20  # packed-refs of a very large repository


class GitMetadataError(Exception):
    """The app's repository cannot give the build its git metadata (the message says why)."""


# The repository's own configuration may name programs (core.fsmonitor,
# filter drivers, hooks, gpg.program with log.showSignature, a promisor
# remote to fetch from): commands pakman runs on a checkout turn off each
# that a read could reach, and take no GIT_* variable from the caller.
SAFE_GIT = (
    "git",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "log.showSignature=false",
    "-c",
    "protocol.allow=never",
    "-c",
    "maintenance.auto=false",
    "-c",
    "gc.auto=0",
    "--no-pager",
)
GIT_TIMEOUT = 60.0  # seconds


def safe_git_environment() -> dict[str, str]:
    """The environment of a git command on a checkout (see SAFE_GIT)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_NO_LAZY_FETCH"] = "1"  # a partial clone's missing object is not fetched (git 2.44+)
    env["GIT_LITERAL_PATHSPECS"] = "1"  # a folder named `:(glob)x` is that folder
    return env


def run_git(
    folder: Path, *args: str, timeout: float = GIT_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    """`git ARGS` in `folder`, hardened (SAFE_GIT); raises OSError when git cannot start."""
    try:
        return subprocess.run(
            [*SAFE_GIT, *args],
            cwd=folder,
            env=safe_git_environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.SubprocessError as exc:
        raise OSError(f"git {args[0]}: {exc}") from None


@dataclass(frozen=True)
class Revision:
    """A commit of the repository whose work tree is at `top`, its tree written to `tree`.

    A build's graph compiled from `tree` takes what git says (versions,
    commit times, build.git's commit) at `commit`, for the folder of `top`
    that a folder of `tree` stands for.
    """

    top: Path
    commit: str
    tree: Path

    def real(self, folder: Path) -> Path:
        """The folder of the work tree that `folder` (in `tree`) stands for."""
        return self.top / folder.resolve().relative_to(self.tree.resolve())


def repository_top(folder: Path) -> Path:
    """The top of the work tree holding `folder`; GitMetadataError outside git."""
    return _repository(folder)[0]


@dataclass(frozen=True)
class GitMetadata:
    """What a build with `build.git: true` sees: the commit, the tags, and the objects' folder."""

    commit: str
    tags: tuple[tuple[str, str], ...]  # (name, object id), sorted by name
    objects: str  # the repository's object folder, absolute (in no key: a path of this machine)
    prefix: str = ""  # the app's folder in the work tree ("" at its top)

    def key(self) -> dict[str, object]:
        """What the build step's key holds of it: the commit and the tags, no path."""
        return {"commit": self.commit, "tags": [list(tag) for tag in self.tags]}


def read_git_metadata(root: Path) -> GitMetadata:
    """The git metadata of the repository holding `root`; GitMetadataError when there is none."""
    top, meta, common = _repository(root)
    prefix = root.resolve().relative_to(top).as_posix()
    return dataclasses.replace(_read(meta, common), prefix="" if prefix == "." else prefix)


def clear_cache() -> None:
    """Forget what was read (refs may have changed since)."""
    _read.cache_clear()


def _repository(root: Path) -> tuple[Path, Path, Path]:
    """The top of the checkout holding `root`, its git folder, and the common one (they differ in a worktree)."""
    root = root.resolve()
    for folder in (root, *root.parents):
        candidate = folder / ".git"
        try:
            mode = os.lstat(candidate).st_mode
        except OSError:
            continue
        if stat.S_ISLNK(mode):
            raise GitMetadataError(f"{candidate} is a symbolic link; pakman does not follow it")
        if stat.S_ISDIR(mode):
            meta = candidate
        elif stat.S_ISREG(mode):  # a worktree or submodule: "gitdir: <path>", as git follows it
            text = _text(candidate)
            if not text.startswith("gitdir:"):
                raise GitMetadataError(f"{candidate} is neither a folder nor a `gitdir:` file")
            meta = (folder / text.removeprefix("gitdir:").strip()).resolve()
        else:
            raise GitMetadataError(f"{candidate} is not a folder nor a file")
        common = meta
        if _exists(meta / "commondir"):
            common = (meta / _text(meta / "commondir")).resolve()
        return folder, meta, common
    raise GitMetadataError(f"{root} is not in a git repository (no .git in it or above it)")


@functools.cache
def _read(meta: Path, common: Path) -> GitMetadata:
    objects = common / "objects"
    try:
        mode = os.lstat(objects).st_mode
    except OSError:
        raise GitMetadataError(f"{objects}: the repository has no object folder") from None
    if not stat.S_ISDIR(mode):
        raise GitMetadataError(f"{objects} is not a folder (a symbolic link is refused)")
    packed = _packed_refs(common)
    commit = _resolve(meta, common, packed)
    tags = {
        name[len("refs/tags/") :]: oid
        for name, oid in packed.items()
        if name.startswith("refs/tags/") and _is_tag(name[len("refs/tags/") :])
    }
    tags.update(_loose_tags(common / "refs" / "tags"))
    return GitMetadata(commit, tuple(sorted(tags.items())), str(objects))


def _resolve(meta: Path, common: Path, packed: dict[str, str]) -> str:
    """The commit HEAD names, through at most a few symbolic refs."""
    text = _text(meta / "HEAD")
    for _ in range(5):
        if _ID.fullmatch(text):
            return text
        if not text.startswith("ref:"):
            break
        ref = text.removeprefix("ref:").strip()
        parts = ref.split("/")
        if parts[0] != "refs" or any(p in ("", ".", "..") for p in parts):
            raise GitMetadataError(f"{meta / 'HEAD'} names {ref!r}, which is not a ref")
        place = meta if parts[1:2] in (["bisect"], ["worktree"], ["rewritten"]) else common
        if _exists(place / ref):
            text = _text(place / ref)
        elif ref in packed:
            text = packed[ref]
        else:
            raise GitMetadataError(f"{meta.parent}: HEAD ({ref}) has no commit yet")
    raise GitMetadataError(f"{meta / 'HEAD'} does not lead to a commit id")


def _packed_refs(common: Path) -> dict[str, str]:
    """The packed refs: name -> object id (peeled `^` lines left out)."""
    path = common / "packed-refs"
    if not _exists(path):
        return {}
    refs: dict[str, str] = {}
    for line in _text(path, _PACKED_LIMIT).splitlines():
        oid, _, name = line.partition(" ")
        if _ID.fullmatch(oid) and name.startswith("refs/"):
            refs[name] = oid
    return refs


def _loose_tags(folder: Path) -> dict[str, str]:
    """The loose tags under refs/tags: regular files only, symbolic links not followed."""
    tags: dict[str, str] = {}
    for top, folders, files in os.walk(folder, followlinks=False):
        for file in files:
            path = Path(top, file)
            name = path.relative_to(folder).as_posix()
            if not _is_tag(name) or not _exists(path):
                continue
            oid = _text(path)
            if _ID.fullmatch(oid):
                tags[name] = oid
        folders.sort()
    return tags


def _is_tag(name: str) -> bool:
    return _TAG.fullmatch(name) is not None and ".." not in name and not name.endswith(".lock")


def _exists(path: Path) -> bool:
    """Whether `path` is a regular file, not through a symbolic link at its end."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _text(path: Path, limit: int = _SMALL) -> str:
    """A file of the repository's metadata: a regular file, not a link, and not absurdly long."""
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise GitMetadataError(f"{path} is a symbolic link; pakman does not follow it")
        raw = read_regular(path, limit)
    except OSError as exc:
        raise GitMetadataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise GitMetadataError(f"{path} is too large for git metadata")
    return raw.decode("utf-8", "replace").strip()


# Where the sandbox binds the repository's objects, read-only (a tmpfs: nothing in the root).
SANDBOX_OBJECTS = "/run/pakman/git-objects"


def write_build_repository(folder: Path, git: GitMetadata, objects: str) -> None:
    """Write `folder/.git`: HEAD detached at the commit, the tags, the objects at `objects` (alternates).

    Writes (`git config`, a commit) stay in the copy. The index is
    `index_build_repository`'s.
    """
    dot_git = folder / ".git"
    for sub in ("objects/info", "objects/pack", "refs/heads", "refs/tags"):
        (dot_git / sub).mkdir(parents=True, exist_ok=True)
    sha256 = len(git.commit) == 64
    config = (
        f"[core]\n\trepositoryformatversion = {1 if sha256 else 0}\n"
        "\tfilemode = true\n\tbare = false\n"
    )
    if sha256:
        config += "[extensions]\n\tobjectformat = sha256\n"
    (dot_git / "config").write_text(config)
    (dot_git / "HEAD").write_text(git.commit + "\n")
    (dot_git / "packed-refs").write_text("".join(f"{oid} refs/tags/{n}\n" for n, oid in git.tags))
    (dot_git / "objects" / "info" / "alternates").write_text(objects + "\n")


INDEX_TIMEOUT = 60.0  # seconds; a huge repository's tree, or objects on a slow disk


def index_build_repository(folder: Path, git: GitMetadata) -> bool:
    """Give the build's repository an index of its commit, refreshed against the copy's files.

    So `git status` and `git describe --dirty` (setuptools-scm, for one) see
    the copy as the commit plus what differs, not every file as new. The
    host's git runs on the build's own `.git` only (its config, no hooks, the
    real objects added for this run), never on the checkout's. False when
    git is missing or fails, or when the app is in a folder of the work tree
    (the copy holds only the app, not the commit's tree): the build then has
    no index.
    """
    if git.prefix:
        return False
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_ALTERNATE_OBJECT_DIRECTORIES"] = git.objects  # the sandbox's path is not here
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    base = ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"]
    base += ["--git-dir", str(folder / ".git"), "--work-tree", str(folder)]

    def run(*args: str, data: bytes = b"") -> bytes:
        done = subprocess.run(
            [*base, *args],
            cwd=folder,
            env=env,
            input=data,
            capture_output=True,
            timeout=INDEX_TIMEOUT,
            check=False,
        )
        # update-index --refresh exits 1 when files differ: the index is still right
        if done.returncode != 0 and args[:2] != ("update-index", "-q"):
            raise OSError(f"git {args[0]} failed")
        return done.stdout

    try:
        run("read-tree", git.commit)
        # What the copy leaves out (instellar.yml, .pakmanignore's) is as in a sparse
        # checkout: skip-worktree, so git does not count it as deleted.
        missing = [
            name
            for name in run("ls-files", "-z").split(b"\0")
            if name and not os.path.lexists(os.path.join(folder, os.fsdecode(name)))
        ]
        if missing:
            run(
                "update-index", "--skip-worktree", "-z", "--stdin", data=b"\0".join(missing) + b"\0"
            )
        run("update-index", "-q", "--refresh")
    except (OSError, subprocess.SubprocessError):
        (folder / ".git" / "index").unlink(missing_ok=True)
        return False
    return True
