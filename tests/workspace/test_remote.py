"""The remote cache's records: what pakman refuses in one before anything is written.

The client and the whole flow run against a real nginx in tests/test_remote_cache.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from pakman.errors import ConfigError
from pakman.workspace.remote import FORMAT, HttpCache, record_problem
from pakman.workspace.remote_options import parse_header

DIGEST = "ab" * 32


def folder(*entries: list[Any]) -> dict[str, Any]:
    return {"format": FORMAT, "outputs": [{"kind": "dir", "mode": 0o755, "entries": list(entries)}]}


def test_a_well_formed_record_is_usable() -> None:
    record = folder(
        ["bin", "d", 0o755, 0, 0, ""],
        ["bin/tool", "f", 0o755, 3, 0, DIGEST],
        ["bin/alias", "l", 0o777, 0, 0, "tool"],
    )
    assert record_problem(record, 1) is None
    file = {"format": FORMAT, "outputs": [{"kind": "file", "mode": 0o644, "digest": DIGEST}]}
    assert record_problem(file, 1) is None


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"format": "pakman-ac/0", "outputs": []}, "not a record of this format"),
        ([1, 2], "not a record of this format"),
        (folder(), None),  # one output, of two wanted
        (folder(["../x", "f", 0o644, 1, 0, DIGEST]), "absolute or has `..`"),
        (folder(["/x", "f", 0o644, 1, 0, DIGEST]), "absolute or has `..`"),
        (folder(["a/./b", "f", 0o644, 1, 0, DIGEST]), "absolute or has `..`"),
        (folder(["a", "l", 0o777, 0, 0, "/etc"], ["a/x", "f", 0o644, 1, 0, DIGEST]), "not inside"),
        (folder(["a/x", "f", 0o644, 1, 0, DIGEST]), "not inside"),  # its folder comes later
        (folder(["dev", "c", 0o644, 0, 0, ""]), "not a file, folder or link"),
        (folder(["x", "f", 0o644, 1, 0, "not-a-digest"]), "no sha256 digest"),
        (folder(["x", "f", 0o644, 1, 0]), "wrong shape"),
        # A link, then a file of the same name (it would be written through the link).
        (folder(["x", "l", 0o777, 0, 0, "/etc/passwd"], ["x", "f", 0o644, 1, 0, DIGEST]), "twice"),
    ],
)
def test_what_a_record_may_not_do(record: Any, problem: str | None) -> None:
    found = record_problem(record, 2 if problem is None else 1)
    assert found is not None
    if problem is not None:
        assert problem in found


def test_the_header_value_is_never_in_the_error() -> None:
    assert parse_header("Authorization: Bearer abc") == ("Authorization", "Bearer abc")
    with pytest.raises(ConfigError) as error:
        parse_header("Bearer secret-value")
    assert "secret-value" not in str(error.value)


def test_only_http_urls_and_no_password_in_messages() -> None:
    with pytest.raises(ConfigError, match="expected an http:// or https:// URL"):
        HttpCache("ftp://cache.example.org/x")
    cache = HttpCache("https://user:hunter2@cache.example.org/x/")
    assert cache.shown == "https://cache.example.org:443/x"
