"""`pakman publish URL`: the signed repository to an S3 bucket, as apk reads it over HTTP."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pakman.cli import EXIT_FAILED, EXIT_OK
from pakman.cli.options import at_least, progress_argument, trust_arguments

if TYPE_CHECKING:
    from pakman.ship.publish import Plan, Publication
    from pakman.ship.s3 import Target


def _s3_url(text: str) -> str:
    from pakman.ship.s3 import Target

    try:
        Target.from_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _endpoint(text: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return text


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    from pakman.ship.s3 import DEFAULT_CONCURRENCY

    publish = commands.add_parser(
        name,
        help=summary,
        description="Publish the signed repository (.pakman/repo, or --repository) to an "
        "S3-compatible bucket, as a repository apk can use over HTTP: <prefix>/<arch>/"
        "APKINDEX.tar.gz, the packages beside it, and the public key that signed the "
        "indexes at <prefix>/<keyname>. The repository is verified first (as `pakman "
        "verify` does) and refused if any file fails. Then, each step only once the one "
        "before succeeded: the packages, then each index, then the deletion of the "
        "packages the new indexes no longer list; so readers always find every package "
        "of the index they read. Files the bucket already holds with the same size and "
        "checksum are skipped, so a rerun sends only what is missing or different. "
        "Credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "
        "AWS_SESSION_TOKEN, or a profile (AWS_PROFILE, --profile), as boto3 reads them; "
        "the endpoint from --endpoint-url, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL "
        "(default: AWS). Exit 0 when all was published, 1 when a file failed (each named), "
        "2 for bad usage, 3 when the repository is refused.",
    )
    publish.add_argument(
        "url",
        type=_s3_url,
        metavar="URL",
        help="where to publish: s3://BUCKET or s3://BUCKET/PREFIX",
    )
    publish.add_argument(
        "--repository",
        metavar="DIR",
        help="the repository folder to publish (default: the workspace's .pakman/repo)",
    )
    publish.add_argument(
        "--endpoint-url",
        type=_endpoint,
        metavar="URL",
        help="the S3 endpoint, e.g. https://minio.example.com "
        "(default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS)",
    )
    publish.add_argument(
        "--region", metavar="NAME", help="the bucket's region (default: AWS_REGION, the profile's)"
    )
    publish.add_argument(
        "--profile", metavar="NAME", help="a profile of the shared AWS files (default: AWS_PROFILE)"
    )
    publish.add_argument(
        "-j",
        "--concurrency",
        type=at_least(1),
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"upload N files at a time (default {DEFAULT_CONCURRENCY})",
    )
    publish.add_argument(
        "-n",
        "--dry-run",
        action="store_true",
        help="print what would be uploaded, skipped and deleted; change nothing",
    )
    publish.add_argument(
        "--no-delete",
        dest="delete",
        action="store_false",
        help="keep the packages the new indexes no longer list",
    )
    trust_arguments(publish, purpose=" to verify with")
    progress_argument(publish)
    publish.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman publish`; return its exit code."""
    from pakman.cli.verify import trusted_keys
    from pakman.ship import s3
    from pakman.ship.publish import plan, read_repository
    from pakman.workspace.layout import find_workspace

    root = Path(args.repository) if args.repository else find_workspace() / ".pakman" / "repo"
    keys, sources = trusted_keys(args)
    repository = read_repository(root, keys, sources)
    shown = os.path.relpath(root) if root.is_absolute() else str(root)
    packages = sum(len(a.packages) for a in repository.arches)
    sys.stderr.write(
        f"pakman: verified {shown}: {len(repository.arches)} index(es) "
        f"({', '.join(a.arch for a in repository.arches)}), {packages} package(s)\n"
    )
    target = s3.Target.from_url(
        args.url, endpoint_url=args.endpoint_url, region=args.region, profile=args.profile
    )
    client = s3.client(target, args.concurrency)
    remote = s3.list_objects(target, s3=client)
    publication = plan(repository, remote)
    if args.dry_run:
        return _dry_run(publication, target, args, client)
    from pakman.cli.progress import TransferProgress
    from pakman.ship.publish import publish

    files = [*publication.packages, *publication.indexes]
    progress = TransferProgress(
        sys.stderr,
        len(files),
        sum(path.stat().st_size for path, _ in files),
        bar=None if args.progress == "auto" else args.progress == "bar",
    )
    try:
        result = publish(
            publication,
            target,
            concurrency=args.concurrency,
            progress=progress,
            delete=args.delete,
            s3_client=client,
        )
    finally:
        progress.close()
    return _report(result, publication, target, shown)


def _dry_run(publication: Plan, target: Target, args: argparse.Namespace, client: Any) -> int:
    from pakman.ship import s3

    files = [*publication.packages, *publication.indexes]
    same = s3.unchanged(
        target, files, concurrency=args.concurrency, known=dict(publication.remote), s3=client
    )
    size = 0
    for (path, name), unchanged in zip(files, same, strict=True):
        if unchanged:
            print(f"skip   {name} (unchanged)")
        else:
            size += path.stat().st_size
            print(f"upload {name} ({s3.format_size(path.stat().st_size)})")
    deletions = publication.deletions if args.delete else ()
    for name in deletions:
        print(f"delete {name}")
    sending = len(same) - sum(same)
    print(
        f"dry run, nothing changed: would upload {sending} file(s) ({s3.format_size(size)}), "
        f"skip {sum(same)}, delete {len(deletions)} in {target.url}"
    )
    return EXIT_OK


def _report(result: Publication, publication: Plan, target: Target, shown: str) -> int:
    from pakman.ship import s3

    failed = result.packages.failed + (result.indexes.failed if result.indexes else [])
    for outcome in failed:
        sys.stderr.write(f"pakman: failed: {outcome.name}: {outcome.reason}\n")
    for name, reason in sorted(result.not_deleted.items()):
        sys.stderr.write(f"pakman: not deleted: {name}: {reason}\n")
    if not result.packages.ok:
        sys.stderr.write(
            f"pakman: {len(result.packages.failed)} file(s) not uploaded; no index was "
            f"uploaded, so {target.url} still serves the repository it served before\n"
        )
        return EXIT_FAILED
    indexes = result.indexes or s3.UploadSummary([])
    if not indexes.ok:
        sys.stderr.write(
            f"pakman: {len(indexes.failed)} index(es) not uploaded; nothing was deleted: "
            f"each architecture serves its previous index or its new one, with their packages\n"
        )
        return EXIT_FAILED
    for outcome in result.packages.uploaded:
        if outcome.reason == s3.REPLACED and outcome.name.endswith(".apk"):
            sys.stderr.write(
                f"pakman: warning: {outcome.name} replaced other bytes of the same name: a reader "
                "that fetched the previous index before the new one was up finds a package that "
                "does not match it; bump the release (--release) to publish other bytes\n"
            )
    everything = s3.UploadSummary(result.packages.outcomes + indexes.outcomes)
    deleted = f", {len(result.deleted)} deleted" if publication.deletions else ""
    print(f"published {shown} to {target.url}: {everything.line()}{deleted}")
    if result.not_deleted:
        sys.stderr.write(
            f"pakman: {len(result.not_deleted)} package(s) no index lists could not be "
            "deleted; the repository is whole, a rerun deletes them\n"
        )
        return EXIT_FAILED
    return EXIT_OK
