"""`pakman index`: write the signed APKINDEX.tar.gz of a repository folder."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import Any

from pakman.cli import EXIT_OK


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    index = commands.add_parser(
        name,
        help=summary,
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
    index.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman index`; return its exit code."""
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


def _load_key_from_args(args: argparse.Namespace) -> Any:

    from pakman.apk import load_signing_key

    return load_signing_key(
        private_key=args.private_key,
        public_key=args.public_key,
        keyname=args.key_name,
        passphrase=os.environ.get("PAKMAN_KEY_PASSPHRASE") or None,
        algorithm="RSA256" if args.rsa256 else "RSA",
    )
