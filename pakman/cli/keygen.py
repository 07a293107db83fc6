"""`pakman keygen`: create an RSA key pair for signing packages."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pakman.cli import EXIT_OK
from pakman.cli.options import at_least


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    keygen = commands.add_parser(
        name,
        help=summary,
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
        type=at_least(1024),
        default=4096,
        metavar="BITS",
        help="key size, at least 1024 (default 4096)",
    )
    keygen.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman keygen`; return its exit code."""

    from pakman.apk import generate_key
    from pakman.apk.keys import default_key_name

    name = args.name or default_key_name(os.environ)
    directory = Path(args.dir) if args.dir else Path.home() / ".abuild"
    private, public = generate_key(directory, name, bits=args.bits)
    print(f"wrote {private} (private key, mode 0600: keep it secret, back it up)")
    print(f"wrote {public}")
    print(f"install {public.name} into /etc/apk/keys/ where the packages are installed")
    return EXIT_OK
