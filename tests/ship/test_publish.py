"""`pakman publish` against a real S3 server (SeaweedFS on 127.0.0.1), some runs through a fault injector.

The repository is a real build (greet, noarch, and heartbeat for x86_64 and
aarch64: two indexes). What is published is read back with the access key,
and downloaded over plain HTTP (anonymous GETs, as apk fetches) for `pakman
verify`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from build_support import KeyPair, build, make_key, make_workspace, working_directory
from pakman.apk import generate_key
from pakman.cli import main
from s3_support import SECRET_KEY, FaultProxy, S3Server, fail_first_puts, fail_puts_matching

ARCHES = ("aarch64", "x86_64")


@dataclass
class Built:
    workspace: Path
    key: KeyPair

    @property
    def repo(self) -> Path:
        return self.workspace / ".pakman" / "repo"

    def files(self) -> dict[str, bytes]:
        """What a publication of this repository must hold: name (under the prefix) -> bytes."""
        found = {self.key.public.name: self.key.public.read_bytes()}
        for arch in ARCHES:
            for path in (self.repo / arch).iterdir():
                found[f"{arch}/{path.name}"] = path.read_bytes()
        return found


def _build(root: Path, key: KeyPair, *args: str) -> Built:
    workspace = make_workspace(root, ["greet", "heartbeat"])
    # The workspace is here, whatever .pakman/ a folder above may hold (a stray /tmp/.pakman).
    (workspace / ".pakman").mkdir()
    with (workspace / "apps/heartbeat/instellar.yml").open("a") as config:
        config.write("\narchitectures:\n  - x86_64\n  - aarch64\n")
    run = build(workspace, key, *args)
    assert run.code == 0, run.messages()
    return Built(workspace, key)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture
def built(tmp_path: Path, key: KeyPair) -> Built:
    return _build(tmp_path / "ws", key)


@dataclass
class Run:
    code: int
    out: str
    err: str


def publish(
    built: Built,
    url: str,
    *args: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
) -> Run:
    """`pakman publish URL --repository REPO --keys-dir KEYS ARGS` in the workspace."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    with working_directory(built.workspace):
        code = main(
            [
                "publish",
                url,
                "--repository",
                str(built.repo),
                "--keys-dir",
                str(built.key.public.parent),
                *args,
            ]
        )
    out, err = capsys.readouterr()
    # No secret is ever printed, whatever happened.
    for secret in {SECRET_KEY, *(v for k, v in env.items() if "SECRET" in k or "TOKEN" in k)}:
        assert secret not in out and secret not in err
    return Run(code, out, err)


Publish = Callable[..., Run]


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Publish:
    # No AWS files of the machine running the tests.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(name, raising=False)

    def call(built: Built, url: str, *args: str, env: dict[str, str]) -> Run:
        return publish(built, url, *args, monkeypatch=monkeypatch, capsys=capsys, env=env)

    return call


def test_publish_uploads_exactly_the_repository_then_nothing(
    built: Built, s3_server: S3Server, s3_bucket: str, s3_proxy: FaultProxy, run: Publish
) -> None:
    env = s3_server.environment(s3_proxy.endpoint)
    first = run(built, f"s3://{s3_bucket}/alpine/edge", env=env)
    assert first.code == 0, first.err
    expected = built.files()
    assert s3_server.objects(s3_bucket) == {f"alpine/edge/{n}": b for n, b in expected.items()}
    assert first.out.startswith(
        f"published .pakman/repo to s3://{s3_bucket}/alpine/edge: {len(expected)} uploaded ("
    )
    # Plain lines (standard error is no terminal here), one per file.
    assert "uploaded x86_64/APKINDEX.tar.gz (" in first.err
    assert "pakman: verified" in first.err and "2 index(es) (aarch64, x86_64)" in first.err
    assert f"pakman: trusting {built.key.public.name} (given)\n" in first.err

    del s3_proxy.requests[:]
    second = run(built, f"s3://{s3_bucket}/alpine/edge", env=env)
    assert second.code == 0, second.err
    assert f"0 uploaded (0 B), {len(expected)} skipped (unchanged), 0 failed" in second.out
    assert s3_proxy.writes() == []


def test_every_package_before_its_index_and_deletions_last(
    tmp_path: Path,
    key: KeyPair,
    built: Built,
    s3_server: S3Server,
    s3_bucket: str,
    s3_proxy: FaultProxy,
    run: Publish,
) -> None:
    env = s3_server.environment(s3_proxy.endpoint)
    url = f"s3://{s3_bucket}/repo"
    assert run(built, url, env=env).code == 0
    # A stray file that is no package, and an architecture not published now: both kept.
    outside = s3_server.client()
    outside.put_object(Bucket=s3_bucket, Key="repo/x86_64/README", Body=b"hello")
    outside.put_object(Bucket=s3_bucket, Key="repo/armv7/old-1-r0.apk", Body=b"x")
    # The next release: other file names, so the new indexes list none of the old packages.
    newer = _build(tmp_path / "ws2", key, "--release", "7")
    del s3_proxy.requests[:]
    second = run(newer, url, "--concurrency", "3", "--progress", "bar", env=env)
    assert second.code == 0, second.err
    assert "\r[========================] 9/9 files  " in second.err  # the bar, when asked for
    writes = s3_proxy.writes()
    kinds = [_kind(method, path) for method, path in writes]
    # packages (and the key, unchanged: skipped), then the indexes, then the deletions
    assert kinds == sorted(kinds, key=["package", "index", "delete"].index), writes
    assert kinds.count("package") == 6 and kinds.count("index") == 2 and kinds[-1] == "delete"
    stored = s3_server.objects(s3_bucket)
    assert stored == {
        **{f"repo/{n}": b for n, b in newer.files().items()},
        "repo/x86_64/README": b"hello",
        "repo/armv7/old-1-r0.apk": b"x",
    }
    assert "8 uploaded" in second.out and "1 skipped" in second.out and "6 deleted" in second.out


def _kind(method: str, path: str) -> str:
    if method == "POST":  # DeleteObjects: POST /bucket?delete
        return "delete"
    return "index" if path.endswith("/APKINDEX.tar.gz") else "package"


def test_a_published_repository_downloaded_over_http_passes_verify(
    built: Built,
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
    run: Publish,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(built, f"s3://{s3_bucket}/pub", env=s3_server.environment()).code == 0
    # As apk and a user would: plain GETs, no signature: the key, each index, what it lists.
    base = f"{s3_server.endpoint}/{s3_bucket}/pub"
    downloaded = tmp_path / "downloaded"
    keys = downloaded / "keys"
    keys.mkdir(parents=True)
    keyname = built.key.public.name
    _download(f"{base}/{keyname}", keys / keyname)
    from pakman.apk.index import index_filenames
    from pakman.apk.reader import read_index_file

    for arch in ARCHES:
        folder = downloaded / "repo" / arch
        folder.mkdir(parents=True)
        _download(f"{base}/{arch}/APKINDEX.tar.gz", folder / "APKINDEX.tar.gz")
        with (folder / "APKINDEX.tar.gz").open("rb") as index:
            names = index_filenames(read_index_file(index).text)
        assert len(names) == 3
        for name in names:
            _download(f"{base}/{arch}/{name}", folder / name)
    files = sorted(str(p) for p in (downloaded / "repo").rglob("*") if p.is_file())
    capsys.readouterr()
    code = main(["verify", "--no-workspace-key", "--keys-dir", str(keys), *files])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count(": ok (") == 8


def _download(url: str, path: Path) -> None:
    with urllib.request.urlopen(url, timeout=30) as answer:
        path.write_bytes(answer.read())


def test_a_server_failing_some_puts_then_recovering(
    built: Built, s3_server: S3Server, s3_bucket: str, s3_proxy: FaultProxy, run: Publish
) -> None:
    s3_proxy.rule = fail_first_puts(3)
    # The endpoint given as an option this time, not in AWS_ENDPOINT_URL.
    env = s3_server.environment()
    del env["AWS_ENDPOINT_URL"]
    result = run(
        built, f"s3://{s3_bucket}/r", "-j", "2", "--endpoint-url", s3_proxy.endpoint, env=env
    )
    assert result.code == 0, result.err
    assert sum(r.injected for r in s3_proxy.requests) == 3
    assert len([r for r in s3_proxy.requests if r.method == "PUT" and not r.injected]) == 9
    assert s3_server.objects(s3_bucket) == {f"r/{n}": b for n, b in built.files().items()}


def test_a_package_that_fails_leaves_the_previous_repository_served(
    tmp_path: Path,
    key: KeyPair,
    built: Built,
    s3_server: S3Server,
    s3_bucket: str,
    s3_proxy: FaultProxy,
    run: Publish,
) -> None:
    env = s3_server.environment(s3_proxy.endpoint)
    url = f"s3://{s3_bucket}/r"
    assert run(built, url, env=env).code == 0
    before = s3_server.objects(s3_bucket)
    newer = _build(tmp_path / "ws2", key, "--release", "8")
    s3_proxy.rule = fail_puts_matching(r"/aarch64/heartbeat-0\.0\.0-r8\.apk$")
    del s3_proxy.requests[:]
    result = run(newer, url, env=env)
    assert result.code == 1
    assert (
        "pakman: failed: aarch64/heartbeat-0.0.0-r8.apk: InternalError (HTTP 500): "
        "injected by the test proxy" in result.err
    )
    assert "no index was uploaded" in result.err
    # No index, no deletion: the old indexes and every package they list are still there.
    assert not any(_kind(m, p) in ("index", "delete") for m, p in s3_proxy.writes())
    after = s3_server.objects(s3_bucket)
    assert {k: after[k] for k in before} == before
    # Once the server is well again, a rerun sends only what is missing, then the indexes.
    s3_proxy.rule = lambda method, path, seen: None
    del s3_proxy.requests[:]
    again = run(newer, url, env=env)
    assert again.code == 0, again.err
    sent = sorted(p.removeprefix(f"/{s3_bucket}/r/") for m, p in s3_proxy.writes() if m == "PUT")
    assert sent == [
        "aarch64/APKINDEX.tar.gz",
        "aarch64/heartbeat-0.0.0-r8.apk",
        "x86_64/APKINDEX.tar.gz",
    ]
    assert s3_server.objects(s3_bucket) == {f"r/{n}": b for n, b in newer.files().items()}


def test_other_bytes_under_a_published_name_are_uploaded_with_a_warning(
    tmp_path: Path, key: KeyPair, built: Built, s3_server: S3Server, s3_bucket: str, run: Publish
) -> None:
    url = f"s3://{s3_bucket}/r"
    env = s3_server.environment()
    assert run(built, url, env=env).code == 0
    # The same name, version and release, other content.
    changed = tmp_path / "ws2"
    shutil.copytree(built.workspace / "apps", changed / "apps")
    (changed / ".pakman").mkdir()
    with (changed / "apps/greet/greet").open("a") as script:
        script.write("# changed\n")
    assert build(changed, key).code == 0
    result = run(Built(changed, key), url, env=env)
    assert result.code == 0, result.err
    warned = sorted(
        line.split()[2] for line in result.err.splitlines() if line.startswith("pakman: warning:")
    )
    assert warned == ["aarch64/greet-0.0.0-r0.apk", "x86_64/greet-0.0.0-r0.apk"]
    assert "bump the release (--release) to publish other bytes" in result.err
    assert s3_server.objects(s3_bucket) == {
        f"r/{n}": b for n, b in Built(changed, key).files().items()
    }


def test_wrong_credentials_a_clear_error_and_nothing_published(
    built: Built, s3_server: S3Server, s3_bucket: str, s3_proxy: FaultProxy, run: Publish
) -> None:
    wrong = "wrong-secret-3e1f0a27-never-printed"
    env = {**s3_server.environment(s3_proxy.endpoint), "AWS_SECRET_ACCESS_KEY": wrong}
    result = run(built, f"s3://{s3_bucket}/r", env=env)
    assert result.code == 1
    assert result.err.splitlines()[-1].startswith(
        f"pakman: cannot list s3://{s3_bucket}/r/: SignatureDoesNotMatch (HTTP 403)"
    )
    assert s3_proxy.writes() == []
    assert s3_server.objects(s3_bucket) == {}


def test_no_such_bucket(built: Built, s3_server: S3Server, run: Publish) -> None:
    result = run(built, "s3://no-such-bucket-here/r", env=s3_server.environment())
    assert result.code == 1
    assert result.err.splitlines()[-1].startswith(
        "pakman: cannot list s3://no-such-bucket-here/r/: NoSuchBucket (HTTP 404)"
    )


def test_an_endpoint_nobody_answers(built: Built, s3_server: S3Server, run: Publish) -> None:
    from s3_support import free_ports

    [port] = free_ports(1)
    env = s3_server.environment(f"http://127.0.0.1:{port}")
    result = run(built, "s3://bucket/r", env=env)
    assert result.code == 1
    assert result.err.splitlines()[-1] == (
        f"pakman: cannot list s3://bucket/r/: Could not connect to the endpoint URL: "
        f'"http://127.0.0.1:{port}/bucket?list-type=2&prefix=r%2F&encoding-type=url"'
    )


def test_ctrl_c_starts_no_other_file(
    built: Built, s3_server: S3Server, s3_bucket: str, s3_proxy: FaultProxy
) -> None:
    """Interrupted, publish stops: the files queued are not uploaded, nor is any index."""
    first_put = threading.Event()

    def slow(method: str, path: str, seen: int) -> None:
        if method == "PUT":
            first_put.set()
            # Under the proxy's lock: one PUT every 3 s, so that a loaded machine's main
            # thread handles the signal before a worker is done with its file.
            time.sleep(3)
        return None

    s3_proxy.rule = slow
    env = {**os.environ, **s3_server.environment(s3_proxy.endpoint)}
    command = [sys.executable, "-m", "pakman", "publish", f"s3://{s3_bucket}/r", "-j", "2"]
    command += ["--repository", str(built.repo), "--keys-dir", str(built.key.public.parent)]
    process = subprocess.Popen(
        command, cwd=built.workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert first_put.wait(30)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130
    assert err.decode().splitlines()[-1] == "pakman: interrupted"
    time.sleep(7)  # what was queued would have reached the proxy by now
    puts = [path for method, path in s3_proxy.writes() if method == "PUT"]
    assert len(puts) <= 2, puts  # those already started, at most
    assert not any(path.endswith("APKINDEX.tar.gz") for path in puts)


def test_a_profile_that_is_not_there(built: Built, s3_server: S3Server, run: Publish) -> None:
    result = run(built, "s3://bucket/r", "--profile", "nosuch", env={})
    assert result.code == 1
    assert result.err.splitlines()[-1] == (
        "pakman: cannot reach s3://bucket/r: The config profile (nosuch) could not be found"
    )


def test_an_endpoint_that_is_no_url(
    built: Built, run: Publish, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(built, "s3://bucket/r", env={"AWS_ENDPOINT_URL": "s3.example.com"})
    assert result.code == 1
    assert result.err.splitlines()[-1].startswith(
        "pakman: cannot reach s3://bucket/r at 's3.example.com': "
    )
    with pytest.raises(SystemExit) as exited:
        main(["publish", "s3://bucket/r", "--endpoint-url", "s3.example.com"])
    assert exited.value.code == 2
    assert "'s3.example.com' is not an http:// or https:// URL" in capsys.readouterr().err


def test_a_session_token_is_never_printed(
    built: Built, s3_server: S3Server, s3_bucket: str, run: Publish
) -> None:
    token = "session-token-5b2c9d-never-printed"
    env = {**s3_server.environment(), "AWS_SESSION_TOKEN": token}
    result = run(built, f"s3://{s3_bucket}/r", env=env)
    # SeaweedFS knows no such token: refused; the message names no secret (checked by `publish`).
    assert result.code == 1
    assert "cannot list" in result.err


def test_dry_run_prints_the_plan_and_changes_nothing(
    tmp_path: Path,
    key: KeyPair,
    built: Built,
    s3_server: S3Server,
    s3_bucket: str,
    s3_proxy: FaultProxy,
    run: Publish,
) -> None:
    env = s3_server.environment(s3_proxy.endpoint)
    url = f"s3://{s3_bucket}/r"
    assert run(built, url, env=env).code == 0
    newer = _build(tmp_path / "ws2", key, "--release", "9")
    before = s3_server.objects(s3_bucket)
    del s3_proxy.requests[:]
    result = run(newer, url, "--dry-run", env=env)
    assert result.code == 0, result.err
    assert s3_proxy.writes() == []
    assert s3_server.objects(s3_bucket) == before
    lines = result.out.splitlines()
    assert lines[0] == f"skip   {key.public.name} (unchanged)"
    assert "upload aarch64/greet-0.0.0-r9.apk (" in result.out
    assert "delete x86_64/heartbeat-0.0.0-r0.apk" in lines
    assert lines[-1].startswith("dry run, nothing changed: would upload 8 file(s) (")
    assert lines[-1].endswith(f"skip 1, delete 6 in s3://{s3_bucket}/r")
    # --no-delete: the old packages stay.
    kept = run(newer, url, "--no-delete", env=env)
    assert kept.code == 0, kept.err
    assert not any(m == "POST" for m, p in s3_proxy.writes())
    assert set(s3_server.objects(s3_bucket)) == set(before) | {f"r/{n}" for n in newer.files()}


def test_an_unverifiable_repository_is_refused(
    built: Built, s3_server: S3Server, s3_bucket: str, s3_proxy: FaultProxy, run: Publish
) -> None:
    package = built.repo / "x86_64" / "greet-0.0.0-r0.apk"
    data = bytearray(package.read_bytes())
    data[-40] ^= 0xFF  # a flipped bit in the data
    package.unlink()  # a hard link shared with the store: replace, not modify
    package.write_bytes(bytes(data))
    result = run(built, f"s3://{s3_bucket}/r", env=s3_server.environment(s3_proxy.endpoint))
    assert result.code == 3
    assert "refusing to publish: 1 file(s) do not pass verification" in result.err
    assert "x86_64/APKINDEX.tar.gz: BAD (index, signed by test-6b000000.rsa.pub): " in result.err
    assert "greet-0.0.0-r0.apk: the data does not match its datahash" in result.err
    assert s3_proxy.requests == []


def test_an_untrusted_repository_is_refused(
    built: Built, s3_server: S3Server, s3_bucket: str, tmp_path: Path, run: Publish
) -> None:
    # Trusting another key only: every file is sound but signed by a key not trusted.
    other = generate_key(tmp_path, "other", bits=2048)[1]
    built_other = Built(built.workspace, KeyPair(built.key.private, other))
    result = run(built_other, f"s3://{s3_bucket}/r", env=s3_server.environment())
    assert result.code == 3
    assert "refusing to publish: 2 file(s) do not pass verification" in result.err
    assert (
        "x86_64/APKINDEX.tar.gz: UNTRUSTED (index, signed by test-6b000000.rsa.pub, a key not given as trusted)"
        in result.err
    )
    assert s3_server.objects(s3_bucket) == {}


def test_no_repository(tmp_path: Path, key: KeyPair, run: Publish, s3_server: S3Server) -> None:
    empty = Built(tmp_path, key)
    result = run(empty, "s3://bucket/r", env=s3_server.environment())
    assert result.code == 3
    assert "no repository there (build one with `pakman build`)" in result.err


@pytest.mark.parametrize("url", ["http://bucket/r", "s3://", "bucket"])
def test_a_bad_url_is_a_usage_error(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["publish", url])
    assert exited.value.code == 2
    assert "is not an S3 URL: give s3://BUCKET or s3://BUCKET/PREFIX" in capsys.readouterr().err
