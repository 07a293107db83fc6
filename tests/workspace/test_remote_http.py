"""The remote cache's HTTP client (libcurl's multi interface) against a real nginx on 127.0.0.1."""

from __future__ import annotations

import hashlib
import time
from collections import deque
from pathlib import Path

import pytest

from nginx_support import Nginx, free_port, request, running_nginx, silent_port
from pakman.workspace.remote_http import RETRIES, Exchange, HttpCache, RemoteError, Unreachable


def requests_in_log(server: Nginx, method: str, at_least: int = 0) -> list[str]:
    """The requests nginx logged (it logs each just after answering: waited for a moment)."""
    deadline = time.monotonic() + 5
    while True:
        found = [line for line in server.access_log().splitlines() if f'"{method} ' in line]
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def put_blobs(server: Nginx, count: int) -> dict[str, bytes]:
    (server.root / "cas").mkdir(exist_ok=True)
    blobs = {}
    for number in range(count):
        content = f"blob {number}\n".encode() * (number + 1)
        digest = hashlib.sha256(content).hexdigest()
        (server.root / "cas" / digest).write_bytes(content)
        blobs[digest] = content
    return blobs


def test_many_requests_and_more_queued_while_they_run(nginx: Nginx) -> None:
    blobs = put_blobs(nginx, 60)
    digests = sorted(blobs)
    cache = HttpCache(nginx.url, concurrency=4)
    # The first half asked at once; each answer queues one of the second half.
    queue = deque(Exchange("GET", f"/cas/{d}", tag=d) for d in digests[:30])
    later = iter(digests[30:])
    got: dict[str, bytes] = {}
    try:
        for done in cache.run(queue):
            assert not done.error and done.status == 200, done.error
            got[str(done.tag)] = done.answer
            following = next(later, None)
            if following is not None:
                queue.append(Exchange("GET", f"/cas/{following}", tag=following))
    finally:
        cache.close()
    assert got == blobs
    assert len(requests_in_log(nginx, "GET", 60)) == 60


def test_put_head_and_a_missing_object(nginx: Nginx, tmp_path: Path) -> None:
    cache = HttpCache(nginx.url)
    source = tmp_path / "large"
    source.write_bytes(bytes(range(256)) * 8192)  # 2 MiB, sent from the file
    try:
        assert request(cache, "PUT", "/cas/large", source).status == 201
        assert request(cache, "PUT", "/ac/record", b'{"format": "x"}').status == 201
        assert request(cache, "HEAD", "/cas/large").status == 200
        assert request(cache, "HEAD", "/cas/other").status == 404
        assert request(cache, "GET", "/ac/record").answer == b'{"format": "x"}'
        assert request(cache, "GET", "/ac/none").status == 404
        received: list[bytes] = []
        assert request(cache, "GET", "/cas/large", sink=received.append).answer == b""
    finally:
        cache.close()
    assert b"".join(received) == source.read_bytes()
    assert (nginx.root / "cas/large").read_bytes() == source.read_bytes()
    # No `Expect: 100-continue` round trip was asked for: one PUT each.
    assert len(requests_in_log(nginx, "PUT", 2)) == 2


def test_a_5xx_is_tried_again_then_nothing_more_is_asked(tmp_path: Path) -> None:
    with running_nginx(tmp_path / "nginx", "location / { return 503; }") as server:
        cache = HttpCache(server.url, concurrency=1)
        queue = deque(Exchange("GET", f"/cas/{n}") for n in range(5))
        try:
            done = list(cache.run(queue))
        finally:
            cache.close()
        assert [d.status for d in done] == [0] * 5
        assert done[0].error.endswith("/cas/0: HTTP 503") and done[0].attempts == RETRIES
        assert all(d.reason == "not tried after earlier failures" for d in done[1:])
        # Three attempts of the first; none of the others went out.
        assert len(requests_in_log(server, "GET", RETRIES)) == RETRIES


def test_a_proxy_in_the_environment_is_not_used(
    nginx: Nginx, monkeypatch: pytest.MonkeyPatch
) -> None:
    with silent_port() as hung:
        proxy = f"http://127.0.0.1:{hung}"
        for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        cache = HttpCache(nginx.url, timeout=2)
        try:
            cache.probe()
            assert request(cache, "GET", "/ac/none").status == 404
        finally:
            cache.close()
    # Both reached nginx itself.
    assert len(requests_in_log(nginx, "HEAD", 1) + requests_in_log(nginx, "GET", 1)) == 2


def test_the_probe(tmp_path: Path) -> None:
    with running_nginx(tmp_path / "nginx", "location / { return 500; }") as failing:
        HttpCache(failing.url).probe()  # an answer, even 500: the cache is there
    with pytest.raises(Unreachable, match="connection refused"):
        HttpCache(f"http://127.0.0.1:{free_port()}").probe()
    with silent_port() as hung:
        started = time.monotonic()
        with pytest.raises(Unreachable, match="timed out"):
            HttpCache(f"http://127.0.0.1:{hung}", timeout=30).probe()
        assert time.monotonic() - started < 5  # the probe's short wait, not the timeout


def test_a_stalled_answer_times_out(tmp_path: Path) -> None:
    with silent_port() as hung:
        stalled = f"location / {{ proxy_pass http://127.0.0.1:{hung}; proxy_read_timeout 60s; }}"
        with running_nginx(tmp_path / "nginx", stalled) as server:
            cache = HttpCache(server.url, timeout=0.5, concurrency=1)
            started = time.monotonic()
            with pytest.raises(RemoteError, match="timed out"):
                request(cache, "GET", "/cas/blob")
            took = time.monotonic() - started
            cache.close()
    # Three attempts of about a second each (libcurl counts a stall in whole seconds).
    assert took < 10


def test_a_sink_that_cannot_keep_the_body(nginx: Nginx) -> None:
    put_blobs(nginx, 1)
    (digest,) = [p.name for p in (nginx.root / "cas").iterdir()]
    cache = HttpCache(nginx.url)

    def full_disk(chunk: bytes) -> None:
        raise OSError(28, "No space left on device")

    def broken(chunk: bytes) -> None:
        raise ValueError("a bug")

    try:
        with pytest.raises(RemoteError, match="No space left on device"):
            request(cache, "GET", f"/cas/{digest}", sink=full_disk)
        assert len(requests_in_log(nginx, "GET", 1)) == 1  # not the server's fault: not again
        cache.failed = False
        with pytest.raises(ValueError, match="a bug"):  # a bug is not a failed request
            request(cache, "GET", f"/cas/{digest}", sink=broken)
    finally:
        cache.close()
