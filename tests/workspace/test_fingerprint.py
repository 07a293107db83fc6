"""Watched paths, packed for the plan, and telling whether any changed."""

from __future__ import annotations

import os
from pathlib import Path

from pakman.workspace.fingerprint import pack, unchanged, unpack, watch


def _tree(tmp_path: Path) -> list[Path]:
    (tmp_path / "src").mkdir()
    (tmp_path / "src/a.py").write_text("a = 1\n")
    (tmp_path / "b.txt").write_text("b\n")
    return [tmp_path, tmp_path / "src", tmp_path / "src/a.py", tmp_path / "b.txt"]


def test_pack_keeps_paths_and_signatures(tmp_path: Path) -> None:
    watched = [watch(p) for p in _tree(tmp_path)] + [watch(tmp_path / "missing")]
    assert unpack(pack(watched)) == watched
    assert watched[-1] == (str(tmp_path / "missing"), None)


def test_an_empty_list_is_unchanged() -> None:
    assert pack([]) == ("", b"")
    assert unpack(pack([])) == []
    assert unchanged(pack([]))


def test_nothing_changed(tmp_path: Path) -> None:
    packed = pack(watch(p) for p in _tree(tmp_path))
    assert unchanged(packed)


def test_content_mode_time_and_presence_each_count(tmp_path: Path) -> None:
    paths = _tree(tmp_path)
    missing = tmp_path / "later.txt"
    packed = pack([*(watch(p) for p in paths), watch(missing)])

    (tmp_path / "src/a.py").write_text("a = 2\n")  # same size, new content and times
    assert not unchanged(packed)
    packed = pack([*(watch(p) for p in paths), watch(missing)])

    os.chmod(tmp_path / "b.txt", 0o755)  # the mode (and ctime)
    assert not unchanged(packed)
    packed = pack([*(watch(p) for p in paths), watch(missing)])

    stat = os.stat(tmp_path / "b.txt")
    os.utime(tmp_path / "b.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert not unchanged(packed)  # an mtime-only touch is looked at again
    packed = pack([*(watch(p) for p in paths), watch(missing)])

    absent = pack([watch(missing)])
    missing.write_text("now here\n")  # a path that was absent appears
    assert not unchanged(absent)
    missing.unlink()
    assert unchanged(absent)

    (tmp_path / "src/a.py").unlink()  # and one that was there goes
    assert not unchanged(packed)


def test_a_file_replaced_by_a_folder(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_text("")
    packed = pack([watch(path)])
    path.unlink()
    path.mkdir()
    assert not unchanged(packed)


def test_large_inode_numbers_fit(tmp_path: Path) -> None:
    big = (0o100644, (1 << 64) - 5, 3, -(10**18), 10**18)
    ((name, signature),) = unpack(pack([("/x", big)]))
    assert name == "/x" and signature is not None
    assert signature[0] == big[0] and signature[2:] == big[2:]
