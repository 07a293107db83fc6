from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pakman.config.source import MAX_BYTES, load_bytes, load_file, load_text
from pakman.errors import ConfigError


def only_error(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    assert len(exc.value.errors) == 1, exc.value.errors
    return str(exc.value.errors[0])


def test_positions_of_values_and_keys() -> None:
    doc = load_text("a: 1\nb:\n  - x\n  - {c: d}\n", "f.yml")
    assert doc.data == {"a": 1, "b": ["x", {"c": "d"}]}
    assert doc.marks[("a",)] == (1, 4)
    assert doc.key_marks[("a",)] == (1, 1)
    assert doc.marks[("b", 1, "c")] == (4, 9)
    assert doc.where(("b", 1, "missing")) == (4, 5)
    assert doc.where(("b", 1, "c"), at_key=True) == (4, 6)


def test_keys_keep_their_text() -> None:
    doc = load_text("on: 1\nyes: 2\n3: x\n", "f.yml")
    assert doc.data == {"on": 1, "yes": 2, "3": "x"}


def test_duplicate_keys_are_errors_each_reported() -> None:
    with pytest.raises(ConfigError) as exc:
        load_text("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n", "f.yml")
    messages = [str(d) for d in exc.value.errors]
    assert messages[0].startswith(
        "f.yml:4:3: b.c: key repeated in the same mapping (first at line 3)"
    )
    assert messages[1].startswith(
        "f.yml:5:1: a: key repeated in the same mapping (first at line 1)"
    )


def test_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ConfigError) as exc:
        load_text("a:\n  b: [1, 2\nc: 3\n", "f.yml")
    assert only_error(exc).startswith("f.yml:3:")
    assert "invalid YAML" in only_error(exc)


@pytest.mark.parametrize("text", ["", "   \n\n", "# only a comment\n"])
def test_empty(text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_text(text, "f.yml")
    assert "empty" in only_error(exc)


@pytest.mark.parametrize(("text", "got"), [("- a\n- b\n", "a list"), ("hello\n", "a single value")])
def test_top_level_must_be_a_mapping(text: str, got: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_text(text, "f.yml")
    assert (
        only_error(exc)
        == f"f.yml:1:1: the top level must be a mapping of keys (dependencies, build, run, ...), got {got}"
    )


def test_not_utf8_names_the_byte_and_place() -> None:
    with pytest.raises(ConfigError) as exc:
        load_bytes(b"a: 1\nb: caf\xe9\n", "f.yml")
    assert only_error(exc) == "f.yml:2:7: not UTF-8 text: invalid byte 0xe9"


def test_binary_garbage() -> None:
    with pytest.raises(ConfigError) as exc:
        load_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00", "f.yml")
    assert "NUL bytes" in only_error(exc)


def test_byte_order_mark_is_accepted() -> None:
    assert load_bytes(b"\xef\xbb\xbfa: 1\n", "f.yml").data == {"a": 1}


def test_too_large(tmp_path: Path) -> None:
    big = tmp_path / "instellar.yml"
    big.write_bytes(b"a: '" + b"x" * (MAX_BYTES + 10) + b"'\n")
    with pytest.raises(ConfigError) as exc:
        load_file(big, "instellar.yml")
    assert "too large" in only_error(exc)


@pytest.mark.parametrize("depth", [65, 200_000])
@pytest.mark.parametrize(
    "nest",
    [
        lambda n: "a: " + "[" * n + "]" * n,
        lambda n: "a: " + "{b: " * n + "1" + "}" * n,
        lambda n: "a:\n" + "- " * n + "x",
    ],
    ids=["flow-list", "flow-mapping", "block-list"],
)
def test_deep_nesting_is_refused_without_crashing(depth: int, nest: Callable[[int], str]) -> None:
    # 200,000 levels would overflow the C composer's stack if it ever saw them.
    with pytest.raises(ConfigError) as exc:
        load_text(nest(depth) + "\n", "f.yml")
    assert "nested more than 64 levels deep" in only_error(exc)


def test_alias_bomb_stops_early() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    with pytest.raises(ConfigError) as exc:
        load_text("\n".join(lines) + "\n", "f.yml")
    assert "after expanding aliases" in only_error(exc)


def test_merge_keys_apply_and_explicit_keys_win() -> None:
    doc = load_text("base: &b {x: 1, y: 2}\nthing:\n  <<: *b\n  y: 3\n", "f.yml")
    assert doc.data["thing"] == {"x": 1, "y": 3}


def test_unsupported_tag_is_located() -> None:
    with pytest.raises(ConfigError) as exc:
        load_text("a: !!python/name:os.system x\n", "f.yml")
    assert only_error(exc).startswith("f.yml:1:4: a: cannot read this value")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_file(tmp_path / "nope.yml")
    assert "cannot read" in only_error(exc)
