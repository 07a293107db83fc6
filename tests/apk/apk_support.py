"""Helpers for the package-format tests: goldens, a pyweb-like tree, gzip members, crafted packages.

A module of its own (not conftest.py) so that `import apk_support` cannot pick
up another folder's conftest; the fixtures live in conftest.py.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pakman.apk.gzipper import gzip_bytes
from pakman.apk.keys import PublicKey, SigningKey
from pakman.apk.package import control_tar
from pakman.apk.pkginfo import PackageInfo, render_pkginfo
from pakman.apk.sign import signature_member

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden" / "apk"
EPOCH = 1_700_000_000


def assert_golden(name: str, actual: str) -> None:
    """Compare `actual` with tests/golden/apk/<name>; PAKMAN_UPDATE_GOLDENS=1 rewrites it."""
    path = GOLDEN_DIR / name
    if os.environ.get("PAKMAN_UPDATE_GOLDENS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    if not path.exists():
        pytest.fail(f"no golden file {path}; run with PAKMAN_UPDATE_GOLDENS=1 to create it")
    expected = path.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                f"golden/{name}",
                "actual",
            )
        )
        pytest.fail(
            f"{name} differs from its golden file (PAKMAN_UPDATE_GOLDENS=1 updates it):\n{diff}"
        )


@dataclass(frozen=True)
class KeyPair:
    """A generated key pair on disk, loaded."""

    private_path: Path
    public_path: Path
    key: SigningKey

    @property
    def trusted(self) -> dict[str, PublicKey]:
        return {self.key.keyname: PublicKey.from_file(self.public_path)}


def write_file(path: Path, data: bytes | str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)
    return path


def make_pyweb_tree(root: Path) -> Path:
    """A staged tree shaped like the pyweb example's package."""
    app = root / "var/lib/pyweb"
    write_file(
        app / "bin/pyweb", '#!/bin/sh\nexec python3 /var/lib/pyweb/src/main.py "$@"\n', 0o755
    )
    write_file(app / "bin/environment", "#!/bin/bash\nset -e\nexport PYWEB_GREETING=hello\n", 0o755)
    write_file(
        app / "bin/env-exec",
        '#!/bin/bash\n. /var/lib/pyweb/bin/environment\nexec bash -c "$@"\n',
        0o755,
    )
    write_file(
        app / "service/run",
        "#!/bin/bash\nexec /var/lib/pyweb/bin/pyweb serve --port 8080 2>&1\n",
        0o755,
    )
    write_file(
        app / "service/finish",
        "#!/bin/execlineb -P\ns6-permafailon 60 5 1,101-103,SIGSEGV,SIGBUS\n",
        0o755,
    )
    write_file(
        app / "service/log/run",
        "#!/bin/execlineb -P\ns6-log -b n20 s1000000 T /var/log/pyweb\n",
        0o755,
    )
    write_file(app / "src/main.py", "import sys\n\nprint('hello from pyweb', sys.argv[1:])\n" * 40)
    write_file(app / "src/empty.txt", b"")
    os.symlink("../bin/pyweb", app / "src/pyweb-link")
    os.link(app / "bin/pyweb", app / "src/pyweb-hardlink")
    write_file(
        root / "etc/init.d/pyweb",
        "#!/sbin/openrc-run\nname=pyweb\ndescription='pyweb service'\n",
        0o755,
    )
    write_file(root / "etc/conf.d/pyweb", "# settings for pyweb\n")
    return root


PRE_INSTALL = """#!/bin/sh
addgroup -S pyweb 2>/dev/null
adduser -S -D -H -h /var/lib/pyweb -s /sbin/nologin -G pyweb -g pyweb pyweb 2>/dev/null
exit 0
"""


def pyweb_info(**changes: object) -> PackageInfo:
    """The metadata of the pyweb example's main package."""
    fields: dict[str, object] = {
        "name": "pyweb",
        "version": "1.2.0",
        "release": 7,
        "arch": "x86_64",
        "description": "pyweb",
        "url": "https://github.com/upmaru/pyweb",
        "license": "MIT",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "maintainer": "Zack <zack@example.com>",
        "packager": "Pakman <pakman@example.com>",
        "depends": ("bash", "curl", "jq", "s6", "ca-certificates", "python3", "pyweb-openrc"),
        "install_scripts": {
            "pre-install": PRE_INSTALL,
            "post-install": "#!/bin/sh\n\nrc-update add pyweb\nrc-service pyweb migrate\n",
        },
        "owners": {"var/lib/pyweb": ("pyweb", "pyweb")},
        "builddate": EPOCH,
    }
    fields.update(changes)
    return PackageInfo(**fields)  # type: ignore[arg-type]


def member_content(member: bytes) -> bytes:
    """The decompressed content of one gzip member."""
    return zlib.decompress(member, wbits=31)


def assemble_package(
    path: Path,
    data_tar: bytes,
    info: PackageInfo,
    key: SigningKey,
    *,
    size: int,
    datahash: str | None = None,
) -> Path:
    """A correctly signed package around an arbitrary (possibly broken) data tar."""
    data_member = gzip_bytes(data_tar)
    pkginfo = render_pkginfo(
        info,
        builddate=EPOCH,
        size=size,
        datahash=datahash or hashlib.sha256(data_member).hexdigest(),
    )
    control = gzip_bytes(control_tar(pkginfo, info.script_bytes(), EPOCH))
    path.write_bytes(signature_member(key, control, EPOCH) + control + data_member)
    return path


def iter_flipped(data: bytes, start: int, end: int, count: int = 3) -> Iterator[bytes]:
    """Copies of `data` with one byte flipped, at `count` places between start and end."""
    step = max(1, (end - start) // (count + 1))
    for position in range(start + step, end, step)[:count]:
        yield data[:position] + bytes([data[position] ^ 0x55]) + data[position + 1 :]
