"""A small Alpine repository made at test time from Debian's packages, and a loopback server for it.

Made with pakman's own writer and a test key, laid out as a mirror:
`<root>/v3.20/{main,community}/<arch>/` with signed `APKINDEX.tar.gz`. The
packages are shaped like Alpine 3.20's where the tests rely on it:

- `musl`: `/lib/ld-musl-<arch>.so.1` (Debian's musl, `dpkg -L musl`) and the
  `libc.musl-<arch>.so.1` link; provides `so:libc.musl-<arch>.so.1`.
- `busybox`: Debian's static `/bin/busybox`, with `bin/sh`; its post-install
  runs `/bin/busybox --install -s` and its trigger does it again, as
  Alpine's does; provides `cmd:busybox`, `cmd:sh`.
- `alpine-baselayout`: the base folders, `/etc/passwd`, `/etc/group`, ...
- `alpine-release`: `/etc/alpine-release`, `/etc/os-release`.
- `libgreet` (`so:libgreet.so.1`), `greet` (`cmd:greet`, needs
  `so:libgreet.so.1` and musl's `so:`), both compiled with musl-gcc.
- `hello-setup` (community): needs `cmd:greet` and busybox; its pre-install adds a user (uid 101),
  its post-install runs `greet` into a file, its trigger records its
  arguments; ships `var/lib/hello` owned by that user, and a hard link.
- `fake-strip` (community): `/usr/bin/strip`, a shell script standing in for
  binutils' (`strip -o OUT IN` copies IN to OUT and appends `STRIPPED`).

With `stand_ins=True` the mirror also has empty packages named as Alpine's
(bash, curl, jq, s6, ca-certificates, python3, nginx: STAND_INS), each
saying in its description that it is a stand-in: the examples' runtime
dependencies resolve against them (a build never installs runtime
dependencies, so nothing runs them). `branches` makes one branch per name
(the examples' stacks are alpine/3.19 to 3.22), each with its own
`alpine-release`.

Needs Debian's busybox-static, musl and musl-tools (scripts/test installs them).

Also a command, for scripts/build-examples (a local mirror on a machine
without the internet):

    python tests/alpine_fixture.py make DIR [--branch v3.22 ...] [--stand-ins]
    python tests/alpine_fixture.py serve DIR [--port N] [--url-file FILE]

`make` writes the mirror to DIR/alpine and its public key to DIR/trusted
(kept when DIR was made with the same options: the key, and so the build
roots, stay the same from one run to the next); `serve` serves DIR/alpine
on 127.0.0.1 until stopped (SIGTERM or Ctrl-C), writing its URL to FILE.

For another architecture (`build_alpine_repository(..., debian_tree=...)`)
busybox and musl come from that architecture's Debian packages, extracted
into `debian_tree` (`extract_debian_packages`); the packages compiled with
musl-gcc (libgreet, greet, hello-setup) are left out.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from pakman.alpine import host_arch
from pakman.apk import PackageInfo, SigningKey, generate_key, write_index, write_package

BRANCH = "v3.20"
# the examples' stacks (alpine/3.18's rails-seed is left out of builds by examples/.pakmanignore)
EXAMPLE_BRANCHES = ("v3.19", "v3.20", "v3.21", "v3.22")
_RELEASES = {"v3.19": "3.19.4", "v3.20": "3.20.3", "v3.21": "3.21.3", "v3.22": "3.22.1"}
# Empty packages named as Alpine's, for runtime dependencies: (name, version, repository)
STAND_INS = (
    ("bash", "5.2.26", "main"),
    ("ca-certificates", "20240705", "main"),
    ("curl", "8.9.1", "main"),
    ("jq", "1.7.1", "main"),
    ("nginx", "1.26.2", "main"),
    ("python3", "3.12.7", "main"),
    ("s6", "2.12.0.3", "main"),
)
STAND_IN_NOTE = "STAND-IN, empty: made by pakman's fixture mirror, not Alpine's package"
EPOCH = 1_700_000_000
KEY_NAME = "pakman-test"
# an order apk could install them in: dependencies first
INSTALL_ORDER = (
    "alpine-baselayout",
    "alpine-release",
    "musl",
    "busybox",
    "libgreet",
    "greet",
    "hello-setup",
)

_MACHINE = {"x86_64": "x86_64", "aarch64": "aarch64", "x86": "i386", "armv7": "armhf"}
# Alpine's architecture -> Debian's (dpkg --print-architecture)
DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "x86": "i386", "armv7": "armhf"}
# Where scripts/test puts Debian's packages of another architecture: <this>/<debian arch>/
FOREIGN_DEBS = Path(
    os.environ.get("PAKMAN_TEST_FOREIGN_DEBS")
    or Path(__file__).resolve().parent.parent / ".cache" / "debian"
)

_LIBGREET_C = r"""
#include <stdio.h>
void greet(const char *who) { printf("hello, %s\n", who); }
"""
_GREET_C = r"""
void greet(const char *who);
int main(int argc, char **argv) { greet(argc > 1 ? argv[1] : "alpine"); return 0; }
"""
_PASSWD = """\
root:x:0:0:root:/root:/bin/sh
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
nobody:x:65534:65534:nobody:/:/sbin/nologin
"""
_GROUP = """\
root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root,bin,daemon
shadow:x:42:
nogroup:x:65533:
nobody:x:65534:
"""
_SHADOW = "root:*::0:::::\nbin:!::0:::::\ndaemon:!::0:::::\nnobody:!::0:::::\n"


@dataclass(frozen=True)
class AlpineRepository:
    """The fixture mirror on disk: where it is, its key, and its packages."""

    root: Path  # the mirror: <root>/v3.20/main/<arch>/...
    arch: str
    key: SigningKey
    public_key: Path  # <keyname>.rsa.pub, as it goes into /etc/apk/keys
    keys_dir: Path  # a folder holding only the public key
    branches: tuple[str, ...] = (BRANCH,)

    def arch_dir(self, repository: str = "main", branch: str = BRANCH) -> Path:
        return self.root / branch / repository / self.arch

    def package(self, name: str) -> Path:
        """The .apk file of a fixture package."""
        for repository in ("main", "community"):
            found = sorted(self.arch_dir(repository).glob(f"{name}-[0-9]*.apk"))
            if found:
                return found[0]
        raise KeyError(name)

    def packages(self, names: tuple[str, ...] = INSTALL_ORDER) -> tuple[Path, ...]:
        return tuple(self.package(name) for name in names)

    def repositories(self, url: str) -> tuple[str, ...]:
        """`/etc/apk/repositories` lines for this mirror served at `url`."""
        return (f"{url}/{BRANCH}/main", f"{url}/{BRANCH}/community")


def musl_loader(arch: str) -> str:
    return f"ld-musl-{_MACHINE.get(arch, arch)}.so.1"


def extract_debian_packages(arch: str, dest: Path, debs: Path = FOREIGN_DEBS) -> Path:
    """Debian's busybox-static and musl of `arch` (from `debs/<debian arch>/`) extracted into `dest`.

    Raises FileNotFoundError saying how to get them when they are missing.
    """
    folder = debs / DEBIAN_ARCH.get(arch, arch)
    found = [sorted(folder.glob(f"{name}_*.deb")) for name in ("busybox-static", "musl")]
    if not all(found):
        raise FileNotFoundError(
            f"Debian's busybox-static and musl for {arch} are not in {folder}: scripts/test "
            f"downloads them (dpkg --add-architecture {DEBIAN_ARCH.get(arch, arch)}; "
            "apt-get download)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    for package in found:
        subprocess.run(["dpkg-deb", "-x", package[-1], dest], check=True)
    return dest


def _busybox(debian_tree: Path | None) -> Path:
    candidates = ("/bin/busybox", "/usr/bin/busybox")
    for candidate in candidates:
        path = debian_tree / candidate.lstrip("/") if debian_tree else Path(candidate)
        if path.is_file():
            return path
    raise FileNotFoundError("busybox not found: install Debian's busybox-static")


def _musl_libc(arch: str, debian_tree: Path | None) -> Path:
    if debian_tree is not None:
        # Debian's lib/ld-musl-<arch>.so.1 is a relative link to its libc.so
        return (debian_tree / "lib" / musl_loader(arch)).resolve(strict=True)
    listing = subprocess.run(
        ["dpkg", "-L", "musl"], capture_output=True, text=True, check=True
    ).stdout.split()
    for line in listing:
        path = Path(line)
        if path.name == "libc.so" and path.exists():
            return path.resolve()
    raise FileNotFoundError("musl's libc.so not found: install Debian's musl")


def _tree(base: Path, name: str) -> Path:
    tree = base / name
    tree.mkdir(parents=True)
    return tree


def _write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    path.chmod(mode)


def _compile(work: Path) -> tuple[Path, Path]:
    """libgreet.so.1 and greet, compiled with Debian's musl-gcc."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "libgreet.c").write_text(_LIBGREET_C)
    (work / "greet.c").write_text(_GREET_C)
    gcc = shutil.which("musl-gcc")
    if gcc is None:
        raise FileNotFoundError("musl-gcc not found: install Debian's musl-tools")
    library, program = work / "libgreet.so.1", work / "greet"
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-Wl,-soname,libgreet.so.1", "-o", library, work / "libgreet.c"],
        check=True,
    )
    subprocess.run(
        [gcc, "-o", program, work / "greet.c", f"-L{work}", "-l:libgreet.so.1"], check=True
    )
    return library, program


def _packages(
    trees: Path,
    arch: str,
    branch: str = BRANCH,
    stand_ins: bool = False,
    debian_tree: Path | None = None,
) -> list[tuple[str, Path, PackageInfo]]:
    """(repository, tree, info) of every fixture package of a branch (busybox and musl from `debian_tree` if given)."""
    made = []
    loader = musl_loader(arch)
    libc_so = f"so:libc.musl-{_MACHINE.get(arch, arch)}.so.1"

    base = _tree(trees, "alpine-baselayout")
    for folder, mode in (
        ("bin", 0o755),
        ("sbin", 0o755),
        ("lib", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("home", 0o755),
        ("root", 0o700),
        ("mnt", 0o755),
        ("srv", 0o755),
        ("opt", 0o755),
        ("media", 0o755),
        ("etc/apk", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("usr/lib", 0o755),
        ("usr/share", 0o755),
        ("usr/local/bin", 0o755),
        ("var/lib", 0o755),
        ("var/cache", 0o755),
        ("var/tmp", 0o1777),
        ("var/log", 0o755),
    ):
        (base / folder).mkdir(parents=True, exist_ok=True)
        (base / folder).chmod(mode)
    (base / "var/run").symlink_to("../run")
    _write(base / "etc/passwd", _PASSWD)
    _write(base / "etc/group", _GROUP)
    _write(base / "etc/shadow", _SHADOW, 0o640)
    _write(base / "etc/hosts", "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost\n")
    _write(
        base / "etc/profile",
        'export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n',
    )
    made.append(
        (
            "main",
            base,
            PackageInfo(
                "alpine-baselayout",
                "3.6.5",
                arch,
                description="Alpine base dir structure and init scripts",
                license="GPL-2.0-only",
                owners={"etc/shadow": ("root", "shadow")},
                builddate=EPOCH,
            ),
        )
    )

    version = _RELEASES.get(branch, f"{branch.removeprefix('v')}.0")
    release = _tree(trees, "alpine-release")
    _write(release / "etc/alpine-release", f"{version}\n")
    _write(
        release / "etc/os-release",
        f'NAME="Alpine Linux"\nID=alpine\nVERSION_ID={version}\n'
        f'PRETTY_NAME="Alpine Linux {branch}"\n',
    )
    made.append(
        (
            "main",
            release,
            PackageInfo(
                "alpine-release",
                version,
                arch,
                description="Alpine release data",
                license="MIT",
                depends=("alpine-baselayout",),
                builddate=EPOCH,
            ),
        )
    )

    musl = _tree(trees, "musl")
    _write(musl / "lib" / loader, _musl_libc(arch, debian_tree).read_bytes(), 0o755)
    (musl / "lib" / f"libc.musl-{_MACHINE.get(arch, arch)}.so.1").symlink_to(loader)
    made.append(
        (
            "main",
            musl,
            PackageInfo(
                "musl",
                "1.2.5",
                arch,
                description="the musl c library (libc) implementation",
                license="MIT",
                provides=(f"{libc_so}=1",),
                builddate=EPOCH,
            ),
        )
    )

    busybox = _tree(trees, "busybox")
    _write(busybox / "bin/busybox", _busybox(debian_tree).read_bytes(), 0o755)
    (busybox / "bin/sh").symlink_to("busybox")
    made.append(
        (
            "main",
            busybox,
            PackageInfo(
                "busybox",
                "1.36.1",
                arch,
                description="Size optimized toolbox of many common UNIX utilities",
                license="GPL-2.0-only",
                provides=("cmd:busybox=1.36.1-r0", "cmd:sh=1.36.1-r0"),
                install_scripts={
                    "post-install": "#!/bin/busybox sh\n/bin/busybox --install -s || exit 1\n",
                    "trigger": "#!/bin/busybox sh\n/bin/busybox --install -s || exit 1\n",
                },
                triggers=("/bin", "/usr/bin", "/sbin", "/usr/sbin", "/lib/modules/*"),
                builddate=EPOCH,
            ),
        )
    )

    if debian_tree is None:  # musl-gcc compiles for this machine only
        made += _compiled_packages(trees, arch, libc_so)

    # A stand-in for binutils' strip (Debian's needs glibc): `strip -o OUT IN`
    # copies IN to OUT and marks it, so a test sees which files were stripped.
    stripper = _tree(trees, "fake-strip")
    _write(
        stripper / "usr/bin/strip",
        '#!/bin/sh\n[ "$1" = -o ] || exit 2\ncat "$3" > "$2" && printf STRIPPED >> "$2"\n',
        0o755,
    )
    made.append(
        (
            "community",
            stripper,
            PackageInfo(
                "fake-strip",
                "1.0",
                arch,
                description="marks what it strips",
                license="MIT",
                depends=("busybox",),
                provides=("cmd:strip=1.0-r0",),
                builddate=EPOCH,
            ),
        )
    )
    if stand_ins:
        for name, stand_in_version, repository in STAND_INS:
            empty = _tree(trees, name)
            _write(empty / f"usr/share/doc/{name}/STAND-IN", f"{STAND_IN_NOTE}\n")
            made.append(
                (
                    repository,
                    empty,
                    PackageInfo(
                        name,
                        stand_in_version,
                        arch,
                        description=f"{STAND_IN_NOTE} {name}",
                        license="MIT",
                        builddate=EPOCH,
                    ),
                )
            )
    return made


def _compiled_packages(trees: Path, arch: str, libc_so: str) -> list[tuple[str, Path, PackageInfo]]:
    """libgreet, greet and hello-setup: compiled with musl-gcc for this machine."""
    made = []
    library, program = _compile(trees / "cc")
    libgreet = _tree(trees, "libgreet")
    _write(libgreet / "usr/lib/libgreet.so.1", library.read_bytes(), 0o755)
    made.append(
        (
            "main",
            libgreet,
            PackageInfo(
                "libgreet",
                "1.0",
                arch,
                description="greets",
                license="MIT",
                depends=(libc_so,),
                provides=("so:libgreet.so.1=1",),
                builddate=EPOCH,
            ),
        )
    )
    greet = _tree(trees, "greet")
    _write(greet / "usr/bin/greet", program.read_bytes(), 0o755)
    made.append(
        (
            "main",
            greet,
            PackageInfo(
                "greet",
                "1.0",
                arch,
                release=1,
                description="says hello",
                license="MIT",
                depends=("so:libgreet.so.1", libc_so),
                provides=("cmd:greet=1.0-r1",),
                builddate=EPOCH,
            ),
        )
    )

    hello = _tree(trees, "hello-setup")
    _write(hello / "usr/share/hello/README", "hello-setup\n")
    (hello / "usr/share/hello/README.link").hardlink_to(hello / "usr/share/hello/README")
    (hello / "var/lib/hello").mkdir(parents=True)
    (hello / "var/lib/hello").chmod(0o750)
    made.append(
        (
            "community",
            hello,
            PackageInfo(
                "hello-setup",
                "2.0",
                arch,
                description="sets hello up",
                license="MIT",
                # busybox by name: no `/bin/sh` dependency is added for the scripts
                depends=("cmd:greet", "busybox"),
                install_scripts={
                    # Debian's busybox has no adduser: what it would write
                    "pre-install": "#!/bin/sh\necho hello:x:101: >> /etc/group\n"
                    "echo hello:x:101:101::/var/lib/hello:/sbin/nologin >> /etc/passwd\n",
                    "post-install": '#!/bin/sh\ngreet "$1" > /etc/hello-setup.txt\n',
                    "trigger": '#!/bin/sh\necho "$@" > /var/lib/hello/trigger-args\n',
                },
                triggers=("/usr/lib", "/usr/share/*"),
                owners={"var/lib/hello": ("hello", "hello")},
                builddate=EPOCH,
            ),
        )
    )

    return made


def build_alpine_repository(
    folder: Path,
    arch: str | None = None,
    branches: tuple[str, ...] = (BRANCH,),
    stand_ins: bool = False,
    *,
    debian_tree: Path | None = None,
) -> AlpineRepository:
    """Make the fixture mirror under `folder` (its key too); returns where things are.

    `debian_tree`: Debian's busybox-static and musl of `arch`, extracted
    (`extract_debian_packages`), for an architecture that is not this machine's.
    """
    arch = arch or host_arch()
    private, public = generate_key(folder / "key", KEY_NAME, bits=2048, now=0x6B000000)
    key = SigningKey.from_file(private, public_path=public)
    keys_dir = folder / "trusted"
    keys_dir.mkdir()
    shutil.copyfile(public, keys_dir / public.name)
    root = folder / "alpine"
    for branch in branches:
        trees = folder / "trees" / branch
        for repository, tree, info in _packages(trees, arch, branch, stand_ins, debian_tree):
            write_package(tree, info, root / branch / repository / arch, key)
        for repository in ("main", "community"):
            (root / branch / repository / arch).mkdir(parents=True, exist_ok=True)
            write_index(root / branch / repository / arch, key, builddate=EPOCH)
    shutil.rmtree(folder / "trees")
    return AlpineRepository(root, arch, key, keys_dir / public.name, keys_dir, tuple(branches))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class LoopbackMirror:
    """Serves a folder on 127.0.0.1 (a free port) from a thread until `stop`."""

    def __init__(self, folder: Path, port: int = 0) -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        try:
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError:
            if not port:
                raise
            # the port asked for is taken: any free one
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LoopbackMirror:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (once; stopping again does nothing)."""
        if not self.thread.is_alive():
            return
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def make_mirror(folder: Path, branches: tuple[str, ...], stand_ins: bool) -> Path:
    """The mirror under `folder`, made unless it was made with the same options; its keys folder."""
    wanted = {"format": 1, "arch": host_arch(), "branches": list(branches), "stand_ins": stand_ins}
    stamp = folder / "made.json"
    try:
        if json.loads(stamp.read_text()) == wanted:
            return folder / "trusted"
    except (OSError, ValueError):
        pass
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    build_alpine_repository(folder, branches=branches, stand_ins=stand_ins)
    stamp.write_text(json.dumps(wanted) + "\n")
    return folder / "trusted"


def _serve(folder: Path, port: int, url_file: Path | None) -> int:
    mirror = LoopbackMirror(folder / "alpine", port)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if url_file is not None:
        partial = url_file.with_name(url_file.name + ".part")
        partial.write_text(mirror.url + "\n")
        os.replace(partial, url_file)
    print(f"serving {folder / 'alpine'} at {mirror.url}", file=sys.stderr)
    try:
        mirror.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        mirror.server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The fixture Alpine mirror (see the docstring).")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make", help="make the mirror in DIR (kept when already made)")
    make.add_argument("folder", metavar="DIR", type=Path)
    make.add_argument("--branch", action="append", help="a branch (repeatable; default v3.20)")
    make.add_argument("--stand-ins", action="store_true", help="add the stand-in packages")
    serve = commands.add_parser("serve", help="serve DIR/alpine on 127.0.0.1")
    serve.add_argument("folder", metavar="DIR", type=Path)
    serve.add_argument("--port", type=int, default=0, help="the port (0 or taken: a free one)")
    serve.add_argument("--url-file", type=Path, help="where to write the mirror's URL")
    args = parser.parse_args(argv)
    if args.command == "make":
        keys = make_mirror(args.folder, tuple(args.branch or (BRANCH,)), args.stand_ins)
        print(keys)
        return 0
    return _serve(args.folder, args.port, args.url_file)


if __name__ == "__main__":
    sys.exit(main())
