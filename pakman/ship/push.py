"""`pakman push`: upload a built repository to the Instellar platform and register the deployment.

The endpoints, variables and order are the original's (see
pakman.ship.instellar). The variables and instellar.yml are checked before
the first request, every missing variable in one error, and the packages
and the archive before the storage credential is asked for, so a push that
cannot succeed registers nothing; the uploads all finish before the
deployment is created, so a failed upload leaves no deployment naming files
that are not there.
"""

from __future__ import annotations

import os
import re
import tempfile
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pakman.config.model import AppConfig
from pakman.config.rules import slugify
from pakman.errors import ConfigError, PakmanError
from pakman.ship.instellar import (
    DEFAULT_ENDPOINT,
    DEFAULT_TIMEOUT,
    InstellarClient,
    Secret,
    Storage,
)
from pakman.workspace.fingerprint import file_sha256

if TYPE_CHECKING:
    from pakman.ship.s3 import Progress

DEFAULT_CONCURRENCY = 2
# The variables push reads, with what each is for: `pakman push --help` and the README list them.
VARIABLES: tuple[tuple[str, str], ...] = (
    ("INSTELLAR_ENDPOINT", f"the platform's address (default {DEFAULT_ENDPOINT})"),
    ("INSTELLAR_AUTH_TOKEN", "the automation token, exchanged for a session token (required)"),
    ("INSTELLAR_PACKAGE_TOKEN", "the app's package token, sent with every request (required)"),
    ("WORKFLOW_SHA, GITHUB_SHA", "the commit being deployed; WORKFLOW_SHA first (required)"),
    (
        "WORKFLOW_REF, GITHUB_REF",
        "the git ref being deployed, e.g. refs/heads/main; WORKFLOW_REF first (required)",
    ),
    ("GITHUB_REPOSITORY", "owner/name: the storage folder deployments/<owner>/<name>/ (required)"),
    ("GITHUB_WORKSPACE", "the checkout holding instellar.yml (default: the current folder)"),
    ("HOME", "where the original's packages folder and archive are (~/packages, ~/packages.zip)"),
)
# What a commit id may look like: it is a URL path segment and part of storage keys.
_SHA = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
# The namespace of the archive ids pakman makes (any fixed UUID would do: see archive_upload).
_ARCHIVE_NAMESPACE = uuid.UUID("6c1ad5a1-1f5e-4ad6-9a53-7e2b8c0f64a1")


@dataclass(frozen=True)
class Upload:
    """One file to upload, and its key in the bucket."""

    path: Path
    key: str


class Uploader(Protocol):
    """Puts files into the platform's bucket; raises a PakmanError naming each file that failed."""

    def __call__(
        self, storage: Storage, files: Sequence[Upload], concurrency: int, report: Report
    ) -> None: ...


Report = Callable[[str], None]


class UploadFailed(PakmanError):
    """Some files did not reach the platform's bucket (each is named, with its reason)."""

    exit_code = 1


def upload_to_storage(
    storage: Storage,
    files: Sequence[Upload],
    concurrency: int,
    report: Report,
    progress: Callable[[Progress], None] | None = None,
) -> None:
    """Upload with pakman.ship.s3 to the platform's bucket and credential; `progress` sees each event.

    A file the bucket holds with the same size and checksum is skipped, so a
    push run again after a failure sends only what is missing.
    """
    from pakman.ship import s3

    target = s3.Target(
        bucket=storage.bucket,
        endpoint_url=storage.endpoint_url,
        region=storage.region or None,
        credentials=s3.Credentials(
            storage.access_key_id.reveal(), storage.secret_access_key.reveal()
        ),
    )
    summary = s3.upload(
        target, [(f.path, f.key) for f in files], concurrency=concurrency, progress=progress
    )
    report(f"uploads to {storage.bucket} at {storage.endpoint_url}: {summary.line()}")
    if not summary.ok:
        failed = "".join(f"\n  {o.name}: {o.reason}" for o in summary.failed)
        raise UploadFailed(
            f"upload: {len(summary.failed)} of {len(files)} files failed, "
            f"no deployment was created:{failed}"
        )


@dataclass(frozen=True)
class PushRequest:
    """Everything a push needs, read from the environment, the options and the disk."""

    endpoint: str
    auth_token: Secret
    package_token: Secret
    sha: str
    ref: str
    organization: str
    name: str
    config: AppConfig
    packages: Path
    archive: Path | None  # None: push makes one from the packages (see make_archive)
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = DEFAULT_TIMEOUT

    @property
    def branch(self) -> str:
        """The branch of the ref's value (`refs/heads/main` -> `main`); other refs as they are."""
        return self.ref.removeprefix("refs/heads/")

    @property
    def stack(self) -> str | None:
        """`stack` as instellar.yml writes it; None when it does not (then none is sent)."""
        return self.config.stack if "stack" in self.config.positions else None

    @property
    def configuration(self) -> dict[str, Any] | None:
        """The kits configuration's payload, or None when instellar.yml has no list of kits."""
        from pakman.config.model import thaw

        platform = thaw(self.config.platform)
        if not isinstance(platform.get("kits"), list):
            return None
        # The original adds sizes, plans and page when present (an empty list included).
        return {
            key: platform[key]
            for key in ("kits", "sizes", "plans", "page")
            if platform.get(key) not in (None, False)
        }


@dataclass
class PushOutcome:
    """What a push did."""

    copied: bool = False  # the commit's deployment existed: nothing was uploaded
    # The keys given to the uploader (each uploaded, or skipped as already stored).
    files: list[str] = field(default_factory=list)
    deployment_id: str = ""
    deployment_created: bool = False
    configuration: str = "none"  # "created", "existed" or "none" (no kits)


def read_request(
    env: Mapping[str, str],
    *,
    config: Path | None = None,
    packages: Path | None = None,
    archive: Path | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
) -> PushRequest:
    """Read the variables and instellar.yml; raise ConfigError naming every problem at once."""
    from pakman.config.schema import load_app

    problems: list[str] = []

    def variable(*names: str) -> str:
        # An empty variable counts as unset (the original took an empty WORKFLOW_SHA).
        for name in names:
            if env.get(name):
                return env[name]
        problems.append(f"{' or '.join(names)} is not set")
        return ""

    auth_token = variable("INSTELLAR_AUTH_TOKEN")
    package_token = variable("INSTELLAR_PACKAGE_TOKEN")
    sha = variable("WORKFLOW_SHA", "GITHUB_SHA")
    if sha and not _SHA.match(sha):
        problems.append(f"the commit {sha!r} is not a commit id (letters, digits, '.', '_', '-')")
    ref = variable("WORKFLOW_REF", "GITHUB_REF")
    repository = variable("GITHUB_REPOSITORY")
    organization = name = ""
    if repository:
        owner, _, repo = repository.partition("/")
        organization, name = slugify(owner), slugify(repo)
        if not organization or not name or "/" in repo:
            problems.append(f"GITHUB_REPOSITORY {repository!r} is not owner/name")
    endpoint = env.get("INSTELLAR_ENDPOINT") or DEFAULT_ENDPOINT
    address = urllib.parse.urlsplit(endpoint)
    if address.scheme not in ("http", "https") or not address.hostname:
        problems.append("INSTELLAR_ENDPOINT is not an http:// or https:// address")
    elif "@" in address.netloc:
        # Not echoed: what is before the @ may be a password.
        problems.append("INSTELLAR_ENDPOINT holds a user or password; give the address alone")
    home = env.get("HOME", "")
    if archive is not None and not archive.is_absolute() and not home:
        problems.append("HOME is not set (a relative --archive is in HOME, as in the original)")
    if concurrency < 1:
        problems.append(f"the concurrency must be 1 or more, not {concurrency}")
    if timeout <= 0:
        problems.append(f"the timeout must be more than 0 seconds, not {timeout:g}")
    if problems:
        raise ConfigError("cannot push: " + "; ".join(problems))
    workspace = Path(env.get("GITHUB_WORKSPACE") or ".")
    app, _warnings = load_app(config if config is not None else workspace / "instellar.yml")
    if archive is not None:
        archive = Path(home) / archive  # like the original's, a relative archive is in HOME
    elif home and (Path(home) / "packages.zip").is_file():
        archive = Path(home) / "packages.zip"
    return PushRequest(
        endpoint=endpoint,
        auth_token=Secret(auth_token),
        package_token=Secret(package_token),
        sha=sha,
        ref=ref,
        organization=organization,
        name=name,
        config=app,
        packages=packages if packages is not None else default_packages(home, workspace),
        archive=archive,
        concurrency=concurrency,
        timeout=timeout,
    )


def default_packages(home: str, workspace: Path) -> Path:
    """`$HOME/packages` (the original's, abuild's) when it exists, else the workspace's repository.

    So a workflow that gathers packages in ~/packages as the original's does
    pushes those, and one that ran `pakman build` pushes `.pakman/repo`.
    """
    if home and (Path(home) / "packages").is_dir():
        return Path(home) / "packages"
    from pakman.workspace.layout import find_workspace

    return find_workspace(workspace) / ".pakman" / "repo"


def package_files(request: PushRequest) -> list[Upload]:
    """Every file of the packages folder, keyed `deployments/<org>/<name>/<sha>/<folder>/<file>`.

    `<folder>/<file>` are the file's last two path parts, as the original
    keys them: `<arch>/<file>` for a pakman repository (`REPO/<arch>/`) and for
    abuild's `~/packages/<repo>/<arch>/`. Hidden names are skipped: pakman's
    `.publications/` (what `REPO/<arch>` links to) and abuild's lock files.
    """
    root = request.packages
    if not root.is_dir():
        raise ConfigError(
            f"cannot push: {root} is not a folder of packages "
            f"(build into it with `pakman build --repo {root}`, or give --packages)"
        )
    prefix = f"deployments/{request.organization}/{request.name}/{request.sha}"
    found: dict[str, Path] = {}
    seen: set[Path] = set()
    for folder, folders, files in os.walk(root, followlinks=True):
        real = Path(folder).resolve()
        if real in seen:  # a link back up the tree
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for file in sorted(files):
            path = Path(folder, file)
            if file.startswith(".") or not path.is_file():
                continue
            key = f"{prefix}/{Path(folder).name}/{file}"
            if key in found:
                raise ConfigError(
                    f"cannot push: {found[key]} and {path} would both be uploaded as {key}"
                )
            found[key] = path
    if not found:
        raise ConfigError(
            f"cannot push: no packages in {root} (build into it with `pakman build --repo {root}`)"
        )
    return [Upload(path, key) for key, path in sorted(found.items())]


def archive_upload(archive: Path) -> Upload:
    """The archive, keyed `archives/<uuid>/<file name>` like the original.

    The original draws a random UUID; this one is made from the archive's
    SHA-256, so a push run again after a failure finds the archive it uploaded.
    """
    try:
        digest = file_sha256(archive)
    except OSError as exc:
        raise ConfigError(
            f"cannot push: cannot read the archive {archive}: {exc.strerror or exc} "
            "(give the zip of the packages with --archive, or none: pakman then makes one)"
        ) from None
    archive_id = uuid.uuid5(_ARCHIVE_NAMESPACE, digest)
    return Upload(archive, f"archives/{archive_id}/{archive.name}")


def make_archive(files: Sequence[Upload], folder: Path) -> Path:
    """`folder/packages.zip`: the packages as `packages/<arch>/<file>`, the same bytes every time.

    The layout of the original's test archive (test/fixtures/packages.zip,
    `packages/...`). Entries are sorted, dated 1980-01-01, mode 0644, and
    stored uncompressed (packages and indexes are gzip already), so the same
    packages give the same archive, and the same key (see archive_upload).
    """
    import zipfile

    path = folder / "packages.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for upload in sorted(files, key=lambda f: f.key):
            arch, file = upload.key.split("/")[-2:]
            entry = zipfile.ZipInfo(f"packages/{arch}/{file}", (1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o100644 << 16
            entry.create_system = 3  # unix, so the mode is read
            with upload.path.open("rb") as source, archive.open(entry, "w") as target:
                while block := source.read(1 << 20):
                    target.write(block)
    return path


def push(
    request: PushRequest,
    upload: Uploader,
    report: Report,
    client: InstellarClient | None = None,
) -> PushOutcome:
    """Push the packages and register the deployment, in the original's order."""
    if client is None:
        client = InstellarClient(
            request.endpoint, request.auth_token, request.package_token, timeout=request.timeout
        )
    outcome = PushOutcome()
    report(
        f"pushing {request.organization}/{request.name} at {request.sha} "
        f"(branch {request.branch}) to {request.endpoint}"
    )
    client.authenticate()
    existing = client.get_deployment(request.sha)
    if existing is not None and existing.archive_path:
        outcome.copied = True
        archive_path = existing.archive_path
        report(f"the deployment of {request.sha} exists: copying it (archive {archive_path})")
    else:
        # Local files first: a missing archive stops the push before storage is asked for.
        files = package_files(request)
        report(f"{len(files)} files in {request.packages}")
        with tempfile.TemporaryDirectory(prefix="pakman-push-") as scratch:
            if request.archive is None:
                made = make_archive(files, Path(scratch))
                archive = archive_upload(made)
                report(f"no --archive and no $HOME/packages.zip: made {archive.key} of them")
            else:
                archive = archive_upload(request.archive)
            storage = client.get_storage()
            upload(storage, [*files, archive], request.concurrency, report)
        outcome.files = [f.key for f in (*files, archive)]
        archive_path = archive.key
    created, deployment = client.create_deployment(
        ref=request.ref, sha=request.sha, archive_path=archive_path, stack=request.stack
    )
    outcome.deployment_id = deployment.id
    outcome.deployment_created = created
    report(f"deployment {deployment.id} " + ("created" if created else "already existed"))
    payload = request.configuration
    if payload is None:
        report("no kits in instellar.yml: no configuration posted")
        return outcome
    configured = client.create_configuration(deployment.id, payload)
    outcome.configuration = "created" if configured else "existed"
    report(
        "configuration "
        + ("created" if configured else "already existed")
        + f" ({', '.join(payload)})"
    )
    return outcome
