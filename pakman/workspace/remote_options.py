"""The remote cache's settings, checked as text: its URL, auth header and timeout.

Kept apart from pakman.workspace.remote (an HTTP client, slow to import) so
that a build with nothing to run still refuses a bad value (exit 3) at the
cost of a string check. Messages never quote the header's value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pakman.errors import ConfigError

HEADER_VARIABLE = "PAKMAN_REMOTE_CACHE_HEADER"
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class CacheAddress:
    """Where a remote cache is: http(s), a host, a port and a base path."""

    https: bool
    host: str
    port: int
    base: str  # the path, no trailing slash

    @property
    def shown(self) -> str:
        """What messages show: never a user or password from the URL."""
        return f"{'https' if self.https else 'http'}://{self.host}:{self.port}{self.base}"


def cache_address(url: str) -> CacheAddress:
    """The address of an http(s) cache URL; ConfigError for anything else."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:  # a port that is no number, or past 65535
        raise ConfigError(f"--remote-cache / PAKMAN_REMOTE_CACHE: a bad port ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"--remote-cache / PAKMAN_REMOTE_CACHE: {parts.scheme}://{parts.hostname or ''}"
            f"{parts.path}: expected an http:// or https:// URL"
        )
    https = parts.scheme == "https"
    return CacheAddress(
        https, parts.hostname, port or (443 if https else 80), parts.path.rstrip("/")
    )


def parse_header(text: str) -> tuple[str, str]:
    """`Name: value` -> (name, value); ConfigError (which never quotes the value) if not one."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name) or "\n" in value:
        raise ConfigError(f"{HEADER_VARIABLE}: expected `Name: value` (the value is not shown)")
    return name, value


def header_from(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The auth header PAKMAN_REMOTE_CACHE_HEADER gives, or None when it is unset or blank."""
    text = environ.get(HEADER_VARIABLE, "")
    return parse_header(text) if text.strip() else None


def parse_timeout(text: str | None) -> float:
    """--remote-cache-timeout's seconds (DEFAULT_TIMEOUT when unset); ConfigError if not 0 < s <= 3600."""
    if not text:
        return DEFAULT_TIMEOUT
    try:
        timeout = float(text)
    except ValueError:
        timeout = -1
    if not 0 < timeout <= 3600:
        raise ConfigError(
            f"--remote-cache-timeout / PAKMAN_REMOTE_CACHE_TIMEOUT {text!r}: seconds, more than 0"
        )
    return timeout


def check_remote_cache(url: str, timeout: str | None, environ: Mapping[str, str]) -> None:
    """Raise ConfigError when a remote cache setting is wrong (no request is made)."""
    cache_address(url)
    header_from(environ)
    parse_timeout(timeout)
