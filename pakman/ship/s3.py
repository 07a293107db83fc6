"""Files to and from an S3-compatible store, through boto3: upload, list, delete.

`upload` sends (local file, name) pairs to a `Target` (bucket, key prefix,
endpoint, region, credentials) with a pool of threads, and skips a file the
store already holds with the same bytes: same size, and the same checksum —
the ETag where it is the MD5 of a single-part upload, else the `sha256` that
pakman stores in each object's metadata (or the object's ChecksumSHA256). So
a rerun after a failure sends only what is missing or different. Each request
is retried by botocore (standard mode: exponential backoff with jitter, on
throttling, 5xx and dropped connections), and each file as a whole a few
more times when its upload still fails, unless the failure is one no retry
mends (credentials, a missing bucket, access denied). It returns a summary
(uploaded, skipped, failed, each failure with its reason); it never raises
for a file that failed.

boto3 is imported only when a client is made, so nothing but `pakman push`
and `pakman publish` pays its import time. Credentials come from the target
or from boto3's usual chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_PROFILE and the shared files); the endpoint from the
target or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL. No message made here
contains a secret: errors carry the store's error code and message, never
the request's headers.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pakman.errors import PakmanError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DEFAULT_CONCURRENCY = 4
REQUEST_ATTEMPTS = 4  # botocore's, per HTTP request (the first try included)
FILE_ATTEMPTS = 3  # ours, per file, when botocore's attempts were not enough
BACKOFF = 0.5  # seconds before the second whole-file attempt; doubled each time
# Files up to this size go in one PUT (their ETag is then their MD5); larger
# ones in parts of MULTIPART_CHUNK bytes.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024
REPLACED = "replaced other bytes"  # an upload's reason when the store held other bytes there
SHA256_METADATA = "sha256"  # x-amz-meta-sha256: the hex SHA-256 of the whole file
_READ_SIZE = 1024 * 1024

# Error codes that another attempt cannot mend: stop, and do not start the files left.
FATAL_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "InvalidToken",
        "ExpiredToken",
        "SignatureDoesNotMatch",
        "NoSuchBucket",
        "InvalidBucketName",
        "AuthorizationHeaderMalformed",
        "InvalidClientTokenId",
        "403",
        "NoCredentials",
    }
)


class S3Error(PakmanError):
    """The store could not be reached or refused a request (listing, deleting)."""

    exit_code = 1


@dataclass(frozen=True)
class Credentials:
    """An access key; None in a Target means boto3's usual chain (environment, profiles)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Target:
    """Where files go: a bucket, a key prefix in it, and how to reach and sign for it."""

    bucket: str
    prefix: str = ""  # without leading or trailing "/"; keys are `<prefix>/<name>`
    endpoint_url: str | None = None  # None: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS
    region: str | None = None  # None: AWS_REGION, AWS_DEFAULT_REGION, the profile's
    credentials: Credentials | None = None
    profile: str | None = None  # a profile of the shared AWS files (else AWS_PROFILE)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        credentials: Credentials | None = None,
        profile: str | None = None,
    ) -> Target:
        """A target from `s3://bucket/prefix` (the prefix may be empty); ValueError if not one."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"{url!r} is not an S3 URL: give s3://BUCKET or s3://BUCKET/PREFIX")
        if parts.query or parts.fragment or "@" in parts.netloc:
            raise ValueError(f"{url!r}: an S3 URL is s3://BUCKET/PREFIX, nothing more")
        prefix = "/".join(p for p in parts.path.split("/") if p)
        if any(p in (".", "..") for p in prefix.split("/")):
            raise ValueError(f"{url!r}: the prefix must not hold '.' or '..' segments")
        return cls(parts.netloc, prefix, endpoint_url, region, credentials, profile)

    def key(self, name: str) -> str:
        """The object key of `name` (a path relative to the prefix)."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def name(self, key: str) -> str:
        """The inverse of `key`."""
        return key[len(self.prefix) + 1 :] if self.prefix else key

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def endpoint(self) -> str | None:
        """The endpoint in use: the target's, else the one the environment names, else None (AWS)."""
        return (
            self.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )


@dataclass(frozen=True)
class RemoteObject:
    """What a listing says of an object."""

    size: int
    etag: str  # without quotes


Status = Literal["uploaded", "skipped", "failed"]


@dataclass(frozen=True)
class Outcome:
    """What became of one file."""

    name: str  # relative to the target's prefix
    path: Path
    status: Status
    size: int
    attempts: int = 0  # whole-file upload attempts made
    reason: str = ""  # why it failed, or why it was skipped or replaced


@dataclass(frozen=True)
class Progress:
    """One event of an upload, given to the progress callback (from worker threads)."""

    event: Literal["started", "sent", "retrying", "uploaded", "skipped", "failed"]
    name: str
    size: int
    sent: int = 0  # bytes of this file newly sent ("sent" events)
    reason: str = ""


ProgressCallback = Callable[[Progress], None]


@dataclass
class UploadSummary:
    """Every file's outcome, in the order given."""

    outcomes: list[Outcome]

    def _with(self, status: Status) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def uploaded(self) -> list[Outcome]:
        return self._with("uploaded")

    @property
    def skipped(self) -> list[Outcome]:
        return self._with("skipped")

    @property
    def failed(self) -> list[Outcome]:
        return self._with("failed")

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def bytes_uploaded(self) -> int:
        return sum(o.size for o in self.uploaded)

    def line(self) -> str:
        """`3 uploaded (1.2 MB), 5 skipped (unchanged), 0 failed`."""
        return (
            f"{len(self.uploaded)} uploaded ({format_size(self.bytes_uploaded)}), "
            f"{len(self.skipped)} skipped (unchanged), {len(self.failed)} failed"
        )


def format_size(size: int) -> str:
    """1234567 -> '1.2 MB' (decimal units, as apk and most tools print them)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def client(
    target: Target,
    concurrency: int = DEFAULT_CONCURRENCY,
    request_attempts: int = REQUEST_ATTEMPTS,
) -> S3Client:
    """A boto3 S3 client for `target` (thread-safe: one serves every worker)."""
    import boto3.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    credentials = target.credentials
    endpoint = target.endpoint()
    config = Config(
        retries={"total_max_attempts": request_attempts, "mode": "standard"},
        max_pool_connections=max(10, 2 * concurrency),
        connect_timeout=10,
        read_timeout=60,
        # Buckets of S3-compatible servers are found by path (http://host/bucket/key):
        # they seldom have the DNS names virtual hosting needs.
        s3={"addressing_style": "path"} if endpoint else {},
    )
    try:
        session = boto3.session.Session(
            aws_access_key_id=credentials.access_key_id if credentials else None,
            aws_secret_access_key=credentials.secret_access_key if credentials else None,
            aws_session_token=credentials.session_token if credentials else None,
            region_name=target.region,
            profile_name=target.profile,
        )
        # An S3-compatible server (an endpoint other than AWS) signs for any region;
        # boto3 needs one to sign with.
        region = target.region or session.region_name or ("us-east-1" if endpoint else None)
        return session.client("s3", endpoint_url=endpoint, region_name=region, config=config)
    except BotoCoreError as exc:  # a profile not found, a shared file unreadable
        raise S3Error(f"cannot reach {target.url}: {describe_error(exc)}") from None
    except ValueError as exc:  # botocore's word for an endpoint that is no URL
        raise S3Error(f"cannot reach {target.url} at {endpoint!r}: {exc}") from None


def _cause(exc: BaseException) -> BaseException:
    """The store's answer behind boto3's S3UploadFailedError (which only says it in words)."""
    from boto3.exceptions import S3UploadFailedError

    if isinstance(exc, S3UploadFailedError) and exc.__context__ is not None:
        return exc.__context__
    return exc


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed request: the store's code and message, no secrets."""
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

    exc = _cause(exc)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = error.get("Message") or ""
        head = f"{code} (HTTP {status})" if status and str(status) != code else code
        return f"{head}: {message}" if message else head or str(exc)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return (
            "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE, or the shared AWS files)"
        )
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def error_code(exc: BaseException) -> str:
    """The store's error code of a failed request ('' when it is not the store's answer)."""
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

    exc = _cause(exc)
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return "NoCredentials"
    return ""


def _fatal(exc: BaseException) -> bool:
    return error_code(exc) in FATAL_CODES


def list_objects(
    target: Target, under: str = "", s3: S3Client | None = None
) -> dict[str, RemoteObject]:
    """The objects whose names (relative to the prefix) start with `under`: by name."""
    s3 = s3 or client(target)
    found: dict[str, RemoteObject] = {}
    prefix = target.key(under) if under else (f"{target.prefix}/" if target.prefix else "")
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=target.bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                key = item.get("Key", "")
                name = target.name(key)
                found[name] = RemoteObject(item.get("Size", 0), item.get("ETag", "").strip('"'))
    except Exception as exc:
        if _is_request_error(exc):
            raise S3Error(f"cannot list {target.url}/{under}: {describe_error(exc)}") from None
        raise
    return found


def delete_objects(
    target: Target, names: Sequence[str], s3: S3Client | None = None
) -> dict[str, str]:
    """Delete these objects (names relative to the prefix); returns the reason for each not deleted."""
    s3 = s3 or client(target)
    failed: dict[str, str] = {}
    for start in range(0, len(names), 1000):  # DeleteObjects takes at most 1000 keys
        batch = list(names[start : start + 1000])
        try:
            answer = s3.delete_objects(
                Bucket=target.bucket,
                Delete={"Objects": [{"Key": target.key(n)} for n in batch], "Quiet": True},
            )
        except Exception as exc:
            if not _is_request_error(exc):
                raise
            failed.update(dict.fromkeys(batch, describe_error(exc)))
            continue
        for error in answer.get("Errors", []):
            name = target.name(error.get("Key", ""))
            failed[name] = f"{error.get('Code', '')}: {error.get('Message', '')}".strip(": ")
    return failed


def _is_request_error(exc: BaseException) -> bool:
    """A request that failed (the store's answer, the network, credentials): not a bug of ours."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (BotoCoreError, ClientError, Boto3Error))


@dataclass(frozen=True)
class _Digests:
    size: int
    sha256: bytes
    md5: str  # hex

    @property
    def sha256_hex(self) -> str:
        return self.sha256.hex()

    @property
    def sha256_b64(self) -> str:
        return base64.b64encode(self.sha256).decode()


def _digests(path: Path) -> _Digests:
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with path.open("rb") as handle:
        while chunk := handle.read(_READ_SIZE):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return _Digests(size, sha256.digest(), md5.hexdigest())


Stored = Literal["absent", "same", "different", "unknown"]


def _stored(
    s3: S3Client,
    target: Target,
    name: str,
    digests: _Digests,
    listing: dict[str, RemoteObject] | None,
) -> Stored:
    """What the store holds under `name`: nothing, these bytes, other bytes, or unknown.

    From the listing when it tells (absent, another size, the ETag of a
    single-part upload equal to the MD5), else from the object's own record
    (HEAD): its size, then its sha256 metadata, its ChecksumSHA256, its ETag.
    """
    from botocore.exceptions import ClientError

    if listing is not None:
        known = listing.get(name)
        if known is None:
            return "absent"
        if known.size != digests.size:
            return "different"
        if known.etag == digests.md5:
            return "same"
    try:
        head = s3.head_object(Bucket=target.bucket, Key=target.key(name), ChecksumMode="ENABLED")
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404 or error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return "absent"
        # Credentials may allow writing without reading (403): upload, and let the PUT tell.
        return "unknown"
    if head.get("ContentLength") != digests.size:
        return "different"
    stored = head.get("Metadata", {}).get(SHA256_METADATA)
    checksum = head.get("ChecksumSHA256", "")
    if stored:
        same = stored == digests.sha256_hex
    elif checksum and "-" not in checksum:  # a composite (multipart) checksum is no file's
        same = checksum == digests.sha256_b64
    else:
        same = head.get("ETag", "").strip('"') == digests.md5
    return "same" if same else "different"


class _Run:
    """One `upload` call's shared state: the client, the callback, the stop flag."""

    def __init__(
        self,
        s3: S3Client,
        target: Target,
        progress: ProgressCallback | None,
        known: dict[str, RemoteObject] | None,
        attempts: int,
        backoff: float,
        content_type: Callable[[str], dict[str, str]],
    ) -> None:
        self.s3 = s3
        self.target = target
        self.progress = progress
        self.known = known
        self.attempts = attempts
        self.backoff = backoff
        self.content_type = content_type
        self.stop_reason: str | None = None
        self.lock = threading.Lock()

    def tell(self, event: Progress) -> None:
        if self.progress is not None:
            self.progress(event)

    def one(self, path: Path, name: str) -> Outcome:
        if self.stop_reason is not None:
            return self.finish(Outcome(name, path, "failed", 0, 0, self.stop_reason))
        try:
            digests = _digests(path)
        except OSError as exc:
            return self.finish(Outcome(name, path, "failed", 0, 0, describe_error(exc)))
        try:
            stored = _stored(self.s3, self.target, name, digests, self.known)
        except Exception as exc:
            if not _is_request_error(exc):
                raise
            stored = "unknown"
        if stored == "same":
            return self.finish(Outcome(name, path, "skipped", digests.size, 0, "unchanged"))
        return self.send(path, name, digests, REPLACED if stored == "different" else "")

    def send(self, path: Path, name: str, digests: _Digests, note: str) -> Outcome:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_CHUNK,
            use_threads=False,  # the files are uploaded in parallel, each by one thread
        )
        extra = {
            "Metadata": {SHA256_METADATA: digests.sha256_hex},
            "ChecksumAlgorithm": "SHA256",
            **self.content_type(name),
        }
        self.tell(Progress("started", name, digests.size))
        attempt = 0
        while True:
            attempt += 1
            sent = 0

            def count(amount: int, name: str = name) -> None:
                nonlocal sent
                sent += amount
                self.tell(Progress("sent", name, digests.size, amount))

            try:
                self.s3.upload_file(
                    str(path),
                    self.target.bucket,
                    self.target.key(name),
                    ExtraArgs=extra,
                    Callback=count,
                    Config=config,
                )
            except Exception as exc:
                if not _is_request_error(exc) and not isinstance(exc, OSError):
                    raise
                reason = describe_error(exc)
                # What was counted of this attempt is sent again by the next.
                if sent:
                    self.tell(Progress("sent", name, digests.size, -sent))
                if _fatal(exc):
                    with self.lock:
                        if self.stop_reason is None:
                            self.stop_reason = f"not attempted: {name} failed with {reason}"
                    return self.finish(Outcome(name, path, "failed", digests.size, attempt, reason))
                if attempt >= self.attempts or self.stop_reason is not None:
                    return self.finish(Outcome(name, path, "failed", digests.size, attempt, reason))
                self.tell(Progress("retrying", name, digests.size, reason=reason))
                delay = self.backoff * 2 ** (attempt - 1)
                time.sleep(delay * (0.5 + random.random() / 2))
                continue
            return self.finish(Outcome(name, path, "uploaded", digests.size, attempt, note))

    def finish(self, outcome: Outcome) -> Outcome:
        self.tell(Progress(outcome.status, outcome.name, outcome.size, reason=outcome.reason))
        return outcome


def unchanged(
    target: Target,
    files: Iterable[tuple[Path, str]],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    known: dict[str, RemoteObject] | None = None,
    s3: S3Client | None = None,
) -> list[bool]:
    """For each (path, name): whether the store holds these bytes already (what `upload` skips).

    What cannot be told (a HEAD refused) counts as changed, as `upload` counts it.
    """
    s3 = s3 or client(target, concurrency)

    def check(pair: tuple[Path, str]) -> bool:
        path, name = pair
        try:
            return _stored(s3, target, name, _digests(path), known) == "same"
        except Exception as exc:
            if not _is_request_error(exc):
                raise
            return False

    pairs = [(Path(path), name) for path, name in files]
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(check, pairs))


def upload(
    target: Target,
    files: Iterable[tuple[Path, str]],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: ProgressCallback | None = None,
    known: dict[str, RemoteObject] | None = None,
    attempts: int = FILE_ATTEMPTS,
    backoff: float = BACKOFF,
    content_type: Callable[[str], dict[str, str]] | None = None,
    s3: S3Client | None = None,
) -> UploadSummary:
    """Upload (local path, name) pairs to `target`, `concurrency` at a time; never raises for a file.

    A file the store holds with the same size and checksum is skipped.
    `known` is a listing of the target (`list_objects`), when the caller has
    one: a name not in it is uploaded without asking the store, one whose
    ETag is the file's MD5 is skipped without asking. `content_type(name)`
    gives extra headers (ContentType, CacheControl) for a name. Once a file
    fails in a way no retry mends (credentials, access, the bucket), the
    files not yet started are not attempted and fail with that reason.
    """
    pairs = [(Path(path), name) for path, name in files]
    run = _Run(
        s3 or client(target, concurrency),
        target,
        progress,
        known,
        attempts,
        backoff,
        content_type or (lambda name: {}),
    )
    if concurrency <= 1 or len(pairs) <= 1:
        return UploadSummary([run.one(path, name) for path, name in pairs])
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="pakman-upload") as pool:
        # Interrupted (Ctrl-C, or SIGTERM, which the CLI turns into it), map's iterator
        # cancels the files not started: only those under way finish.
        outcomes = list(pool.map(lambda pair: run.one(*pair), pairs))
    return UploadSummary(outcomes)
