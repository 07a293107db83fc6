"""`pakman verify`: check packages and indexes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pakman.cli import EXIT_FAILED, EXIT_OK
from pakman.cli.options import trust_arguments

if TYPE_CHECKING:
    from pakman.apk import PublicKey


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    verify = commands.add_parser(
        name,
        help=summary,
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
    trust_arguments(verify)
    verify.add_argument(
        "--allow-untrusted",
        action="store_true",
        help="accept files whose signing key is not trusted (like apk's option)",
    )
    verify.add_argument("--json", action="store_true", help="print one JSON report instead of text")
    verify.set_defaults(handler=run)


def trusted_keys(args: argparse.Namespace) -> tuple[dict[str, PublicKey], list[Path]]:
    """The keys --key, --keys-dir and (unless --no-workspace-key) the workspace's, said on stderr.

    Also where they came from (files and folders), as `pakman publish` looks
    for the file of the key that signed an index there.
    """
    from pakman.apk import load_public_keys

    sources = [Path(p) for p in (*args.key, *args.keys_dir)]
    keys = load_public_keys(sources)
    origin = dict.fromkeys(keys, "given")
    if args.workspace_key:
        from pakman.workspace.layout import find_workspace

        folder = find_workspace() / ".pakman" / "keys"
        if folder.is_dir():
            own = load_public_keys([folder])
            origin.update({name: os.path.relpath(folder) for name in own if name not in keys})
            keys = {**own, **keys}
            sources.append(folder)
    trusted = ", ".join(f"{name} ({where})" for name, where in sorted(origin.items()))
    sys.stderr.write(f"pakman: trusting {trusted or 'no key (give --key or --keys-dir)'}\n")
    return keys, sources


def run(args: argparse.Namespace) -> int:
    """Run `pakman verify`; return its exit code."""
    from pakman.apk import verify_file

    keys, _ = trusted_keys(args)
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
