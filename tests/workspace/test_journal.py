"""The journal: read once, then only what was appended; compacted when much is superseded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pakman.workspace.journal import compact_journal, is_done, journal_line, read_journal
from pakman.workspace.layout import Layout


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    layout = Layout.at(tmp_path)
    layout.state.mkdir(parents=True)
    return layout


def append(layout: Layout, text: str) -> None:
    with (layout.state / "journal").open("a") as handle:
        handle.write(text)


def test_no_journal_is_an_empty_one(layout: Layout) -> None:
    assert read_journal(layout) == {}


def test_appended_lines_are_read_and_the_last_run_wins(layout: Layout) -> None:
    append(layout, "a:build k1 sig1\nb:build k2 sig2\n")
    assert read_journal(layout) == {"a:build": "k1 sig1", "b:build": "k2 sig2"}
    append(layout, "a:build k3 sig3\n")
    assert read_journal(layout) == {"a:build": "k3 sig3", "b:build": "k2 sig2"}


def test_only_the_appended_bytes_are_read_again(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    append(layout, "a:build k1 sig1\n" * 50)
    read_journal(layout)
    offsets: list[int] = []
    real_open = Path.open

    def spying_open(self: Path, *args: object, **kwargs: object) -> object:
        handle = real_open(self, *args, **kwargs)  # type: ignore[call-overload]
        real_seek = handle.seek

        def seek(offset: int, *rest: int) -> int:
            offsets.append(offset)
            return real_seek(offset, *rest)  # type: ignore[no-any-return]

        handle.seek = seek
        return handle

    monkeypatch.setattr(Path, "open", spying_open)
    append(layout, "b:build k2 sig2\n")
    assert read_journal(layout)["b:build"] == "k2 sig2"
    assert offsets == [len("a:build k1 sig1\n") * 50]


def test_a_line_still_being_written_is_read_once_whole(layout: Layout) -> None:
    append(layout, "a:build k1 sig1\nb:build k2")
    assert read_journal(layout) == {"a:build": "k1 sig1"}
    append(layout, " sig2\n")
    assert read_journal(layout) == {"a:build": "k1 sig1", "b:build": "k2 sig2"}


def test_a_replaced_journal_is_read_from_the_start(layout: Layout) -> None:
    append(layout, "a:build k1 sig1\nb:build k2 sig2\n")
    read_journal(layout)
    path = layout.state / "journal"
    replacement = layout.state / "journal.new"
    replacement.write_text("c:build k3 sig3\n" + "x" * 40 + "\n")  # longer than what was read
    os.replace(replacement, path)
    assert read_journal(layout) == {"c:build": "k3 sig3"}


def test_a_journal_made_again_with_the_same_inode_is_read_from_the_start(
    layout: Layout,
) -> None:
    path = layout.state / "journal"
    append(layout, "a:build k1 sig1\n")
    read_journal(layout)
    with path.open("r+") as handle:  # same inode, other first bytes, longer
        handle.write("b:build k2 sig2\nc:build k3 sig3\n")
    assert read_journal(layout) == {"b:build": "k2 sig2", "c:build": "k3 sig3"}


def test_a_shorter_journal_is_read_from_the_start(layout: Layout) -> None:
    path = layout.state / "journal"
    append(layout, "a:build k1 sig1\nb:build k2 sig2\n")
    read_journal(layout)
    os.truncate(path, len("a:build k1 sig1\n"))
    assert read_journal(layout) == {"a:build": "k1 sig1"}


def test_another_workspace_has_its_own_journal(layout: Layout, tmp_path: Path) -> None:
    append(layout, "a:build k1 sig1\n")
    other = Layout.at(tmp_path / "other")
    other.state.mkdir(parents=True)
    append(other, "b:build k2 sig2\n")
    assert read_journal(layout) == {"a:build": "k1 sig1"}
    assert read_journal(other) == {"b:build": "k2 sig2"}


def test_compacting_waits_until_a_fifth_is_superseded(layout: Layout) -> None:
    path = layout.state / "journal"
    append(layout, "".join(f"s{i}:build k sig\n" for i in range(400)))
    append(layout, "s0:build k2 sig\n" * 100)  # 500 lines for 400 steps: not yet
    compact_journal(layout)
    assert len(path.read_text().splitlines()) == 500
    append(layout, "s1:build k3 sig\n" * 101)  # 601 lines > 400 + 100 + 100
    compact_journal(layout)
    lines = path.read_text().splitlines()
    assert len(lines) == 400
    assert read_journal(layout)["s0:build"] == "k2 sig"
    assert read_journal(layout)["s1:build"] == "k3 sig"


def test_a_step_is_done_while_its_outputs_are_as_it_left_them(
    layout: Layout, tmp_path: Path
) -> None:
    output = tmp_path / "out.txt"
    output.write_text("made")
    append(layout, journal_line("a:build", "key1", [str(output)]))
    assert is_done(read_journal(layout), "a:build", "key1", [str(output)])
    assert not is_done(read_journal(layout), "a:build", "key2", [str(output)])
    output.write_text("edited by hand")
    assert not is_done(read_journal(layout), "a:build", "key1", [str(output)])
    output.unlink()
    assert not is_done(read_journal(layout), "a:build", "key1", [str(output)])


def test_an_unchanged_journal_is_not_opened_again(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    append(layout, "a:build k1 sig1\n")
    read_journal(layout)
    opened: list[Path] = []
    real_open = Path.open

    def spying_open(self: Path, *args: object, **kwargs: object) -> object:
        opened.append(self)
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", spying_open)
    assert read_journal(layout) == {"a:build": "k1 sig1"}
    assert opened == []
    monkeypatch.undo()
    append(layout, "b:build k2 sig2\n")
    assert read_journal(layout) == {"a:build": "k1 sig1", "b:build": "k2 sig2"}
