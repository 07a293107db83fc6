from __future__ import annotations

import pytest

from pakman.apk.version import compare_versions, satisfies


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ("1.0", "1.0", 0),
        ("1.0", "1.1", -1),
        ("1.10", "1.9", 1),
        ("1.0_rc1", "1.0", -1),
        ("1.0_alpha", "1.0_beta", -1),
        ("1.0_beta2", "1.0_pre1", -1),
        ("1.0_rc1", "1.0_rc2", -1),
        ("1.0_p1", "1.0", 1),
        ("1.0_git20240101", "1.0_p1", -1),
        ("1.0-r1", "1.0-r0", 1),
        ("1.2.3-r0", "1.2.3", 1),
        ("1.0a", "1.0", 1),
        ("1.0a", "1.0b", -1),
        ("1.0.1", "1.0a", 1),
        ("1.01", "1.1", -1),
        ("1.001", "1.01", -1),
        ("1.0.0", "1.0", 1),
        ("2.0", "1.99.99", 1),
        ("20.15.1-r0", "20", 1),
    ],
)
def test_compare(a: str, b: str, order: int) -> None:
    assert compare_versions(a, b) == order
    assert compare_versions(b, a) == -order


@pytest.mark.parametrize(
    ("version", "constraint", "ok"),
    [
        ("20.15.1-r0", "", True),
        ("20.15.1-r0", ">=20", True),
        ("18.20.4-r0", ">=20", False),
        ("20.15.1-r0", "<21", True),
        ("3.11.9-r0", "~3.11", True),
        ("3.12.1-r0", "~3.11", False),
        ("1.2.3-r0", "=1.2.3-r0", True),
        ("1.2.3-r1", "=1.2.3-r0", False),
        ("1.0", ">1.0", False),
        ("1.0", "<=1.0", True),
        ("1.0", "><Q1abc", True),
    ],
)
def test_satisfies(version: str, constraint: str, ok: bool) -> None:
    assert satisfies(version, constraint) is ok
