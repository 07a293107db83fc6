"""The SPDX SBOM in every package: valid for the SPDX tools, complete, reproducible; `pakman sbom`.

Builds here run on the host and offline (fast); the build dependencies from
the lock of a build on alpine are in tests/test_build_on.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from build_support import BuildRun, KeyPair, build, make_key, make_workspace
from pakman.apk.gzipper import GzipMemberReader
from pakman.apk.reader import read_package_control, read_signed_start
from pakman.apk.tarfmt import TarReader
from pakman.cli import main
from support import EXAMPLES

EPOCH = "1700000000"
SBOM_DIR = "var/lib/db/sbom"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture(autouse=True)
def fixed_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    for name in ("PAKMAN_LICENSE", "PAKMAN_DESCRIPTION", "GITHUB_REPOSITORY", "GITHUB_RUN_NUMBER"):
        monkeypatch.delenv(name, raising=False)


def host_build(workspace: Path, key: KeyPair, *args: str) -> BuildRun:
    run = build(workspace, key, "--build-on", "host", *args)
    assert run.code == 0, run.messages()
    return run


def packages(workspace: Path) -> dict[str, Path]:
    """Every package of the repository by name (`pyweb-openrc`)."""
    found = sorted((workspace / ".pakman/repo").glob("*/*.apk"))
    return {p.name.rsplit("-", 2)[0]: p for p in found}


def data_files(package: Path) -> dict[str, bytes]:
    """The regular files (and hard links, by their target's content) of a package's data tar."""
    files: dict[str, bytes] = {}
    with package.open("rb") as handle:
        members = GzipMemberReader(handle)
        read_signed_start(members)
        assert members.next_member()
        reader = TarReader(members.read)
        for entry in reader:
            if entry.is_file:
                files[entry.name] = b"".join(reader.read_content())
            elif entry.is_hardlink:
                files[entry.name] = files[entry.linkname]
    return files


def sbom_of(package: Path) -> dict[str, Any]:
    (path,) = [p for p in data_files(package) if p.startswith(SBOM_DIR + "/")]
    document: dict[str, Any] = json.loads(data_files(package)[path])
    return document


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, key: KeyPair) -> Iterator[Path]:
    workspace = make_workspace(tmp_path_factory.mktemp("sbom"), ("greet", "pyweb", "static-site"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", EPOCH)
        host_build(workspace, key)
    yield workspace


def test_every_package_carries_its_sbom_at_melanges_place(built: Path) -> None:
    found = packages(built)
    assert set(found) == {"greet", "pyweb", "pyweb-openrc", "static-site"}
    for name, package in found.items():
        control = read_package_control(package.open("rb"))
        version = control.first("pkgver")
        assert f"{SBOM_DIR}/{name}-{version}.spdx.json" in data_files(package)


def test_the_sbom_validates_with_the_spdx_tools(built: Path, tmp_path: Path) -> None:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    for name, package in packages(built).items():
        path = tmp_path / f"{name}.spdx.json"
        path.write_text(json.dumps(sbom_of(package)))
        document = parse_file(str(path))
        assert validate_full_spdx_document(document, "SPDX-2.3") == [], name
        assert document.creation_info.spdx_version == "SPDX-2.3"


def test_the_sbom_lists_every_file_of_the_package_with_its_checksums(built: Path) -> None:
    for name, package in packages(built).items():
        files = data_files(package)
        document = sbom_of(package)
        own = f"{SBOM_DIR}/{name}-{document['packages'][0]['versionInfo']}.spdx.json"
        expected = {
            f"./{path}": {
                "SHA1": hashlib.sha1(content).hexdigest(),
                "SHA256": hashlib.sha256(content).hexdigest(),
            }
            for path, content in files.items()
            if path != own
        }
        listed = {
            f["fileName"]: {c["algorithm"]: c["checksumValue"] for c in f["checksums"]}
            for f in document["files"]
        }
        assert listed == expected, name
        assert expected  # every package holds files
        described = document["packages"][0]
        contained = {
            r["relatedSpdxElement"]
            for r in document["relationships"]
            if r["spdxElementId"] == described["SPDXID"] and r["relationshipType"] == "CONTAINS"
        }
        assert contained == {f["SPDXID"] for f in document["files"]}
        assert described["packageVerificationCode"]["packageVerificationCodeExcludedFiles"] == [
            f"./{own}"
        ]


def test_the_sbom_describes_the_package_as_its_pkginfo_does(built: Path) -> None:
    package = packages(built)["pyweb"]
    control = read_package_control(package.open("rb"))
    document = sbom_of(package)
    described = document["packages"][0]
    assert described["name"] == control.first("pkgname") == "pyweb"
    assert described["versionInfo"] == control.first("pkgver")
    assert described["homepage"] == control.first("url")
    assert described["licenseDeclared"] == control.first("license") == "MIT"
    assert described["description"] == control.first("pkgdesc") == "pyweb"
    assert document["creationInfo"]["created"] == "2023-11-14T22:13:20Z"  # SOURCE_DATE_EPOCH
    assert {
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": described["SPDXID"],
    } in document["relationships"]
    depends = {p["SPDXID"]: p["name"] for p in document["packages"][1:]}
    on = [
        depends[r["relatedSpdxElement"]]
        for r in document["relationships"]
        if r["relationshipType"] == "DEPENDS_ON"
    ]
    assert on == control.values("depend")
    # an offline build resolved no versions, and says so
    assert all("versionInfo" not in p for p in document["packages"][1:])
    said = {p["name"]: p["comment"] for p in document["packages"][1:]}
    assert "install script runs /bin/sh" in said.pop("/bin/sh")
    assert "Made by the same build" in said.pop("pyweb-openrc")
    assert all("Not resolved to a version (--offline)" in c for c in said.values())
    # built on the host: no build root to list
    assert "BUILD_DEPENDENCY_OF" not in {r["relationshipType"] for r in document["relationships"]}


def test_a_static_sites_sbom_depends_on_nginx(built: Path) -> None:
    document = sbom_of(packages(built)["static-site"])
    assert [p["name"] for p in document["packages"][1:]] == ["nginx", "/bin/sh"]


def test_the_openrc_split_has_its_own_sbom_of_its_own_files(built: Path) -> None:
    main_files = {f["fileName"] for f in sbom_of(packages(built)["pyweb"])["files"]}
    document = sbom_of(packages(built)["pyweb-openrc"])
    files = {f["fileName"] for f in document["files"]}
    assert files == {"./etc/init.d/pyweb"}
    assert not files & main_files
    assert document["packages"][0]["name"] == "pyweb-openrc"


def test_the_default_licence_is_declared_but_not_concluded_and_says_nobody_chose_it(
    built: Path,
) -> None:
    described = sbom_of(packages(built)["pyweb"])["packages"][0]
    assert described["licenseDeclared"] == "MIT"
    assert described["licenseConcluded"] == "NOASSERTION"
    assert "nobody chose it" in described["licenseComments"]
    assert "the package name" in described["comment"]


# --------------------------------------------------------------------------
# Reproducible, and changed only by what it describes


def _sboms(workspace: Path) -> dict[str, bytes]:
    return {
        name: next(c for p, c in data_files(package).items() if p.startswith(SBOM_DIR))
        for name, package in packages(workspace).items()
    }


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_two_builds_with_other_umasks_in_other_folders_give_the_same_sboms(
    tmp_path: Path, key: KeyPair
) -> None:
    first = make_workspace(tmp_path / "a", ("greet", "pyweb"))
    second = make_workspace(tmp_path / "b" / "deeper", ("greet", "pyweb"))
    with umask(0o022):
        host_build(first, key)
    with umask(0o077):
        host_build(second, key)
    assert _sboms(first) == _sboms(second)
    document = json.loads(_sboms(first)["pyweb"])
    digest = document["documentNamespace"].rsplit("-", 1)[1]
    assert len(digest) == 64  # the content's SHA-256, not a random id


def test_the_sbom_changes_when_a_file_changes_and_only_then(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ("greet", "pyweb"))
    host_build(workspace, key)
    before = _sboms(workspace)
    # built again from scratch: the same documents
    host_build(workspace, key, "--always")
    assert _sboms(workspace) == before
    config = workspace / "apps/greet/greet.conf"
    config.write_text(config.read_text() + "# changed\n")
    host_build(workspace, key)
    after = _sboms(workspace)
    assert after["greet"] != before["greet"]
    assert {k: v for k, v in after.items() if k != "greet"} == {
        k: v for k, v in before.items() if k != "greet"
    }
    changed = {
        f["fileName"]: f["checksums"]
        for f in json.loads(after["greet"])["files"]
        if f not in json.loads(before["greet"])["files"]
    }
    assert list(changed) == ["./etc/greet/greet.conf"]
    sha256 = hashlib.sha256(config.read_bytes()).hexdigest()
    assert {"algorithm": "SHA256", "checksumValue": sha256} in changed["./etc/greet/greet.conf"]


# --------------------------------------------------------------------------
# pakman sbom


def sbom_command(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["sbom", *args])
    return code, out.getvalue(), err.getvalue()


def test_pakman_sbom_prints_the_packages_sbom(built: Path) -> None:
    package = packages(built)["pyweb"]
    code, out, err = sbom_command(str(package))
    assert (code, err) == (0, "")
    assert json.loads(out) == sbom_of(package)


def test_pakman_sbom_of_a_package_without_one_is_invalid_input(
    tmp_path: Path, key: KeyPair
) -> None:
    from pakman.apk import PackageInfo, load_signing_key, write_package

    tree = tmp_path / "tree"
    (tree / "usr/share").mkdir(parents=True)
    (tree / "usr/share/a").write_text("a\n")
    info = PackageInfo(name="plain", version="1.0", release=0, arch="noarch", builddate=0)
    package = write_package(tree, info, tmp_path, load_signing_key(private_key=key.private))
    code, out, err = sbom_command(str(package))
    assert (code, out) == (3, "")
    assert "has no SBOM" in err and "Traceback" not in err


@pytest.mark.parametrize("content", [b"", b"not a package\n", b"\x1f\x8b\x08\x00broken"])
def test_pakman_sbom_of_something_that_is_not_a_package_is_invalid_input(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "x.apk"
    path.write_bytes(content)
    code, out, err = sbom_command(str(path))
    assert (code, out) == (3, "")
    assert "not a package" in err and "Traceback" not in err


def test_pakman_sbom_of_a_missing_file_or_a_folder_is_invalid_input(tmp_path: Path) -> None:
    assert sbom_command(str(tmp_path / "missing.apk"))[0] == 3
    code, _, err = sbom_command(str(tmp_path))
    assert code == 3 and "not a regular file" in err


# --------------------------------------------------------------------------
# Licence and description: instellar.yml, option, variable, default


def licensed_workspace(root: Path, extra: str = "") -> Path:
    workspace = make_workspace(root, ("greet",))
    config = workspace / "apps/greet/instellar.yml"
    config.write_text(config.read_text() + extra)
    return workspace


def _metadata(workspace: Path) -> tuple[str, str, dict[str, Any]]:
    package = packages(workspace)["greet"]
    control = read_package_control(package.open("rb"))
    return control.first("license"), control.first("pkgdesc"), sbom_of(package)["packages"][0]


def test_licence_and_description_from_instellar_yml(tmp_path: Path, key: KeyPair) -> None:
    workspace = licensed_workspace(
        tmp_path, "license: apache-2.0 OR mit\ndescription: Says hello, politely\n"
    )
    host_build(workspace, key)
    license, description, described = _metadata(workspace)
    assert (license, description) == ("Apache-2.0 OR MIT", "Says hello, politely")
    assert described["licenseDeclared"] == described["licenseConcluded"] == "Apache-2.0 OR MIT"
    assert "instellar.yml `license`" in described["licenseComments"]
    assert "instellar.yml `description`" in described["comment"]
    apkbuild = (workspace / ".pakman/build/greet/render/APKBUILD").read_text()
    assert "\nlicense='Apache-2.0 OR MIT'\n" in apkbuild
    assert "\npkgdesc='Says hello, politely'\n" in apkbuild


def test_the_option_overrides_the_variable_which_overrides_the_file(
    tmp_path: Path, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = licensed_workspace(tmp_path, "license: MIT\n")
    monkeypatch.setenv("PAKMAN_LICENSE", "BSD-3-Clause")
    monkeypatch.setenv("PAKMAN_DESCRIPTION", "from the variable")
    host_build(workspace, key)
    license, description, described = _metadata(workspace)
    assert (license, description) == ("BSD-3-Clause", "from the variable")
    assert "PAKMAN_LICENSE" in described["licenseComments"]
    host_build(workspace, key, "--license", "ISC", "--description", "from the option")
    license, description, described = _metadata(workspace)
    assert (license, description) == ("ISC", "from the option")
    assert "--license" in described["licenseComments"]
    assert "--description" in described["comment"]


def test_the_default_is_the_originals(tmp_path: Path, key: KeyPair) -> None:
    workspace = licensed_workspace(tmp_path)
    host_build(workspace, key)
    license, description, described = _metadata(workspace)
    assert (license, description) == ("MIT", "greet")
    assert "nobody chose it" in described["licenseComments"]


def test_an_invalid_licence_in_instellar_yml_is_located(tmp_path: Path, key: KeyPair) -> None:
    workspace = licensed_workspace(tmp_path, "license: MIT AND Foo-1.0\n")
    run = build(workspace, key, "--build-on", "host")
    assert run.code == 3
    lines = (workspace / "apps/greet/instellar.yml").read_text().splitlines()
    line = lines.index("license: MIT AND Foo-1.0") + 1
    assert f"instellar.yml:{line}:10: license: " in run.stderr
    assert "Foo-1.0" in run.stderr and "Traceback" not in run.stderr


def test_an_invalid_licence_option_or_variable_is_invalid_input(
    tmp_path: Path, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = licensed_workspace(tmp_path)
    run = build(workspace, key, "--build-on", "host", "--license", "MIT OR")
    assert run.code == 3 and "--license" in run.stderr and "Traceback" not in run.stderr
    monkeypatch.setenv("PAKMAN_LICENSE", "Proprietary")
    run = build(workspace, key, "--build-on", "host")
    assert run.code == 3 and "PAKMAN_LICENSE" in run.stderr and "Proprietary" in run.stderr


def test_a_description_longer_than_abuild_allows_is_located(tmp_path: Path, key: KeyPair) -> None:
    workspace = licensed_workspace(tmp_path, f"description: {'x' * 129}\n")
    run = build(workspace, key, "--build-on", "host")
    assert run.code == 3 and "instellar.yml:" in run.stderr and "128" in run.stderr


def test_an_empty_description_option_is_invalid_input(tmp_path: Path, key: KeyPair) -> None:
    run = build(licensed_workspace(tmp_path), key, "--build-on", "host", "--description", "")
    assert run.code == 3 and "--description" in run.stderr and "1 to 128" in run.stderr


def test_pakman_check_reads_the_licence_too(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES / "greet", tmp_path / "greet")
    config = tmp_path / "greet/instellar.yml"
    config.write_text(config.read_text() + "license: Nope\n")
    out = io.StringIO()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
        code = main(["check", str(tmp_path / "greet")])
    line = len(config.read_text().splitlines())
    assert code == 3
    assert f"instellar.yml:{line}:10: license: 'Nope' is not an SPDX licence" in out.getvalue()


def test_locations_the_spdx_tools_refuse_become_noassertion_and_a_comment(tmp_path: Path) -> None:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    from pakman.apk import PackageInfo
    from pakman.apk.sbom import Provenance, Related, sbom_document

    (tmp_path / "tree/usr").mkdir(parents=True)
    (tmp_path / "tree/usr/a").write_text("a\n")
    info = PackageInfo(
        name="a", version="1", release=2, arch="x86_64", url="http://127.0.0.1:8000/a", builddate=0
    )
    cdn = "https://dl-cdn.alpinelinux.org/alpine/v3.20/main/x86_64/musl-1.2.5-r0.apk"
    related = [
        Related("musl", "DEPENDS_ON", version="1.2.5-r0", download=cdn),
        Related("busybox", "BUILD_DEPENDENCY_OF", download="http://localhost:8080/busybox.apk"),
    ]
    text = sbom_document(tmp_path / "tree", info, Provenance(license_from="a test"), related)
    (tmp_path / "a.spdx.json").write_bytes(text)
    assert validate_full_spdx_document(parse_file(str(tmp_path / "a.spdx.json"))) == []
    document = json.loads(text)
    described, musl, busybox = document["packages"]
    assert described["homepage"] == "NOASSERTION"
    assert "Its home page is http://127.0.0.1:8000/a." in described["comment"]
    assert musl["downloadLocation"] == cdn
    assert busybox["downloadLocation"] == "NOASSERTION"
    assert "Fetched from http://localhost:8080/busybox.apk." in busybox["comment"]
    assert document["documentNamespace"].startswith("http://127.0.0.1:8000/a/spdx/a-1-r2-")


def test_setting_the_variable_after_a_build_makes_the_package_again(
    tmp_path: Path, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = licensed_workspace(tmp_path)
    host_build(workspace, key)
    assert host_build(workspace, key).ran == set()  # the no-op build
    monkeypatch.setenv("PAKMAN_LICENSE", "0BSD")
    again = host_build(workspace, key)
    assert "greet:package:noarch" in again.ran
    license, _, described = _metadata(workspace)
    assert license == described["licenseDeclared"] == "0BSD"


def test_a_package_body_that_writes_where_the_sbom_goes_is_refused(
    tmp_path: Path, key: KeyPair
) -> None:
    workspace = make_workspace(tmp_path, ("greet",))
    config = workspace / "apps/greet/instellar.yml"
    config.write_text(
        config.read_text().replace(
            "package: |\n",
            'package: |\n  mkdir -p "$pkgdir"/var/lib/db/sbom\n'
            '  echo {} > "$pkgdir"/var/lib/db/sbom/greet-0.0.0-r0.spdx.json\n',
        )
    )
    run = build(workspace, key, "--build-on", "host")
    assert run.code == 1 and "greet:package:noarch" in run.failed
    assert "/var/lib/db/sbom/greet-0.0.0-r0.spdx.json is in the tree already" in run.messages()
