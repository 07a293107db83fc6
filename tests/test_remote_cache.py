"""The remote cache on a real nginx (WebDAV PUT) on 127.0.0.1: clones share builds, and a
cache that lies, fails, hangs or is gone never makes a build fail or a repository wrong.
"""

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

import pytest

from build_support import (
    BuildRun,
    KeyPair,
    build,
    make_key,
    make_workspace,
    subprocess_env,
    write_apps,
)
from nginx_support import DAV, Nginx, free_port, request, running_nginx, silent_port
from pakman.apk import PublicKey, verify_file

APPS = ("greet", "heartbeat")
REPOSITORY_STEPS = {"repo:index:x86_64", "repo:sign:x86_64"}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


def restored(run: BuildRun) -> set[str]:
    return {str(e["step"]) for e in run.events if e["event"] == "restored"}


def published(workspace: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (workspace / ".pakman/repo/x86_64").iterdir()}


def clone(tmp_path: Path, name: str) -> Path:
    return make_workspace(tmp_path / name, APPS)


def built(workspace: Path, key: KeyPair, *args: str) -> BuildRun:
    run = build(workspace, key, *args)
    assert run.code == 0, run.messages()
    return run


def warnings(run: BuildRun) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.startswith("warning:")]


def cached_records(server: Nginx) -> dict[str, dict[str, object]]:
    return {p.name: json.loads(p.read_text()) for p in (server.root / "ac").glob("*")}


def test_a_second_clone_builds_nothing(tmp_path: Path, key: KeyPair, nginx: Nginx) -> None:
    first = built(clone(tmp_path, "a"), key, "--remote-cache", nginx.url)
    app_steps = first.ran - REPOSITORY_STEPS
    assert f"0 restored from the remote cache, {len(app_steps)} uploaded" in first.stderr
    second = built(clone(tmp_path, "b"), key, "--remote-cache", nginx.url)
    # No build command, no render, no package: only the repository's own steps ran.
    assert second.ran == REPOSITORY_STEPS
    assert restored(second) == app_steps
    assert f"{len(app_steps)} restored from the remote cache, 0 uploaded, 0 misses" in second.stderr
    assert published(tmp_path / "b") == published(tmp_path / "a")
    assert warnings(second) == []


def manifest(workspace: Path, step_id: str) -> Path:
    return workspace / ".pakman/steps" / f"{step_id.replace(':', '/')}.json"


def test_what_the_remote_cache_sent_is_done_before_doit_starts(
    tmp_path: Path, key: KeyPair, nginx: Nginx
) -> None:
    """A fresh clone's steps are recorded done while the cache downloads: doit runs only the
    rest. The packages (which the index reads) are put in place; the other steps' outputs
    stay in the local store until a step that runs needs them."""
    first = built(clone(tmp_path, "a"), key, "--remote-cache", nginx.url)
    workspace = clone(tmp_path, "b")
    second = built(workspace, key, "--remote-cache", nginx.url)
    app_steps = first.ran - REPOSITORY_STEPS
    assert restored(second) == app_steps
    # doit announces each step it is handed ("start"): none of the restored ones.
    started = {str(e["step"]) for e in second.events if e["event"] == "start"}
    assert started == REPOSITORY_STEPS
    in_place = {str(e["step"]) for e in second.events if e.get("in_place") is True}
    assert in_place == {s for s in app_steps if ":package:" in s}
    for step_id in app_steps:
        assert manifest(workspace, step_id).exists() == (step_id in in_place)
    assert not (workspace / ".pakman/build/greet/render").exists()
    assert published(workspace) == published(tmp_path / "a")
    # In the store: an entry (a folder) for each package and each repository step that
    # ran here, one file for each other step.
    store = workspace / ".pakman/store"
    folders = [p for p in store.glob("*/*") if p.is_dir() and p.parent.name != "tmp"]
    assert len(folders) == len(in_place) + len(REPOSITORY_STEPS)
    assert len(list(store.glob("*/*.pack"))) >= len(app_steps - in_place) // 2
    # Recorded done: the next build runs nothing, and asks the cache nothing.
    seen = len(nginx.access_log().splitlines())
    third = built(workspace, key, "--remote-cache", nginx.url)
    assert third.ran == set() and restored(third) == set()
    assert len(nginx.access_log().splitlines()) == seen
    # A new install hook: its render and the package run; the package needs the app's
    # collected tree and the other rendered files, put in place from the store.
    hook = ("try 'greet world'", "try 'greet you'")
    edit(workspace / "apps/greet/instellar.yml", *hook)
    fourth = built(workspace, key, "--remote-cache", nginx.url)
    changed = {s for s in fourth.ran if s.startswith("greet:")}
    assert "greet:package:noarch" in changed
    assert changed - {"greet:package:noarch"} <= {s for s in app_steps if ":render-" in s}
    back = restored(fourth)
    assert {"greet:build:noarch", "greet:render-apkbuild"} <= back  # (custom: no collect)
    assert not any(s.startswith("heartbeat:") for s in back)
    assert (workspace / ".pakman/build/greet/build-noarch").is_dir()
    assert not (workspace / ".pakman/build/heartbeat/render").exists()
    # The same change in the first clone makes the same repository.
    edit(tmp_path / "a/apps/greet/instellar.yml", *hook)
    built(tmp_path / "a", key)
    assert published(workspace) == published(tmp_path / "a")


def test_a_step_kept_in_the_store_that_the_store_lost_runs_again(
    tmp_path: Path, key: KeyPair, nginx: Nginx
) -> None:
    built(clone(tmp_path, "a"), key, "--remote-cache", nginx.url)
    workspace = clone(tmp_path, "b")
    built(workspace, key, "--remote-cache", nginx.url)
    shutil.rmtree(workspace / ".pakman/store")  # as `pakman gc` may
    edit(workspace / "apps/greet/instellar.yml", "try 'greet world'", "try 'greet you'")
    run = built(workspace, key)  # no cache to ask: what the package needs runs here
    assert {"greet:build:noarch", "greet:package:noarch"} <= run.ran
    assert not any(s.startswith("heartbeat:") for s in run.ran)
    assert (workspace / ".pakman/build/greet/build-noarch").is_dir()


def test_a_shards_parked_packages_lost_from_the_store_are_built_again(
    tmp_path: Path, key: KeyPair, nginx: Nginx
) -> None:
    built(clone(tmp_path, "a"), key, "--remote-cache", nginx.url)
    workspace = clone(tmp_path, "b")
    # A shard of every app: no repository, so even the packages stay parked.
    shard = built(workspace, key, "--remote-cache", nginx.url, "--shard", "1/1")
    assert shard.ran == set() and not (workspace / ".pakman/build/greet/packages").exists()
    shutil.rmtree(workspace / ".pakman/store")  # as `pakman gc` may
    # The next build loads the apps in summary (all done); the index needs the packages.
    run = built(workspace, key)
    assert {"greet:package:noarch", "heartbeat:package:x86_64"} <= run.ran
    assert published(workspace) == published(tmp_path / "a")


def test_outputs_an_older_build_left_are_replaced_not_parked(
    tmp_path: Path, key: KeyPair, nginx: Nginx
) -> None:
    built(clone(tmp_path, "a"), key, "--remote-cache", nginx.url)
    workspace = clone(tmp_path, "b")
    left = workspace / ".pakman/build/greet/render"
    left.mkdir(parents=True)
    (left / "APKBUILD").write_text("an older build's\n")
    second = built(workspace, key, "--remote-cache", nginx.url)
    in_place = {str(e["step"]) for e in second.events if e.get("in_place") is True}
    assert "greet:render-apkbuild" in in_place
    assert (left / "APKBUILD").read_text() != "an older build's\n"
    # Nothing is left half-done: the next build does nothing.
    third = built(workspace, key, "--remote-cache", nginx.url)
    assert third.ran == set() and restored(third) == set()


def test_every_output_in_place_when_asked(tmp_path: Path, key: KeyPair, nginx: Nginx) -> None:
    first = built(clone(tmp_path, "a"), key, "--remote-cache", nginx.url)
    workspace = clone(tmp_path, "b")
    second = built(workspace, key, "--remote-cache", nginx.url, "--remote-cache-all-outputs")
    app_steps = first.ran - REPOSITORY_STEPS
    in_place = {str(e["step"]) for e in second.events if e.get("in_place") is True}
    assert in_place == app_steps == restored(second)
    assert all(manifest(workspace, step_id).exists() for step_id in app_steps)
    assert (workspace / ".pakman/build/greet/render").is_dir()
    # A restored output deleted is restored again, from the local store.
    shutil.rmtree(workspace / ".pakman/build/greet/render")
    third = built(workspace, key, "--remote-cache", nginx.url)
    assert restored(third) == {s for s in app_steps if s.startswith("greet:render-")}
    assert third.ran == set()


def test_steps_of_one_key_are_looked_up_and_written_once(
    tmp_path: Path, key: KeyPair, nginx: Nginx
) -> None:
    # Two apps with the same dependencies: their dependency locks are one key.
    first = built(write_apps(tmp_path / "a", ("beta", "gamma")), key, "--remote-cache", nginx.url)
    seen = len(nginx.access_log().splitlines())
    second = built(write_apps(tmp_path / "b", ("beta", "gamma")), key, "--remote-cache", nginx.url)
    assert second.ran == REPOSITORY_STEPS
    # (The first build ran one of each pair and restored the other from its store.)
    app_steps = restored(second)
    assert app_steps > first.ran - REPOSITORY_STEPS
    assert f"{len(app_steps)} restored from the remote cache, 0 uploaded, 0 misses" in second.stderr
    lookups = [
        line.split()[6] for line in nginx.access_log().splitlines()[seen:] if '"GET /ac/' in line
    ]
    assert len(set(lookups)) < len(app_steps)  # some steps share a record ...
    assert sorted(lookups) == sorted(set(lookups))  # ... asked for once
    assert published(tmp_path / "b") == published(tmp_path / "a")
    assert not list((tmp_path / "b/.pakman/store/tmp").iterdir())


def test_blobs_past_the_memory_budget_go_through_files(
    tmp_path: Path, key: KeyPair, nginx: Nginx, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pakman.workspace import remote

    first = built(clone(tmp_path, "a"), key, "--remote-cache", nginx.url)
    monkeypatch.setattr(remote, "_MEMORY_BUDGET", 2000)  # a few small blobs, then files
    second = built(clone(tmp_path, "b"), key, "--remote-cache", nginx.url)
    assert second.ran == REPOSITORY_STEPS
    assert restored(second) == first.ran - REPOSITORY_STEPS
    assert published(tmp_path / "b") == published(tmp_path / "a")
    assert not list((tmp_path / "b/.pakman/store/tmp").iterdir())  # nothing left behind


def test_plain_doit_uses_the_remote_cache(tmp_path: Path, key: KeyPair, nginx: Nginx) -> None:
    first = built(clone(tmp_path, "a"), key, "--remote-cache", nginx.url)
    workspace = clone(tmp_path, "b")
    (workspace / "dodo.py").write_text("from pakman.dodo import *  # noqa: F403\n")
    env = subprocess_env(
        PAKMAN_PATH="apps",
        PAKMAN_OFFLINE="1",
        PAKMAN_KEY=str(key.private),
        PAKMAN_REMOTE_CACHE=nginx.url,
    )
    run = subprocess.run(
        [sys.executable, "-m", "doit"], cwd=workspace, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    ran = {line.split()[1] for line in run.stdout.splitlines() if line.startswith("ran ")}
    assert ran == REPOSITORY_STEPS
    assert "restored from the remote cache, 0 uploaded, 0 misses" in run.stderr
    assert published(workspace) == published(tmp_path / "a")
    assert first.ran


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_one_change_revert_and_branch_switch(tmp_path: Path, key: KeyPair, nginx: Nginx) -> None:
    a, b = clone(tmp_path, "a"), clone(tmp_path, "b")
    remote = ("--remote-cache", nginx.url)
    built(a, key, *remote)
    before = published(a)
    script = "apps/heartbeat/bin/heartbeat"
    edit(a / script, "interval=60", "interval=30")  # a commit on a branch, built in A
    changed = built(a, key, *remote)
    assert {s.split(":")[0] for s in changed.ran} == {"heartbeat", "repo"}
    after = published(a)
    # B switches to that branch: every app step comes from the cache.
    edit(b / script, "interval=60", "interval=30")
    switched = built(b, key, *remote)
    assert switched.ran == REPOSITORY_STEPS
    assert published(b) == after
    # ... and back (a revert): B never built it, the cache has it.
    edit(b / script, "interval=30", "interval=60")
    back = built(b, key, *remote)
    assert back.ran == REPOSITORY_STEPS
    assert published(b) == before


def test_a_corrupted_blob_is_a_miss(tmp_path: Path, key: KeyPair, nginx: Nginx) -> None:
    built(clone(tmp_path, "a"), key, "--remote-cache", nginx.url)
    # The greet package's blob, changed on the server.
    (record,) = [
        r
        for r in cached_records(nginx).values()
        if any(e[0].endswith(".apk") for o in r["outputs"] for e in o.get("entries", []))  # type: ignore[attr-defined]
        and "greet" in json.dumps(r)
    ]
    digest = next(e[5] for o in record["outputs"] for e in o["entries"] if e[0].endswith(".apk"))  # type: ignore[attr-defined]
    blob = nginx.root / "cas" / digest
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    second = built(clone(tmp_path, "b"), key, "--remote-cache", nginx.url)
    assert "greet:package:noarch" in second.ran  # it ran: the cache's copy was refused
    assert any("does not match its digest" in w for w in warnings(second)), second.stderr
    assert "1 miss" in second.stderr
    assert published(tmp_path / "b") == published(tmp_path / "a")


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        (["../../escaped", "f", 420, 1, 0, "0" * 64], "has `..`"),
        (["/etc/escaped", "f", 420, 1, 0, "0" * 64], "absolute"),
        (["link/escaped", "f", 420, 1, 0, "0" * 64], "not inside a folder"),
        (["fifo", "p", 420, 0, 0, ""], "not a file, folder or link"),
    ],
    ids=["dotdot", "absolute", "through-a-link", "fifo"],
)
def test_a_record_naming_a_path_outside_is_a_miss(
    tmp_path: Path, key: KeyPair, nginx: Nginx, entry: list[object], why: str
) -> None:
    built(clone(tmp_path, "a"), key, "--remote-cache", nginx.url)
    for path in (nginx.root / "ac").iterdir():
        record = json.loads(path.read_text())
        folders = [o for o in record["outputs"] if o["kind"] == "dir"]
        if folders:
            folders[0]["entries"] += [["link", "l", 0o777, 0, 0, "/"], entry]
            path.write_text(json.dumps(record))
    second = built(clone(tmp_path, "b"), key, "--remote-cache", nginx.url)
    assert any(why in w for w in warnings(second)), second.stderr
    assert not (tmp_path / "escaped").exists() and not Path("/etc/escaped").exists()
    assert published(tmp_path / "b") == published(tmp_path / "a")
    assert second.ran - REPOSITORY_STEPS  # the steps with folders ran here


def test_a_server_answering_500(tmp_path: Path, key: KeyPair) -> None:
    with running_nginx(tmp_path / "nginx", "location / { return 500; }") as server:
        started = time.monotonic()
        run = built(clone(tmp_path, "a"), key, "--remote-cache", server.url)
        assert time.monotonic() - started < 30
    assert any("HTTP 500" in w for w in warnings(run)), run.stderr
    assert "0 restored from the remote cache, 0 uploaded" in run.stderr
    for path in (tmp_path / "a/.pakman/repo/x86_64").iterdir():
        assert verify_file(path, trusted(key)).status == "ok"


def test_a_slow_server_past_the_timeout(tmp_path: Path, key: KeyPair) -> None:
    folder = tmp_path / "nginx"
    with running_nginx(folder) as server:
        first = built(clone(tmp_path, "a"), key, "--remote-cache", server.url)
    assert first.ran
    with silent_port() as hung:
        # The records answer; the blobs hang (a proxy to a server that never answers).
        slow = f"location /cas/ {{ proxy_pass http://127.0.0.1:{hung}; proxy_read_timeout 60s; }}"
        with running_nginx(folder, slow + DAV) as server:
            started = time.monotonic()
            run = built(
                clone(tmp_path, "b"),
                key,
                "--remote-cache",
                server.url,
                "--remote-cache-timeout",
                "0.5",
            )
            took = time.monotonic() - started
    assert any("timed out" in w for w in warnings(run)), run.stderr
    assert took < 30
    assert published(tmp_path / "b") == published(tmp_path / "a")


def test_read_only_uploads_nothing(
    tmp_path: Path, key: KeyPair, nginx: Nginx, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = built(clone(tmp_path, "a"), key, "--remote-cache", nginx.url, "--remote-cache-readonly")
    assert "0 uploaded" in run.stderr and "(read-only)" in run.stderr
    monkeypatch.setenv("PAKMAN_REMOTE_CACHE", nginx.url)
    monkeypatch.setenv("PAKMAN_REMOTE_CACHE_READONLY", "1")
    again = built(clone(tmp_path, "b"), key)
    assert "(read-only)" in again.stderr
    assert " PUT " not in nginx.access_log() and '"PUT ' not in nginx.access_log()
    assert not (nginx.root / "ac").exists() and not (nginx.root / "cas").exists()


def test_an_unreachable_cache_costs_little(tmp_path: Path, key: KeyPair) -> None:
    started = time.monotonic()
    built(clone(tmp_path, "a"), key)
    alone = time.monotonic() - started
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    run = built(clone(tmp_path, "b"), key, "--remote-cache", url)
    with_cache = time.monotonic() - started
    (warning,) = warnings(run)
    assert warning.startswith("warning: remote cache unreachable") and "building locally" in warning
    assert with_cache - alone < 3  # loosely: benchmarks/bench_remote.py measures it
    assert published(tmp_path / "b") == published(tmp_path / "a")


def test_a_silent_cache_costs_little(tmp_path: Path, key: KeyPair) -> None:
    with silent_port() as hung:  # takes connections, never answers
        started = time.monotonic()
        run = built(clone(tmp_path, "a"), key, "--remote-cache", f"http://127.0.0.1:{hung}")
        took = time.monotonic() - started
    (warning,) = warnings(run)
    assert "remote cache unreachable" in warning and "timed out" in warning
    assert took < 10  # one short wait (the probe's), not the 10 s timeout, nor one per step


def trusted(key: KeyPair) -> dict[str, PublicKey]:
    public = PublicKey.from_file(key.public)
    return {public.keyname: public}


def test_packages_are_signed_again_with_the_local_key(
    tmp_path: Path, key: KeyPair, nginx: Nginx
) -> None:
    other = make_key(tmp_path / "other-key")
    built(clone(tmp_path, "a"), key, "--remote-cache", nginx.url)
    second = built(clone(tmp_path, "b"), other, "--remote-cache", nginx.url)
    assert second.ran == REPOSITORY_STEPS  # restored, then signed here
    assert restored(second) >= {"greet:package:noarch", "heartbeat:package:x86_64"}
    mine = published(tmp_path / "b")
    for name in mine:
        path = tmp_path / "b/.pakman/repo/x86_64" / name
        assert verify_file(path, trusted(other)).status == "ok", name
        assert verify_file(path, trusted(key)).status != "ok", name
    # The key never left the workspace: no blob on the server is a private key.
    for blob in (nginx.root / "cas").iterdir():
        assert b"PRIVATE KEY" not in blob.read_bytes()


def test_the_auth_header_is_sent_and_never_shown(
    tmp_path: Path, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cret-token-value-42"
    guarded = (
        f'location / {{ if ($http_x_cache_token != "{secret}") {{ return 403; }}'
        " dav_methods PUT; create_full_put_path on; }"
    )
    monkeypatch.setenv("PAKMAN_REMOTE_CACHE_HEADER", f"X-Cache-Token: {secret}")
    with running_nginx(tmp_path / "nginx", guarded) as server:
        first = built(clone(tmp_path, "a"), key, "--remote-cache", server.url)
        second = built(clone(tmp_path, "b"), key, "--remote-cache", server.url, "-v")
        assert second.ran == REPOSITORY_STEPS  # the header was sent: the server let it in
        exports = [
            subprocess.run(
                [
                    *(sys.executable, "-m", "pakman", "graph", "apps", "--offline"),
                    *("--format", form, "--key", str(key.private)),
                ],
                cwd=tmp_path / "b",
                env=subprocess_env(PAKMAN_REMOTE_CACHE=server.url),
                capture_output=True,
                text=True,
                check=True,
            )
            for form in ("json", "makefile", "ninja")
        ]
    with running_nginx(tmp_path / "nginx-500", "location / { return 500; }") as failing:
        failed = built(clone(tmp_path, "c"), key, "--remote-cache", failing.url)
    assert warnings(failed)
    said = [first.stderr, second.stderr, failed.stderr]
    said += [e.stdout + e.stderr for e in exports]
    assert server.url not in exports[1].stdout  # a step run by make asks no cache
    said += [json.dumps(r.events) for r in (first, second, failed)]
    assert all(secret not in text for text in said)
    for workspace in ("a", "b", "c"):
        for path in (tmp_path / workspace / ".pakman").rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert secret.encode() not in path.read_bytes(), path


def assert_every_record_has_its_blobs(server: Nginx) -> None:
    for record in cached_records(server).values():
        for output in record["outputs"]:  # type: ignore[attr-defined]
            digests = (
                [output["digest"]]
                if output["kind"] == "file"
                else [e[5] for e in output["entries"] if e[1] == "f"]
            )
            assert all((server.root / "cas" / d).is_file() for d in digests), record


def test_no_record_without_its_blobs(tmp_path: Path, key: KeyPair) -> None:
    # A server that refuses files over 2 KiB (413) and takes the records.
    small = "location /cas/ { client_max_body_size 2k; dav_methods PUT; create_full_put_path on; }"
    with running_nginx(tmp_path / "nginx", small + DAV) as server:
        run = built(clone(tmp_path, "a"), key, "--remote-cache", server.url)
        assert any("HTTP 413" in w for w in warnings(run)), run.stderr
        records = cached_records(server)
        assert 0 < len(records) < len(run.ran - REPOSITORY_STEPS)
        assert_every_record_has_its_blobs(server)
        # A second clone takes what the cache has and builds the rest.
        second = built(clone(tmp_path, "b"), key, "--remote-cache", server.url)
    assert len(restored(second)) == len(records)
    assert published(tmp_path / "b") == published(tmp_path / "a")


def test_a_server_dying_mid_upload(tmp_path: Path, key: KeyPair) -> None:
    with running_nginx(tmp_path / "nginx") as server:

        def kill_at_the_first_put() -> None:
            deadline = time.monotonic() + 60
            while '"PUT ' not in server.access_log() and time.monotonic() < deadline:
                time.sleep(0.001)
            os.killpg(server.process.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_at_the_first_put)
        killer.start()
        workspace = make_workspace(tmp_path / "a", ("greet", "heartbeat", "pyweb", "static-site"))
        run = build(workspace, key, "--remote-cache", server.url)
        killer.join()
    assert run.code == 0, run.messages()
    assert any("remote cache upload" in w for w in warnings(run)), run.stderr
    assert_every_record_has_its_blobs(server)
    for path in (workspace / ".pakman/repo/x86_64").iterdir():
        assert verify_file(path, trusted(key)).status == "ok"
    shutil.rmtree(tmp_path / "nginx")


def test_a_connection_the_server_closed_is_opened_again(tmp_path: Path) -> None:
    from pakman.workspace.remote import HttpCache

    short = "keepalive_timeout 300ms;" + DAV
    with running_nginx(tmp_path / "nginx", short) as server:
        (server.root / "cas").mkdir()
        (server.root / "cas" / "blob").write_bytes(b"content")
        cache = HttpCache(server.url, concurrency=1)
        try:
            assert (
                request(cache, "GET", "/cas/blob").answer == b"content"
            )  # the connection is kept ...
            time.sleep(1)  # ... and the server closes it, idle
            received: list[bytes] = []
            assert request(cache, "GET", "/cas/blob", sink=received.append).answer == b""
            assert b"".join(received) == b"content"
        finally:
            cache.close()
