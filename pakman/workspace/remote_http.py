"""The remote cache's HTTP client: many requests at once on kept-alive connections (libcurl).

A fresh clone asks for thousands of small objects (a record per step, a blob
per file). Python's http.client spends most of each request parsing headers
under the GIL; libcurl's multi interface (through pycurl) runs every transfer
of a batch from one thread, in C, on up to `concurrency` connections it keeps
open, with HTTP/2 where a TLS server offers it. The caller handles each
answer as it arrives, and may queue more requests meanwhile (a record names
its blobs).

What the client does and does not do: only http and https, redirects not
followed, no proxy from the environment (the auth header goes to the cache
and nowhere else), a connection timeout and a stall timeout (no byte for
`timeout` seconds), up to three attempts of a request answered 5xx or cut
off (unless part of its body was already used), then no further request in
the run: a failing cache costs one wait, not one per step.
"""

from __future__ import annotations

import heapq
import io
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pycurl

from pakman.errors import PakmanError
from pakman.workspace.remote_options import DEFAULT_TIMEOUT, cache_address

DEFAULT_CONCURRENCY = 16
PROBE_TIMEOUT = 0.8  # seconds the first request may take before the cache counts as unreachable
RETRIES = 3  # attempts of a request answered 5xx or cut off
_BACKOFF = 0.05  # seconds before the second attempt; doubled for each further one
_PROTOCOLS = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS


class RemoteError(PakmanError):
    """A request to the remote cache failed (after its retries)."""


class Unreachable(RemoteError):
    """The remote cache could not be reached at all."""


@dataclass(eq=False)
class Exchange:
    """One request and, once done, its answer: `status` (0 when it failed) and `body`, or `error`."""

    method: str  # GET, HEAD or PUT
    path: str  # under the cache URL, e.g. /cas/<sha256>
    body: bytes | Path | None = None  # what a PUT sends
    # Receives the body of a 200 in pieces, instead of `body` (a large blob goes to a file).
    sink: Callable[[bytes], None] | None = None
    tag: object = None  # the caller's, untouched
    any_status: bool = False  # done with any answer, 5xx too (the probe: the server answered)
    status: int = 0
    answer: bytes = b""
    error: str = ""  # what failed, with the request: "GET <url>/cas/...: timed out"
    reason: str = ""  # the same, without the request
    attempts: int = 0
    # While it runs: the status line seen, the pieces kept, bytes given to the sink.
    _status: int = 0
    _parts: list[bytes] = field(default_factory=list)
    _delivered: int = 0
    _problem: BaseException | None = None
    _upload: IO[bytes] | None = None


class HttpCache:
    """A client of one cache URL (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        header: tuple[str, str] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        address = cache_address(url)
        scheme = "https" if address.https else "http"
        host = f"[{address.host}]" if ":" in address.host else address.host
        self._prefix = f"{scheme}://{host}:{address.port}{address.base}"
        # What messages show: never a user or password in the URL, never the header.
        self.shown = address.shown
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        # No `Expect: 100-continue` (a wait on servers that ignore it).
        self._headers = ["Expect:"]
        if header is not None:
            self._headers.append(f"{header[0]}: {header[1]}")
        self._multi: pycurl.CurlMulti | None = None
        self._idle: list[pycurl.Curl] = []
        self.failed = False  # a request failed after its retries: the rest fail at once

    def close(self) -> None:
        for handle in self._idle:
            handle.close()
        self._idle.clear()
        if self._multi is not None:
            self._multi.close()
            self._multi = None

    # one request ----------------------------------------------------------------

    def probe(self) -> None:
        """One request, no retry, answered within PROBE_TIMEOUT: raises Unreachable if not.

        So a cache that is down, unknown or silent costs a build one short wait,
        not a timeout per step.
        """
        exchange = Exchange("HEAD", "/ac/" + "0" * 64, attempts=RETRIES - 1, any_status=True)
        for done in self.run(deque([exchange]), limit=min(self.timeout, PROBE_TIMEOUT)):
            if done.error:
                self.failed = False  # the build goes on without the cache; said by the caller
                raise Unreachable(f"{self.shown}: {done.reason}")

    # many requests ----------------------------------------------------------------

    def run(self, queue: deque[Exchange], limit: float | None = None) -> Iterator[Exchange]:
        """Run the queued exchanges, `concurrency` at a time; yield each one when it is done.

        The caller may append to `queue` while it iterates. An exchange is
        done with an answer (any status but 5xx), or with `error` set: cut
        off, timed out or 5xx after its attempts, or not tried because an
        earlier one failed so. `limit`: seconds each attempt may take in all.
        """
        if self._multi is None:
            self._multi = pycurl.CurlMulti()
        multi = self._multi
        active: dict[pycurl.Curl, Exchange] = {}
        retries: list[tuple[float, int, Exchange]] = []  # a heap: (when, order, exchange)
        order = 0
        try:
            while queue or active or retries:
                now = time.monotonic()
                while retries and retries[0][0] <= now:
                    queue.appendleft(heapq.heappop(retries)[2])
                # While a request waits to be tried again, no new one starts: a
                # server answering 5xx gets no more than `concurrency` at a time to refuse.
                while queue and not retries and len(active) < self.concurrency:
                    exchange = queue.popleft()
                    if self.failed:
                        self._fail(exchange, "not tried after earlier failures")
                        yield exchange
                        continue
                    handle = self._idle.pop() if self._idle else pycurl.Curl()
                    self._prepare(handle, exchange, limit)
                    multi.add_handle(handle)
                    active[handle] = exchange
                if not active:
                    if retries:
                        time.sleep(max(0.0, retries[0][0] - time.monotonic()))
                    continue
                multi.perform()
                finished: list[tuple[pycurl.Curl, str]] = []
                while True:
                    waiting, ok, failed = multi.info_read()
                    finished += [(handle, "") for handle in ok]
                    finished += [
                        (handle, _curl_reason(code, text)) for handle, code, text in failed
                    ]
                    if not waiting:
                        break
                if not finished:
                    multi.select(0.05)
                    continue
                for handle, problem in finished:
                    exchange = active.pop(handle)
                    multi.remove_handle(handle)
                    self._idle.append(handle)
                    if self._finish(handle, exchange, problem):
                        yield exchange
                        continue
                    order += 1
                    delay = _BACKOFF * 2 ** (exchange.attempts - 1)
                    heapq.heappush(retries, (time.monotonic() + delay, order, exchange))
        finally:
            for handle, exchange in active.items():
                multi.remove_handle(handle)
                self._idle.append(handle)
                _close_upload(exchange)

    def _prepare(self, handle: pycurl.Curl, exchange: Exchange, limit: float | None) -> None:
        exchange._status = 0
        exchange._parts = []
        exchange._problem = None
        handle.reset()
        handle.setopt(pycurl.URL, self._prefix + exchange.path)
        handle.setopt(pycurl.PROTOCOLS, _PROTOCOLS)
        handle.setopt(pycurl.REDIR_PROTOCOLS, _PROTOCOLS)
        handle.setopt(pycurl.FOLLOWLOCATION, 0)
        handle.setopt(pycurl.PROXY, "")  # never a proxy from the environment
        handle.setopt(pycurl.NOSIGNAL, 1)
        handle.setopt(pycurl.HTTPHEADER, self._headers)
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(self.timeout * 1000)))
        if limit is not None:
            handle.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(limit * 1000)))
            handle.setopt(pycurl.TIMEOUT_MS, max(1, int(limit * 1000)))
        else:
            # Stalled: no byte for `timeout` seconds (in whole seconds, libcurl's unit).
            handle.setopt(pycurl.LOW_SPEED_LIMIT, 1)
            handle.setopt(pycurl.LOW_SPEED_TIME, max(1, math.ceil(self.timeout)))
        handle.setopt(pycurl.HEADERFUNCTION, lambda line: _status_line(exchange, line))
        handle.setopt(pycurl.WRITEFUNCTION, lambda chunk: _received(exchange, chunk))
        if exchange.method == "HEAD":
            handle.setopt(pycurl.NOBODY, 1)
        elif exchange.method == "PUT":
            body = exchange.body if exchange.body is not None else b""
            if isinstance(body, Path):
                size = body.stat().st_size
                exchange._upload = body.open("rb")
            else:
                exchange._upload = io.BytesIO(body)
                size = len(body)
            handle.setopt(pycurl.UPLOAD, 1)
            handle.setopt(pycurl.READDATA, exchange._upload)
            handle.setopt(pycurl.INFILESIZE_LARGE, size)
        else:
            handle.setopt(pycurl.HTTPGET, 1)

    def _finish(self, handle: pycurl.Curl, exchange: Exchange, problem: str) -> bool:
        """Settle an attempt; False when it is to be tried again."""
        _close_upload(exchange)
        exchange.attempts += 1
        if exchange._problem is not None:
            if not isinstance(exchange._problem, OSError):
                raise exchange._problem  # a bug of the sink's, not a failed request
            # The sink could not keep the body (a full disk): not tried again.
            self._fail(exchange, str(exchange._problem))
            return True
        if not problem:
            status = int(handle.getinfo(pycurl.RESPONSE_CODE))
            if status < 500 or exchange.any_status:
                exchange.status = status
                exchange.answer = b"".join(exchange._parts)
                exchange._parts = []
                return True
            problem = f"HTTP {status}"
        if exchange._delivered:
            self._fail(exchange, problem)  # part of the body was used: this one is lost
            return True
        if exchange.attempts < RETRIES:
            return False
        self.failed = True
        self._fail(exchange, problem)
        return True

    def _fail(self, exchange: Exchange, reason: str) -> None:
        exchange.reason = reason
        exchange.error = f"{exchange.method} {self.shown}{exchange.path}: {reason}"


def _status_line(exchange: Exchange, line: bytes) -> None:
    if line.startswith(b"HTTP/"):
        fields = line.split(None, 2)
        exchange._status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0


def _received(exchange: Exchange, chunk: bytes) -> int | None:
    if exchange.sink is None or exchange._status != 200:
        exchange._parts.append(chunk)
        return None
    try:
        exchange.sink(chunk)
    except Exception as exc:  # raised again by `run` unless an OSError (a full disk)
        exchange._problem = exc
        return 0  # libcurl ends the transfer
    exchange._delivered += len(chunk)
    return None


def _close_upload(exchange: Exchange) -> None:
    if exchange._upload is not None:
        exchange._upload.close()
        exchange._upload = None


# libcurl's error codes, said as people say them.
_REASONS = {
    pycurl.E_OPERATION_TIMEDOUT: "timed out",
    pycurl.E_COULDNT_CONNECT: "connection refused",
    pycurl.E_COULDNT_RESOLVE_HOST: "cannot resolve the host",
    pycurl.E_GOT_NOTHING: "the server closed the connection without answering",
    pycurl.E_SEND_ERROR: "connection reset while sending",
    pycurl.E_RECV_ERROR: "connection reset while receiving",
    pycurl.E_PARTIAL_FILE: "the answer was cut short",
}


def _curl_reason(code: int, text: str) -> str:
    return _REASONS.get(code) or text or f"libcurl error {code}"
