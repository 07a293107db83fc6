"""Hostile values in every field that reaches a generated script, and the scripts executed.

Each value carries a planted command, `pakman-marker`, a stub on PATH that
leaves a file behind if it ever runs. The generated scripts are executed with
bash, dash and execlineb, with stand-ins on PATH for the programs they call
(each records its arguments and working folder). The marker must never run,
and each program must receive its value intact.

The scripts use absolute paths under /var/lib/<name>; to run them without
installing, `relocate` puts a temporary root in front of `/var/lib/` and
`/var/log/`. The root holds only characters that need no quoting, so this
changes neither word boundaries nor quoting.

Names are planted with the dataclasses directly (the validator refuses such
names; these tests prove the escaping holds by itself); call strings and kit
values are also planted through a real instellar.yml.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
from pathlib import Path
from types import MappingProxyType

import pytest

from pakman.config.model import AppConfig, Build, Command, Identity, Run, Service
from pakman.config.schema import load_app
from pakman.render.engine import render_all
from pakman.steps.staging import collect_destinations
from render_helpers import example, need, read_records, relocate, tree, write_stub

MARKER = "pakman-marker"
HOSTILE = [
    "it's",
    'say "hi"',
    f"$({MARKER})",
    f"`{MARKER}`",
    f"a;{MARKER}",
    f"a\n{MARKER}\n",
    f"x' ; {MARKER} ; '",
    f'x" ; {MARKER} ; "',
    f"&& {MARKER} #",
    f"| {MARKER}",
    "--",
    "-rf",
    "ünï cødé ✓",
    "${PATH}",
    "*",
    "\\",
    "$'\\n'",
    "~",
    "{a,b}",
    " ",
]


class Sandbox:
    """A temporary root with stand-ins on PATH and a record of what they were given."""

    def __init__(self, base: Path) -> None:
        self.root = base / "root"
        self.bin = base / "stubs"
        self.record = base / "record.jsonl"
        self.marker = base / "MARKED"
        self.root.mkdir()
        write_stub(self.bin / MARKER, f"#!/bin/sh\ntouch {shlex.quote(str(self.marker))}\n")
        for program in ("addgroup", "adduser", "s6-log", "s6-permafailon"):
            write_stub(self.bin / program)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "RECORD": str(self.record),
            "HOME": str(self.root),
            "LC_ALL": "C.UTF-8",
            **extra,
        }

    def run(self, *argv: str, **extra: str) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            argv, env=self.env(**extra), capture_output=True, check=False, cwd=self.root
        )
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        return result

    def records(self) -> list[dict[str, object]]:
        found = read_records(self.record)
        self.record.unlink(missing_ok=True)
        return found

    def write(self, path: Path, text: str, mode: int = 0o755) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)
        return path

    def assert_marker_never_ran(self) -> None:
        assert not self.marker.exists(), "a planted command ran"


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    need("bash", "dash")
    return Sandbox(tmp_path)


def _pyweb() -> tuple[AppConfig, Identity]:
    return example("pyweb")


def install_service(box: Sandbox, files: dict[str, str], name: str) -> Path:
    """The relocated env-exec, a stand-in environment; returns the relocated home."""
    home = box.root / "var" / "lib" / name
    box.write(home / "bin" / "env-exec", relocate(files[f"{name}.env-exec"], box.root))
    box.write(home / "bin" / "environment", "# stand-in: no variables\n")
    return home


# --------------------------------------------------------------------------
# The package name, planted in every file


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_package_name(name: str, sandbox: Sandbox) -> None:
    box = sandbox
    app, identity = _pyweb()
    identity = dataclasses.replace(identity, name=name)
    files = {n: f.text for n, f in render_all(app, identity).items()}
    home = install_service(box, files, name)
    write_stub(home / "bin" / "pyweb")

    # run: picks the worker, runs it in its home with its arguments
    run = box.write(box.root / "run", relocate(files[f"{name}.run"], box.root))
    box.run("bash", str(run), SERVICE_MODE="worker")
    (call,) = box.records()
    assert call["argv"] == [str(home / "bin" / "pyweb"), "work", "--interval", "5"]
    assert call["cwd"] == str(home)

    # initd: its variables, a command through the real env-exec, start_pre's link
    initd = box.write(box.root / "initd", relocate(files[f"{name}.initd"], box.root))
    svcdir = box.root / "svc"
    (svcdir / "s6-scan").mkdir(parents=True)
    show = '. "$1"; printf "%s\\0" "$name" "$description" "$extra_commands" "$s6_service_path"'
    out = box.run("dash", "-c", show, "sh", str(initd), RC_SVCDIR=str(svcdir)).stdout
    assert out.decode().split("\0")[:-1] == [
        name,
        f"{name} service",
        "migrate logs",
        f"{svcdir}/s6-scan/{name}",
    ]
    box.run("dash", "-c", '. "$1"; migrate', "sh", str(initd), RC_SVCDIR=str(svcdir))
    (call,) = box.records()
    assert call["argv"] == [str(home / "bin" / "pyweb"), "migrate"]
    assert call["cwd"] == str(home)
    box.run("dash", "-c", '. "$1"; start_pre', "sh", str(initd), RC_SVCDIR=str(svcdir))
    assert os.readlink(svcdir / "s6-scan" / name) == str(home / "service")

    # pre-install: the user and group get the name as one argument
    pre_install = box.write(box.root / "pre-install", files[f"{name}.pre-install"])
    box.run("dash", str(pre_install))
    addgroup, adduser = box.records()
    assert addgroup["argv"][1:] == ["-S", "--", name]  # type: ignore[index]
    assert adduser["argv"][1:] == [  # type: ignore[index]
        *("-S", "-D", "-H", "-h", f"/var/lib/{name}", "-s", "/sbin/nologin"),
        *("-G", name, "-g", name, "--", name),
    ]

    # profile: PATH gains the bin folder
    profile = box.write(box.root / "profile", files[f"{name}.profile"])
    out = box.run("dash", "-c", '. "$1"; printf %s "$PATH"', "sh", str(profile)).stdout
    assert out.decode().endswith(f":/var/lib/{name}/bin")

    # APKBUILD: the variables abuild reads
    apkbuild = box.write(box.root / "APKBUILD", files["APKBUILD"], 0o644)
    show = '. "$1"; printf "%s\\0" "$pkgname" "$pkgdesc" "$pkgusers" "$pkggroups"'
    out = box.run("dash", "-c", show, "sh", str(apkbuild)).stdout
    assert out.decode().split("\0")[:-1] == [name] * 4

    box.assert_marker_never_ran()


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_package_name_in_the_execline_log_script(name: str, sandbox: Sandbox) -> None:
    need("execlineb")
    app, identity = _pyweb()
    files = render_all(app, dataclasses.replace(identity, name=name))
    log = sandbox.write(sandbox.root / "log", files[f"{name}.log"].text)
    sandbox.run("execlineb", "-P", str(log))
    (call,) = sandbox.records()
    assert call["argv"][1:] == ["-b", "n20", "s1000000", "T", f"/var/log/{name}"]  # type: ignore[index]
    sandbox.assert_marker_never_ran()


# --------------------------------------------------------------------------
# Services and commands: names, binaries, folders and calls

CALLS = [
    f"--x=$({MARKER}) \"a b\" 'c;d' `{MARKER}`",
    f"-c 'import os; os.system(\"{MARKER}\")'",
    '"it\'s" \'say "hi"\' ${HOME} $HOME ~ *',
    f"a\\ b \\$({MARKER}) && {MARKER} || {MARKER} ; {MARKER} | {MARKER} > x < y &",
    "-- ünï cødé ✓ '' \"\"",
    "",
]


def _service_app(services: tuple[Service, ...], commands: tuple[Command, ...]) -> AppConfig:
    app, _ = _pyweb()
    return dataclasses.replace(app, run=Run(name="pyweb", services=services, commands=commands))


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("hostile", ["it's", f"$({MARKER})", "a b;c", "-rf", "ü ✓"])
def test_hostile_services_and_commands(call: str, hostile: str, sandbox: Sandbox) -> None:
    box = sandbox
    folder = f"{box.root}/opt/{hostile}/bin"
    binary = f"{hostile}.bin"
    web = Service("web", "web", "serve")
    planted = Service(hostile, binary, call, path=folder)
    command = Command("task", binary, call, path=folder)
    app = _service_app((web, planted), (command,))
    identity = _pyweb()[1]
    files = {n: f.text for n, f in render_all(app, identity).items()}
    home = install_service(box, files, "pyweb")
    write_stub(home / "bin" / "web")
    write_stub(Path(folder) / binary)
    run = box.write(box.root / "run", relocate(files["pyweb.run"], box.root))

    box.run("bash", str(run), SERVICE_MODE=hostile)
    assert [c["argv"] for c in box.records()] == [[f"{folder}/{binary}", *shlex.split(call)]]
    for other in ("", "web", "*", "nothing"):
        box.run("bash", str(run), SERVICE_MODE=other)
        expected = (
            [f"{folder}/{binary}", *shlex.split(call)]
            if other == hostile
            else [
                str(home / "bin" / "web"),
                "serve",
            ]
        )
        assert [c["argv"] for c in box.records()] == [expected]

    initd = box.write(box.root / "initd", relocate(files["pyweb.initd"], box.root))
    box.run("dash", "-c", '. "$1"; task', "sh", str(initd), RC_SVCDIR=str(box.root))
    assert [c["argv"] for c in box.records()] == [[f"{folder}/{binary}", *shlex.split(call)]]
    box.assert_marker_never_ran()


def test_hostile_calls_through_a_real_instellar_yml(sandbox: Sandbox, tmp_path: Path) -> None:
    box = sandbox
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    yaml_calls = ["'" + c.replace("'", "''") + "'" for c in CALLS[:5]]  # single-quoted YAML
    services = "\n".join(
        f"    - name: s{i}\n      binary: app\n      start:\n        call: {c}"
        for i, c in enumerate(yaml_calls)
    )
    commands = "\n".join(
        f"    - name: c{i}\n      binary: app\n      call: {c}" for i, c in enumerate(yaml_calls)
    )
    (app_dir / "instellar.yml").write_text(
        f"""dependencies:
  runtime: [bash]
stack: alpine/3.20
build:
  command: 'true'
  destinations: [bin]
run:
  name: pyweb
  services:
{services}
  commands:
{commands}
kits:
  - name: web
    description: 'kit $({MARKER})'
    variables:
      - key: GREETING
        default_value: '`{MARKER}` $(rm -rf /)'
""",
        encoding="utf-8",
    )
    app, _ = load_app(app_dir)
    identity = _pyweb()[1]
    files = {n: f.text for n, f in render_all(app, identity).items()}
    assert not any("rm -rf /" in text or "kit $(" in text for text in files.values())
    home = install_service(box, files, "pyweb")
    write_stub(home / "bin" / "app")
    run = box.write(box.root / "run", relocate(files["pyweb.run"], box.root))
    initd = box.write(box.root / "initd", relocate(files["pyweb.initd"], box.root))
    for i, call in enumerate(CALLS[:5]):
        box.run("bash", str(run), SERVICE_MODE=f"s{i}")
        box.run("dash", "-c", f'. "$1"; c{i}', "sh", str(initd), RC_SVCDIR=str(box.root))
        expected = [str(home / "bin" / "app"), *shlex.split(call)]
        assert [c["argv"] for c in box.records()] == [expected, expected]
    box.assert_marker_never_ran()


# --------------------------------------------------------------------------
# The APKBUILD's other values, and destinations


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_apkbuild_values(value: str, sandbox: Sandbox) -> None:
    app, identity = _pyweb()
    app = dataclasses.replace(app, architectures=(value, "x86_64"))
    identity = dataclasses.replace(identity, version=value, url=value)
    text = render_all(app, identity)["APKBUILD"].text
    apkbuild = sandbox.write(sandbox.root / "APKBUILD", text, 0o644)
    show = '. "$1"; printf "%s\\0" "$pkgver" "$url" "$arch"'
    out = sandbox.run("dash", "-c", show, "sh", str(apkbuild)).stdout
    assert out.decode().split("\0")[:-1] == [value, value, f"{value} x86_64"]
    sandbox.assert_marker_never_ran()


DESTINATION_FILES = ["it's here", f"$({MARKER})x", "a;b", "ünï", "--x", "plain", ".hidden"]


@pytest.mark.parametrize(
    "destinations",
    [
        ("it's here",),
        (f"$({MARKER})*",),
        ("a;b", "--x"),
        ("*",),
        ("ü*", "?lain", "[a-p]lain"),
        ("nested/*",),
    ],
)
def test_hostile_destinations_copy_like_python(
    destinations: tuple[str, ...], sandbox: Sandbox, tmp_path: Path
) -> None:
    """The APKBUILD's cp lines, run in dash, copy exactly what collect_destinations copies."""
    box = sandbox
    srcdir = tmp_path / "src"
    for name in DESTINATION_FILES:
        box.write(srcdir / name, f"content of {name}\n", 0o644)
        box.write(srcdir / "nested" / name, f"nested {name}\n", 0o600)
    app, identity = _pyweb()
    app = dataclasses.replace(
        app, build=Build(destinations=destinations), hooks=MappingProxyType({})
    )
    text = render_all(app, identity)["APKBUILD"].text
    cp_lines = "\n".join(line for line in text.splitlines() if line.startswith("\tcp -r"))
    by_shell, by_python = tmp_path / "shell", tmp_path / "python"
    script = f'set -e; umask 022; mkdir -p "$pkgdir/var/lib/$pkgname"\n{cp_lines}\n'
    box.run("dash", "-c", script, srcdir=str(srcdir), pkgdir=str(by_shell), pkgname="pyweb")
    target = by_python / "var" / "lib" / "pyweb"
    for folder in (by_python, target.parent.parent, target.parent, target):
        folder.mkdir()
        folder.chmod(0o755)
    collect_destinations(srcdir, destinations, target)
    assert tree(by_shell) == tree(by_python)
    box.assert_marker_never_ran()


# --------------------------------------------------------------------------
# The environment loader: values from the platform are data too

CURL_STANDIN = """#!/bin/sh
# Stand-in for curl: answers the LXD guest API from files in $LXD, the
# status probe from $LXD/http_code, and the endpoint with $LXD/variables.json.
for arg; do last=$arg; done
case "$*" in
	*--unix-socket*) cat "$LXD/${last##*/config/user.}" 2>/dev/null || true ;;
	*%{http_code}*) cat "$LXD/http_code" ;;
	*) cat "$LXD/variables.json" ;;
esac
"""
VARIABLES = {
    "PLAIN": "hello",
    "SPACES": "  a  b  ",
    "NEWLINES": "line 1\nline 2\n",
    "SUBSTITUTION": f"$({MARKER})",
    "BACKTICKS": f"`{MARKER}`",
    "QUOTES": 'it\'s "quoted"',
    "EQUALS": "a=b=c",
    "EMPTY": "",
    "NUMBER": 5,
    "bad-key": "skipped",
    "TRAILING\n": "skipped",  # a key with a newline at its end is not a shell name either
}


@pytest.mark.parametrize("manager", ["uplink", "instellar-fallback"])
def test_the_environment_exports_platform_values_intact(
    manager: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    import base64
    import json

    need("jq", "base64")
    box = sandbox
    write_stub(box.bin / "curl", CURL_STANDIN)
    lxd = tmp_path / "lxd"
    payload = json.dumps({"data": {"attributes": {"variables": VARIABLES}}})
    answers = {
        "managed_by": "uplink" if manager == "uplink" else "instellar",
        "install_variables_endpoint": "http://uplink.local/variables",
        "INSTELLAR_INSTALLATION_ENDPOINT": "http://instellar.local/installation",
        "INSTELLAR_BOT_TOKEN": "token",
        "http_code": "503",
        "INSTELLAR_INSTALLATION_DATA": base64.b64encode(payload.encode()).decode(),
        "variables.json": payload,
    }
    for key, value in answers.items():
        box.write(lxd / key, value, 0o644)
    app, identity = _pyweb()
    environment = box.write(
        box.root / "environment", render_all(app, identity)["pyweb.environment"].text
    )
    out = tmp_path / "values"
    keys = [k for k in VARIABLES if k not in ("bad-key", "TRAILING\n")]
    show = 'source "$1"; shift; for key; do printf "%s\\0" "${!key}"; done > "$OUT"; env'
    result = box.run(
        "bash", "-c", show, "bash", str(environment), *keys, LXD=str(lxd), OUT=str(out)
    )
    values = out.read_bytes().decode().split("\0")[:-1]
    assert values == [str(VARIABLES[k]) for k in keys]
    assert b"bad-key" not in result.stdout  # not exported: not a shell name
    assert b"TRAILING" not in result.stdout + result.stderr
    assert b"\nPLAIN=hello\n" in result.stdout  # exported, not just set
    banner = "http://uplink.local/variables" if manager == "uplink" else "from backup"
    assert f"----- Fetching {banner} -----".encode() in result.stdout
    box.assert_marker_never_ran()
