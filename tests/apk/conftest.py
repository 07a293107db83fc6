"""Fixtures for the package-format tests (helpers are in apk_support.py)."""

from __future__ import annotations

import pytest

from apk_support import KeyPair
from pakman.apk.keys import SigningKey, generate_key


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a test that takes several seconds (still run by default)"
    )


@pytest.fixture(scope="session")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """A 2048-bit key pair named test-6b000000.rsa(.pub)."""
    directory = tmp_path_factory.mktemp("keys")
    private, public = generate_key(directory, "test", bits=2048, now=0x6B000000)
    return KeyPair(private, public, SigningKey.from_file(private))


@pytest.fixture(scope="session")
def impostor_key(tmp_path_factory: pytest.TempPathFactory, key_pair: KeyPair) -> KeyPair:
    """A different key published under the same key name as `key_pair`."""
    directory = tmp_path_factory.mktemp("impostor")
    private, public = generate_key(directory, "test", bits=2048, now=0x6B000000)
    return KeyPair(private, public, SigningKey.from_file(private))
