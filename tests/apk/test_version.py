"""apk's version order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pakman.apk.version import compare_versions


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.0", "1.0.1"),
        ("1.9", "1.10"),
        ("1.0_rc1", "1.0"),
        ("1.0_alpha", "1.0_beta"),
        ("1.0", "1.0_p1"),
        ("1.0", "1.0a"),
        ("1.0a", "1.0b"),
        ("1.0-r0", "1.0-r1"),
        ("1.0-r9", "1.0-r10"),
        ("1.0", "1.0-r1"),
        ("1.01", "1.1"),
        ("1.001", "1.01"),
        ("2.0_rc2", "2.0_rc10"),
        ("1.2.3_git20240101", "1.2.4"),
    ],
)
def test_order(older: str, newer: str) -> None:
    assert compare_versions(older, newer) == -1
    assert compare_versions(newer, older) == 1


@pytest.mark.parametrize("version", ["1.0", "1.0-r3", "2.0_rc1_p2"])
def test_equal(version: str) -> None:
    assert compare_versions(version, version) == 0


versions = st.from_regex(
    r"[0-9]{1,3}(\.[0-9]{1,3}){0,3}[a-c]?(_(rc|p|beta)[0-9]?)?(-r[0-9]{1,2})?", fullmatch=True
)


@given(versions, versions)
def test_antisymmetric(a: str, b: str) -> None:
    assert compare_versions(a, b) == -compare_versions(b, a)
