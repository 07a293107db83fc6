"""The store of step outputs: restore by key, never trust what is incomplete or altered."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from build_support import KeyPair, build, make_key, make_workspace, subprocess_env
from pakman.workspace.store import RECORD, Store


def outputs(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "work" / "build-x86_64"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    (folder / "bin" / "tool").chmod(0o755)
    (folder / "link").symlink_to("bin/tool")
    (folder / "empty").mkdir()
    single = tmp_path / "work" / "lock.json"
    single.write_text("{}")
    return [folder, single]


def test_save_and_restore_into_new_places(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    saved = outputs(tmp_path)
    assert store.save("ab" * 32, saved)
    elsewhere = [tmp_path / "other" / "build-x86_64", tmp_path / "other" / "lock.json"]
    assert store.restore("ab" * 32, elsewhere)
    tool = elsewhere[0] / "bin" / "tool"
    assert tool.read_text() == "#!/bin/sh\necho hi\n" and os.access(tool, os.X_OK)
    assert os.readlink(elsewhere[0] / "link") == "bin/tool"
    assert (elsewhere[0] / "empty").is_dir()
    assert elsewhere[1].read_text() == "{}"


def test_unknown_key_restores_nothing(tmp_path: Path) -> None:
    assert not Store(tmp_path / "store").restore("cd" * 32, [tmp_path / "x"])
    assert not (tmp_path / "x").exists()


def test_an_interrupted_save_is_never_trusted(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    key = "ef" * 32
    # What a save killed before its final rename leaves: a temporary folder only.
    partial = store.root / "tmp" / f"{key}.dead"
    (partial / "0").mkdir(parents=True)
    assert not store.restore(key, [tmp_path / "out"])
    # ... and an entry without its record (written last) is not an entry.
    half = store.entry(key)
    (half / "0").mkdir(parents=True)
    assert not store.restore(key, [tmp_path / "out"])
    removed, _ = store.collect_garbage(max_age_days=None, max_bytes=None)
    assert not (store.root / "tmp").exists()
    assert [e.key for e in removed] == [key] and not half.exists()


def test_an_output_edited_in_place_spoils_its_entry(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    saved = outputs(tmp_path)
    key = "12" * 32
    store.save(key, saved)
    # Outputs are hard-linked into the store: editing one in place edits the entry.
    with (saved[0] / "bin" / "tool").open("a") as handle:
        handle.write("rm -rf /\n")
    assert not store.restore(key, [tmp_path / "o1", tmp_path / "o2"])
    assert not store.entry(key).exists()  # dropped, so the step runs again


def test_concurrent_saves_of_one_key(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    saved = outputs(tmp_path)
    key = "34" * 32
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.save(key, saved))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 8
    assert (store.entry(key) / RECORD).exists()
    assert list((store.root / "tmp").iterdir()) == []
    assert store.restore(key, [tmp_path / "r1", tmp_path / "r2"])


def test_gc_by_age_and_size(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    saved = outputs(tmp_path)
    for i, age_days in enumerate((0, 10, 40)):
        key = f"{i:02d}" * 32
        store.save(key, saved)
        stamp = time.time() - age_days * 86400
        os.utime(store.entry(key), (stamp, stamp))
    removed, kept = store.collect_garbage(max_age_days=30, max_bytes=None, dry_run=True)
    assert [e.key[:2] for e in removed] == ["02"] and len(kept) == 2
    assert store.entry("02" * 32).exists()  # a dry run removes nothing
    one = store.entries()[0].size
    removed, kept = store.collect_garbage(max_age_days=30, max_bytes=one)
    assert [e.key[:2] for e in kept] == ["00"]  # the most recently used fits
    assert not store.entry("01" * 32).exists() and not store.entry("02" * 32).exists()


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


def test_a_killed_build_reruns_the_step_it_was_in(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["heartbeat"])
    config = workspace / "apps/heartbeat/instellar.yml"
    config.write_text(
        config.read_text().replace("    sh -n bin/heartbeat\n", "    touch started; sleep 30\n")
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pakman", "build", "apps", "--offline", "--key", str(key.private)],
        cwd=workspace,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    started = workspace / ".pakman/build/heartbeat/build-x86_64/started"
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    config.write_text(
        config.read_text().replace("    touch started; sleep 30\n", "    touch started\n")
    )
    run = build(workspace, key)
    assert run.code == 0, run.messages()
    # The interrupted step runs again; those that finished before the kill
    # (the dependency checks come first) are in the journal and stay done.
    assert "heartbeat:build:x86_64" in run.ran
    current = {e["step"] for e in run.events if e["event"] == "up-to-date"}
    assert current == {"heartbeat:fetch-deps-build:x86_64", "heartbeat:fetch-deps-runtime:x86_64"}


def test_gc_command(tmp_path: Path, key: KeyPair) -> None:
    workspace = make_workspace(tmp_path, ["greet"])
    assert build(workspace, key).code == 0
    result = subprocess.run(
        [sys.executable, "-m", "pakman", "gc", "--dry-run", "--max-age", "0"],
        cwd=workspace,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "would remove" in result.stdout and "0 kept" in result.stdout
    left = workspace / ".pakman/trash/0123abcd"  # old outputs a killed build did not delete
    (left / "sub").mkdir(parents=True)
    (left / "sub/file").write_text("old")
    result = subprocess.run(
        [sys.executable, "-m", "pakman", "gc", "--max-size", "0"],
        cwd=workspace,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "; 0 kept" in result.stdout
    assert Store(workspace / ".pakman/store").entries() == []
    assert list((workspace / ".pakman/trash").iterdir()) == []
    bad = subprocess.run(
        [sys.executable, "-m", "pakman", "gc", "--max-size", "lots"],
        cwd=workspace,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 3 and "use a size such as 500M" in bad.stderr


def test_sign_after_a_restored_index_publishes_the_packages_it_lists(
    tmp_path: Path, key: KeyPair
) -> None:
    from pakman.apk import PublicKey, verify_file

    workspace = make_workspace(tmp_path / "ws", ["heartbeat"])
    script = workspace / "apps/heartbeat/bin/heartbeat"
    original = script.read_text()
    assert build(workspace, key).code == 0
    script.write_text(original + "# B\n")
    assert build(workspace, key).code == 0
    script.write_text(original)  # A again: every step restored, the index's text only
    run = build(workspace, key)
    restored = {e["step"] for e in run.events if e["event"] == "restored"}
    assert run.ran == set() and "repo:index:x86_64" in restored
    # The published folder's entry is gone (gc keeps what fits), so sign runs,
    # while the index's work folder still holds B's package.
    sign_key = json.loads((workspace / ".pakman/steps/repo/sign/x86_64.json").read_text())["key"]
    Store(workspace / ".pakman/store").drop(sign_key)
    shutil.rmtree(workspace / ".pakman/repo")
    run = build(workspace, key)
    assert run.code == 0 and run.ran == {"repo:sign:x86_64"}
    public = PublicKey.from_file(key.public)
    index = workspace / ".pakman/repo/x86_64/APKINDEX.tar.gz"
    verdict = verify_file(index, {public.keyname: public})
    assert verdict.status == "ok", verdict.problems


def test_parse_size() -> None:
    from pakman.workspace.store import parse_size

    assert parse_size("500M") == 500 << 20
    assert parse_size(" 1.5gb ") == 3 << 29
    assert parse_size("1024") == 1024
    for bad in ("", "G", "-1G", "5X", "1e7"):
        with pytest.raises(ValueError):
            parse_size(bad)


def packed_from_a_saved_entry(tmp_path: Path, as_bytes: bool) -> tuple[Store, dict[str, object]]:
    """A store with one packed entry, made from another store's entry (as the remote cache sends it)."""
    from pakman.workspace.remote import describe_entry

    origin = Store(tmp_path / "origin")
    assert origin.save("cd" * 32, outputs(tmp_path))
    described = describe_entry(origin, "cd" * 32)
    assert described is not None
    record, files = described
    blobs = {d: (p.read_bytes() if as_bytes else p) for d, p in files.items()}
    store = Store(tmp_path / "store")
    assert store.pack("cd" * 32, record, blobs)
    return store, record


@pytest.mark.parametrize("as_bytes", [True, False], ids=["in memory", "from files"])
def test_a_packed_entry_is_one_file_until_restored(tmp_path: Path, as_bytes: bool) -> None:
    store, _ = packed_from_a_saved_entry(tmp_path, as_bytes)
    assert store.has("cd" * 32)
    assert [p.name for p in store.root.rglob("*") if p.is_file()] == ["cd" * 32 + ".pack"]
    assert [e.key for e in store.entries()] == ["cd" * 32]
    elsewhere = [tmp_path / "other" / "build-x86_64", tmp_path / "other" / "lock.json"]
    assert store.restore("cd" * 32, elsewhere)
    tool = elsewhere[0] / "bin" / "tool"
    assert tool.read_text() == "#!/bin/sh\necho hi\n" and os.access(tool, os.X_OK)
    assert os.readlink(elsewhere[0] / "link") == "bin/tool"
    assert (elsewhere[0] / "empty").is_dir() and elsewhere[1].read_text() == "{}"
    original = tmp_path / "work" / "build-x86_64" / "bin" / "tool"
    assert tool.stat().st_mtime_ns == original.stat().st_mtime_ns
    # Unpacked into an entry of its own; the pack is gone.
    assert (store.entry("cd" * 32) / RECORD).exists() and not store.packed("cd" * 32).exists()
    again = [tmp_path / "third" / "build-x86_64", tmp_path / "third" / "lock.json"]
    assert store.restore("cd" * 32, again)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-3],  # cut short
        lambda data: b"something else\n" + data,
        lambda data: data.replace(b'"key"', b'"kye"', 1),
    ],
    ids=["truncated", "not a pack", "no key"],
)
def test_a_damaged_pack_restores_nothing_and_goes(tmp_path: Path, damage: Any) -> None:
    store, _ = packed_from_a_saved_entry(tmp_path, as_bytes=True)
    pack = store.packed("cd" * 32)
    pack.write_bytes(damage(pack.read_bytes()))
    elsewhere = [tmp_path / "other" / "build-x86_64", tmp_path / "other" / "lock.json"]
    assert not store.restore("cd" * 32, elsewhere)
    assert not store.has("cd" * 32) and not elsewhere[1].exists()
    assert not list((store.root / "tmp").iterdir())


def test_gc_removes_packs_too(tmp_path: Path) -> None:
    store, _ = packed_from_a_saved_entry(tmp_path, as_bytes=True)
    removed, kept = store.collect_garbage(max_age_days=None, max_bytes=0)
    assert [e.key for e in removed] == ["cd" * 32] and kept == []
    assert not store.has("cd" * 32)


@pytest.mark.parametrize("kind", ["bytes", "file", "part of a file"])
def test_a_blob_is_never_written_through_a_link(tmp_path: Path, kind: str) -> None:
    from pakman.workspace.store import Slice, write_blob

    victim = tmp_path / "outside.txt"
    victim.write_text("original\n")
    source = tmp_path / "blob"
    source.write_bytes(b"xx attacker\n")
    blob = {
        "bytes": b"attacker\n",
        "file": source,
        "part of a file": Slice(source, 3, 9),
    }[kind]
    (tmp_path / "x").symlink_to(victim)
    with pytest.raises(FileExistsError):
        write_blob(blob, str(tmp_path / "x"), 0o644, 0)
    assert victim.read_text() == "original\n"
    write_blob(blob, str(tmp_path / "y"), 0o640, 10**9)
    assert (tmp_path / "y").read_bytes().endswith(b"attacker\n")
    assert (tmp_path / "y").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "y").stat().st_mtime_ns == 10**9
