"""`pakman keygen`, `pakman index` and `pakman verify`: output and exit codes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from apk_support import EPOCH, KeyPair, make_pyweb_tree, pyweb_info
from pakman.apk import write_package
from pakman.cli import main


@pytest.fixture
def repository(tmp_path: Path, key_pair: KeyPair) -> Path:
    arch_dir = tmp_path / "repo" / "x86_64"
    write_package(make_pyweb_tree(tmp_path / "tree"), pyweb_info(), arch_dir, key_pair.key)
    return arch_dir


def test_keygen_writes_an_abuild_style_pair_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pakman.apk.keys.time.time", lambda: 0x65A1B2C3)
    arguments = ["keygen", "--name", "ops@example.com", "--dir", str(tmp_path), "--bits", "1024"]
    assert main(arguments) == 0
    private = tmp_path / "ops@example.com-65a1b2c3.rsa"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert Path(f"{private}.pub").exists()
    out = capsys.readouterr().out
    assert "PRIVATE" not in out and str(private) in out
    before = private.read_bytes()
    assert main(arguments) == 3  # same name in the same second: refused, nothing overwritten
    assert "already exists" in capsys.readouterr().err
    assert private.read_bytes() == before


def test_index_then_verify(
    repository: Path,
    key_pair: KeyPair,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    assert (
        main(
            [
                "index",
                str(repository),
                "--private-key",
                str(key_pair.private_path),
                "--description",
                "test",
            ]
        )
        == 0
    )
    assert (
        "1 package (1 read, 0 unchanged), signed with test-6b000000.rsa.pub"
        in capsys.readouterr().out
    )
    files = [str(repository / "APKINDEX.tar.gz"), str(repository / "pyweb-1.2.0-r7.apk")]
    assert main(["verify", "--key", str(key_pair.public_path), *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("APKINDEX.tar.gz: ok (index, signed by test-6b000000.rsa.pub)")
    assert lines[1].endswith(
        "pyweb-1.2.0-r7.apk: ok (package pyweb-1.2.0-r7, signed by test-6b000000.rsa.pub)"
    )
    assert main(["verify", "--keys-dir", str(key_pair.public_path.parent), *files]) == 0


def test_index_with_a_key_from_the_environment(
    repository: Path,
    key_pair: KeyPair,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ABUILD_PRIVATE_KEY", key_pair.private_path.read_text())
    monkeypatch.delenv("ABUILD_PUBLIC_KEY", raising=False)
    assert main(["index", str(repository)]) == 3
    assert "needs a key name" in capsys.readouterr().err
    assert main(["index", str(repository), "--key-name", "test-6b000000.rsa.pub"]) == 0
    assert (
        main(["verify", "-k", str(key_pair.public_path), str(repository / "APKINDEX.tar.gz")]) == 0
    )


def test_verify_exit_codes_and_json(
    repository: Path, key_pair: KeyPair, impostor_key: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    package = str(repository / "pyweb-1.2.0-r7.apk")
    assert main(["verify", package]) == 1
    assert (
        "UNTRUSTED (package pyweb-1.2.0-r7, signed by test-6b000000.rsa.pub, a key not given as trusted)"
        in capsys.readouterr().out
    )
    assert main(["verify", "--allow-untrusted", package]) == 0
    capsys.readouterr()
    assert main(["verify", "--json", "-k", str(impostor_key.public_path), package]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["files"][0]["status"] == "bad" and report["files"][0]["signature"] == "bad"
    assert main(["verify", "-k", str(repository / "missing.pub"), package]) == 3
    assert "missing.pub" in capsys.readouterr().err


def test_bad_key_file_is_invalid_input_and_never_echoed(
    repository: Path, tmp_path: Path, key_pair: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.rsa"
    text = key_pair.private_path.read_text()
    broken.write_text(text[:200])
    assert main(["index", str(repository), "--private-key", str(broken)]) == 3
    captured = capsys.readouterr()
    assert "broken.rsa: not a PEM private key" in captured.err
    assert text.splitlines()[1][:30] not in captured.err + captured.out
    assert not (repository / "APKINDEX.tar.gz").exists()
    assert os.listdir(repository) == ["pyweb-1.2.0-r7.apk"]


def test_index_refuses_a_truncated_package(
    repository: Path,
    key_pair: KeyPair,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    package = repository / "pyweb-1.2.0-r7.apk"
    data = package.read_bytes()
    package.write_bytes(data[: len(data) // 2])
    assert main(["index", str(repository), "--private-key", str(key_pair.private_path)]) == 3
    err = capsys.readouterr().err
    assert (
        "pyweb-1.2.0-r7.apk: the data does not match its datahash (truncated or corrupted)" in err
    )
    assert not (repository / "APKINDEX.tar.gz").exists()
