"""Signing keys: generation like abuild-keygen, loading from files and the environment, clear errors."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from apk_support import KeyPair
from pakman.apk import (
    PublicKey,
    SigningKey,
    SigningKeyError,
    generate_key,
    load_public_keys,
    load_signing_key,
)


def test_generate_key_names_modes_and_no_overwrite(tmp_path: Path) -> None:
    private, public = generate_key(tmp_path / "keys", "dev@example.com", bits=1024, now=0x65A1B2C3)
    assert (private.name, public.name) == (
        "dev@example.com-65a1b2c3.rsa",
        "dev@example.com-65a1b2c3.rsa.pub",
    )
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.read_bytes().startswith(
        b"-----BEGIN PUBLIC KEY-----"
    )  # what apk's PEM_read_bio_PUBKEY wants
    before = private.read_bytes()
    with pytest.raises(SigningKeyError, match="already exists"):
        generate_key(tmp_path / "keys", "dev@example.com", bits=1024, now=0x65A1B2C3)
    assert private.read_bytes() == before


def test_key_name_comes_from_the_public_key_file(key_pair: KeyPair, tmp_path: Path) -> None:
    assert SigningKey.from_file(key_pair.private_path).keyname == "test-6b000000.rsa.pub"
    renamed = tmp_path / "myorg-myapp.rsa.pub"
    renamed.write_bytes(key_pair.public_path.read_bytes())
    key = SigningKey.from_file(key_pair.private_path, public_path=renamed)
    assert (
        key.keyname == "myorg-myapp.rsa.pub"
        and key.signature_name == ".SIGN.RSA.myorg-myapp.rsa.pub"
    )
    assert key.public_pem == key_pair.public_path.read_bytes()


def test_keys_from_the_environment(key_pair: KeyPair) -> None:
    private_pem = key_pair.private_path.read_text()
    env = {"ABUILD_PRIVATE_KEY": private_pem}
    key = load_signing_key(keyname="myorg-myapp.rsa.pub", environ=env)
    assert key.keyname == "myorg-myapp.rsa.pub"
    flattened = {
        "ABUILD_PRIVATE_KEY": private_pem.replace("\n", "\\n"),
        "ABUILD_PUBLIC_KEY": key_pair.public_path.read_text(),
    }
    assert load_signing_key(keyname="k.rsa.pub", environ=flattened).public_pem == key.public_pem
    with pytest.raises(SigningKeyError, match="needs a key name"):
        load_signing_key(environ=env)
    with pytest.raises(SigningKeyError, match="no signing key"):
        load_signing_key(environ={})


def test_mismatched_public_key_is_refused(key_pair: KeyPair, impostor_key: KeyPair) -> None:
    with pytest.raises(SigningKeyError, match="do not match"):
        SigningKey.from_file(key_pair.private_path, public_path=impostor_key.public_path)
    env = {
        "ABUILD_PRIVATE_KEY": key_pair.private_path.read_text(),
        "ABUILD_PUBLIC_KEY": impostor_key.public_path.read_text(),
    }
    with pytest.raises(
        SigningKeyError, match="ABUILD_PUBLIC_KEY does not belong to ABUILD_PRIVATE_KEY"
    ):
        load_signing_key(keyname="x.rsa.pub", environ=env)


def test_encrypted_key_needs_its_passphrase(key_pair: KeyPair, tmp_path: Path) -> None:
    private = serialization.load_pem_private_key(key_pair.private_path.read_bytes(), None)
    encrypted = tmp_path / "enc.rsa"
    encrypted.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    with pytest.raises(SigningKeyError, match="encrypted; give its passphrase"):
        SigningKey.from_file(encrypted)
    with pytest.raises(SigningKeyError, match="passphrase is wrong"):
        SigningKey.from_file(encrypted, passphrase="wrong")
    assert (
        SigningKey.from_file(encrypted, passphrase="s3cret").public_pem
        == key_pair.public_path.read_bytes()
    )


def test_missing_unreadable_and_non_rsa_keys(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="private key not found"):
        SigningKey.from_file(tmp_path / "missing.rsa")
    garbage = tmp_path / "garbage.rsa"
    garbage.write_text("not a key")
    with pytest.raises(SigningKeyError, match="not a PEM private key"):
        SigningKey.from_file(garbage)
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_key = tmp_path / "ec.rsa"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(SigningKeyError, match="not an RSA private key"):
        SigningKey.from_file(ec_key)
    if os.geteuid() != 0:  # root reads anything
        unreadable = tmp_path / "unreadable.rsa"
        unreadable.write_text("x")
        unreadable.chmod(0)
        with pytest.raises(SigningKeyError, match="cannot read"):
            SigningKey.from_file(unreadable)


def test_the_private_key_never_shows(key_pair: KeyPair, tmp_path: Path) -> None:
    pem = key_pair.private_path.read_text()
    body = pem.splitlines()[1]
    key = key_pair.key
    assert repr(key) == "SigningKey(keyname='test-6b000000.rsa.pub', algorithm='RSA')"
    assert body not in str(key) and body not in repr(vars(key))
    broken = pem.replace(body, body[::-1])
    attempts: list[Callable[[], object]] = [
        lambda: SigningKey.from_pem(broken, "x.rsa.pub"),
        lambda: load_signing_key(keyname="x.rsa.pub", environ={"ABUILD_PRIVATE_KEY": broken}),
        lambda: SigningKey.from_pem(pem, "x.rsa.pub", passphrase="nope"),
    ]
    for attempt in attempts:
        with pytest.raises(SigningKeyError) as caught:
            attempt()
        message = str(caught.value)
        assert body[:20] not in message and "PRIVATE KEY-----" not in message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_public_keys_from_files_and_folders(
    key_pair: KeyPair, impostor_key: KeyPair, tmp_path: Path
) -> None:
    keys = load_public_keys([key_pair.public_path])
    assert list(keys) == ["test-6b000000.rsa.pub"]
    assert keys["test-6b000000.rsa.pub"] == PublicKey.from_file(key_pair.public_path)
    keys = load_public_keys([impostor_key.public_path.parent])  # a folder, like /etc/apk/keys
    assert "test-6b000000.rsa.pub" in keys
    signature = key_pair.key.sign(b"data")
    assert PublicKey.from_file(key_pair.public_path).verify(signature, b"data")
    assert not PublicKey.from_file(impostor_key.public_path).verify(signature, b"data")


def test_bad_key_names_are_refused(key_pair: KeyPair, tmp_path: Path) -> None:
    for name in ("", "../etc/passwd", "a/b"):
        with pytest.raises(SigningKeyError, match="key name"):
            SigningKey.from_pem(key_pair.private_path.read_bytes(), name)
    with pytest.raises(SigningKeyError):
        generate_key(tmp_path, "bad/name", bits=1024)


def test_default_key_name() -> None:
    from pakman.apk.keys import default_key_name

    assert default_key_name({"PACKAGER": "Ann <ann@example.org>", "USER": "u"}) == "ann@example.org"
    assert default_key_name({"PACKAGER": "no address", "USER": "u"}) == "u"
    assert default_key_name({}) == "pakman"
