"""The collector is paused while a command loads, and left as it was found."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from build_support import KeyPair, build, make_key, make_workspace
from pakman.fastpath import gcpause


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was_enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if was_enabled:
        gc.enable()


def test_a_command_pauses_the_collector_until_loaded() -> None:
    gc.enable()
    with gcpause.collector_paused():
        assert not gc.isenabled()
        before = gc.get_freeze_count()
        kept = [object() for _ in range(1000)]
        gcpause.loaded()
        assert gc.isenabled()
        assert gc.get_freeze_count() >= before + len(kept)
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0  # handed back: nothing is kept frozen


def test_a_command_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    with gcpause.collector_paused():
        gcpause.loaded()
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_an_error_while_loading_still_restores_the_collector() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), gcpause.collector_paused():
        raise RuntimeError("loading failed")
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_loading_freezes_what_it_made() -> None:
    gc.enable()
    with gcpause.loading():
        assert not gc.isenabled()
        kept = [object() for _ in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(kept)


def test_a_build_leaves_the_collector_as_it_found_it(tmp_path: Path) -> None:
    key: KeyPair = make_key(tmp_path)
    workspace = make_workspace(tmp_path / "ws", ["greet"])
    gc.enable()
    assert build(workspace, key).code == 0
    assert build(workspace, key).code == 0  # the no-op path too
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
