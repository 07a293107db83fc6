"""pakman.ship.s3 against a real S3 server (SeaweedFS on 127.0.0.1), some runs through a fault injector."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from pakman.ship import s3
from s3_support import (
    ACCESS_KEY,
    SECRET_KEY,
    FaultProxy,
    S3Server,
    fail_first_puts,
    fail_puts_matching,
)


def _target(
    server: S3Server,
    bucket: str,
    prefix: str = "repo",
    secret: str = SECRET_KEY,
    endpoint: str | None = None,
) -> s3.Target:
    return s3.Target(
        bucket,
        prefix,
        endpoint_url=endpoint or server.endpoint,
        region="us-east-1",
        credentials=s3.Credentials(ACCESS_KEY, secret),
    )


def _files(folder: Path, count: int = 5, size: int = 3000) -> list[tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for n in range(count):
        path = folder / f"pkg{n}-1.0-r0.apk"
        path.write_bytes(os.urandom(size + n))
        pairs.append((path, f"x86_64/{path.name}"))
    return pairs


def test_upload_sends_exactly_the_files_then_a_rerun_sends_nothing(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    files = _files(tmp_path / "files")
    events: list[s3.Progress] = []
    lock = threading.Lock()

    def record(event: s3.Progress) -> None:
        with lock:
            events.append(event)

    target = _target(s3_server, s3_bucket)
    summary = s3.upload(target, files, concurrency=3, progress=record)
    assert summary.ok and len(summary.uploaded) == 5 and not summary.skipped
    stored = s3_server.objects(s3_bucket)
    assert stored == {f"repo/{name}": path.read_bytes() for path, name in files}
    # Every byte was reported as sent, and each file ended once.
    assert sum(e.sent for e in events if e.event == "sent") == sum(
        p.stat().st_size for p, _ in files
    )
    assert sorted(e.name for e in events if e.event == "uploaded") == sorted(n for _, n in files)

    again = s3.upload(target, files, concurrency=3)
    assert again.ok and not again.uploaded and len(again.skipped) == 5
    assert again.line() == "0 uploaded (0 B), 5 skipped (unchanged), 0 failed"


def test_a_rerun_uploads_only_what_is_missing_or_different(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, s3_proxy: FaultProxy
) -> None:
    files = _files(tmp_path / "files")
    target = _target(s3_server, s3_bucket)
    assert s3.upload(target, files[:3]).ok
    # Same size, other bytes: the checksum tells them apart.
    changed = files[1][0]
    changed.write_bytes(bytes(b ^ 0xFF for b in changed.read_bytes()))
    through_proxy = _target(s3_server, s3_bucket, endpoint=s3_proxy.endpoint)
    summary = s3.upload(through_proxy, files)
    assert {o.name for o in summary.uploaded} == {files[1][1], files[3][1], files[4][1]}
    assert {o.name for o in summary.skipped} == {files[0][1], files[2][1]}
    assert {o.name: o.reason for o in summary.uploaded} == {
        files[1][1]: s3.REPLACED,
        files[3][1]: "",
        files[4][1]: "",
    }
    assert sorted(p for m, p in s3_proxy.writes()) == sorted(
        f"/{s3_bucket}/repo/{name}" for name in (files[1][1], files[3][1], files[4][1])
    )
    assert s3_server.objects(s3_bucket)[f"repo/{files[1][1]}"] == changed.read_bytes()


def test_a_listing_spares_the_questions(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, s3_proxy: FaultProxy
) -> None:
    """With a listing, a file whose ETag is its MD5 is skipped, a new one sent, without a HEAD."""
    files = _files(tmp_path / "files", count=3)
    target = _target(s3_server, s3_bucket, endpoint=s3_proxy.endpoint)
    assert s3.upload(target, files[:2]).ok
    known = s3.list_objects(target)
    assert set(known) == {files[0][1], files[1][1]}
    assert known[files[0][1]].etag == hashlib.md5(files[0][0].read_bytes()).hexdigest()
    del s3_proxy.requests[:]
    summary = s3.upload(target, files, known=known)
    assert [o.status for o in summary.outcomes] == ["skipped", "skipped", "uploaded"]
    assert [(r.method, r.path) for r in s3_proxy.requests] == [
        ("PUT", f"/{s3_bucket}/repo/{files[2][1]}")
    ]


def test_a_multipart_upload_is_recognised_by_its_sha256(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A multipart object's ETag is no MD5: the sha256 pakman stores in its metadata tells."""
    monkeypatch.setattr(s3, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(s3, "MULTIPART_CHUNK", 5 * 1024 * 1024)
    big = tmp_path / "big-1.0-r0.apk"
    big.write_bytes(os.urandom(11 * 1024 * 1024))
    target = _target(s3_server, s3_bucket)
    assert s3.upload(target, [(big, "big.apk")]).ok
    listed = s3.list_objects(target)["big.apk"]
    assert "-" in listed.etag  # multipart: not the MD5
    assert s3_server.objects(s3_bucket)["repo/big.apk"] == big.read_bytes()
    again = s3.upload(target, [(big, "big.apk")], known=s3.list_objects(target))
    assert [o.status for o in again.outcomes] == ["skipped"]


def test_a_server_failing_some_puts_then_recovering(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, s3_proxy: FaultProxy
) -> None:
    files = _files(tmp_path / "files", count=4)
    # More failures than botocore's attempts for one request (2 here, to keep its
    # backoff short): a whole-file retry is needed.
    s3_proxy.rule = fail_first_puts(3)
    events: list[s3.Progress] = []
    target = _target(s3_server, s3_bucket, endpoint=s3_proxy.endpoint)
    summary = s3.upload(
        target,
        files,
        concurrency=1,
        backoff=0.05,
        progress=events.append,
        s3=s3.client(target, request_attempts=2),
    )
    assert summary.ok, summary.failed
    assert s3_server.objects(s3_bucket) == {f"repo/{n}": p.read_bytes() for p, n in files}
    assert [r.status for r in s3_proxy.requests if r.injected] == [503] * 3
    assert [o.attempts for o in summary.outcomes] == [2, 1, 1, 1]
    assert [e.reason.split(":")[0] for e in events if e.event == "retrying"] == [
        "SlowDown (HTTP 503)"
    ]


def test_a_file_that_keeps_failing_is_named_with_its_reason(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, s3_proxy: FaultProxy
) -> None:
    files = _files(tmp_path / "files", count=3)
    s3_proxy.rule = fail_puts_matching(r"pkg1-")
    summary = s3.upload(
        _target(s3_server, s3_bucket, endpoint=s3_proxy.endpoint), files, backoff=0.01
    )
    assert not summary.ok
    [failed] = summary.failed
    assert failed.name == files[1][1]
    assert failed.attempts == s3.FILE_ATTEMPTS
    assert failed.reason.startswith("InternalError (HTTP 500): injected by the test proxy")
    assert {o.name for o in summary.uploaded} == {files[0][1], files[2][1]}


def test_wrong_credentials_fail_every_file_clearly_without_retrying(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, s3_proxy: FaultProxy
) -> None:
    files = _files(tmp_path / "files", count=4)
    wrong = "wrong-secret-0d8a5b7c-never-printed"
    summary = s3.upload(
        _target(s3_server, s3_bucket, secret=wrong, endpoint=s3_proxy.endpoint),
        files,
        concurrency=1,
    )
    assert [o.status for o in summary.outcomes] == ["failed"] * 4
    assert summary.outcomes[0].reason.startswith("SignatureDoesNotMatch (HTTP 403)")
    assert summary.outcomes[0].attempts == 1
    # The files after the first are not attempted: the same key would fail them all.
    assert all(
        o.reason.startswith(f"not attempted: {files[0][1]} failed with SignatureDoesNotMatch")
        for o in summary.outcomes[1:]
    )
    assert [r.method for r in s3_proxy.requests].count("PUT") == 1
    assert s3_server.objects(s3_bucket) == {}
    for outcome in summary.outcomes:
        assert wrong not in outcome.reason and SECRET_KEY not in outcome.reason


def test_no_credentials_at_all(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    target = s3.Target(s3_bucket, "repo", endpoint_url=s3_server.endpoint)
    summary = s3.upload(target, _files(tmp_path / "files", count=2))
    assert [o.status for o in summary.outcomes] == ["failed", "failed"]
    assert summary.outcomes[0].reason.startswith("no credentials: set AWS_ACCESS_KEY_ID")


def test_list_and_delete(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    files = _files(tmp_path / "files", count=3)
    target = _target(s3_server, s3_bucket)
    outside = s3_server.client()
    outside.put_object(Bucket=s3_bucket, Key="repository/x86_64/other.apk", Body=b"x")
    assert s3.upload(target, files).ok
    listed = s3.list_objects(target)
    assert set(listed) == {n for _, n in files}  # not repository/..., which only shares letters
    assert listed[files[0][1]].size == files[0][0].stat().st_size
    assert s3.delete_objects(target, [files[0][1], files[2][1]]) == {}
    assert set(s3.list_objects(target)) == {files[1][1]}
    assert set(s3.list_objects(target, "x86_64/pkg1")) == {files[1][1]}


def test_listing_with_wrong_credentials_raises_a_clear_error(
    s3_server: S3Server, s3_bucket: str
) -> None:
    target = _target(s3_server, s3_bucket, secret="wrong-secret-never-printed")
    with pytest.raises(s3.S3Error) as raised:
        s3.list_objects(target)
    message = str(raised.value)
    assert message.startswith(f"cannot list s3://{s3_bucket}/repo/: SignatureDoesNotMatch")
    assert "wrong-secret" not in message


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://bucket", "bucket", ""),
        ("s3://bucket/", "bucket", ""),
        ("s3://bucket/a/b/", "bucket", "a/b"),
        ("s3://bucket//a//b", "bucket", "a/b"),
    ],
)
def test_target_from_url(url: str, bucket: str, prefix: str) -> None:
    target = s3.Target.from_url(url)
    assert (target.bucket, target.prefix) == (bucket, prefix)
    assert target.key("x86_64/APKINDEX.tar.gz") == "/".join(
        p for p in (prefix, "x86_64/APKINDEX.tar.gz") if p
    )


@pytest.mark.parametrize(
    "url", ["http://bucket/x", "s3:///x", "bucket/x", "s3://b/x?y=1", "s3://u:p@b/x", "s3://b/../x"]
)
def test_target_from_url_refuses(url: str) -> None:
    with pytest.raises(ValueError, match=r"S3 URL|prefix"):
        s3.Target.from_url(url)


def test_credentials_do_not_show_in_repr() -> None:
    target = s3.Target("b", credentials=s3.Credentials("AKID", "s3cr3t", "t0k3n"))
    assert "s3cr3t" not in repr(target) and "t0k3n" not in repr(target)
