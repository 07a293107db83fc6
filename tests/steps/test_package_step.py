"""The package step: a custom `package` body runs in copies of what other steps share."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from build_support import KeyPair, build, make_key, make_workspace

BODY = """\
echo changed >> "$srcdir"/greet
echo changed >> "$startdir"/APKBUILD
install -Dm755 "$srcdir"/greet "$pkgdir"/usr/bin/greet
install -Dm644 "$srcdir"/greet.1 "$pkgdir"/usr/share/man/man1/greet.1
rm "$srcdir"/greet.1
"""


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_custom_body_cannot_change_the_build_output(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["greet"])
    config = workspace / "apps" / "greet" / "instellar.yml"
    text = config.read_text()
    start = text.index("package: |")
    config.write_text(
        text[:start] + "package: |\n" + "".join(f"  {line}\n" for line in BODY.splitlines())
    )
    work = workspace / ".pakman" / "build" / "greet"

    first = build(workspace, key)
    assert first.code == 0, first.messages()
    build_output = snapshot(work / "build-noarch")
    rendered = snapshot(work / "render")
    assert "greet.1" in build_output
    assert not any(
        data.endswith(b"changed\n") for data in [*build_output.values(), *rendered.values()]
    )

    # The package got the body's own changes.
    package = workspace / ".pakman" / "repo" / "x86_64" / "greet-0.0.0-r0.apk"
    with tarfile.open(package) as archive:
        script = archive.extractfile("usr/bin/greet")
        assert script is not None and script.read().endswith(b"changed\n")

    # The release changes: package runs again on the untouched build output.
    second = build(workspace, key, "--release", "1")
    assert second.code == 0, second.messages()
    assert "greet:package:noarch" in second.ran
    assert "greet:build:noarch" not in second.ran
    assert snapshot(work / "build-noarch") == build_output
