"""The Instellar platform's publishing API, as the original PAKman's `push` uses it.

Facts read from upmaru/pakman (lib/pakman/instellar.ex, push.ex,
environment.ex, cli.ex; v8.4.1), written down here so that this client and
the test server in tests/ship/ stay true to them:

- The base URL is `INSTELLAR_ENDPOINT`, default `https://opsmaru.com`.
  Requests and responses are JSON; every response body is `{"data": ...}`.
- Authenticate: `POST /publish/automation/callback` with the body
  `{"auth_token": $INSTELLAR_AUTH_TOKEN}` and no other credential. 201 answers
  `{"data": {"token": T}}`; T is the session token. 404: the platform knows
  no such auth token. (The original handles no other status.)
- Every later request carries `authorization: Bearer T` and
  `x-instellar-package-token: $INSTELLAR_PACKAGE_TOKEN`.
- Deployment of a commit: `GET /publish/deployments/<sha>`. 200 answers
  `{"data": {"attributes": {"id": ..., "archive_path": ...}}}`: the commit
  was pushed before, so its files are in storage already; 404: not yet.
- Storage credential: `GET /publish/storage`. 200 answers
  `{"data": {"attributes": {"host", "port", "scheme" ("http://" or
  "https://"), "region", "bucket", "credential": {"access_key_id",
  "secret_access_key"}}}}`. Anything else is a failure.
- Uploads (S3, to that bucket): every file of the packages folder
  (`$HOME/packages`, searched recursively) to
  `deployments/<org>/<name>/<sha>/<parent folder>/<file>` (the file's last
  two path parts, so `<arch>/<file>`), with `<org>` and `<name>` the
  slugified owner and repository of `GITHUB_REPOSITORY`; the archive
  (`$HOME/packages.zip`, `--archive`) to `archives/<uuid>/<file name>`.
  All must succeed before the deployment is created.
- Create the deployment: `POST /publish/deployments` with
  `{"deployment": {"ref", "hash", "archive_path", "stack"}}`: ref from
  `WORKFLOW_REF`, else `GITHUB_REF`; hash from `WORKFLOW_SHA`, else
  `GITHUB_SHA`; archive_path the archive's key (or, for a commit pushed
  before, the archive_path the platform answered); stack only when
  instellar.yml has a string `stack`. 201: created, 200: it existed; both
  answer `{"data": {"attributes": {"id": ...}}}`. Anything else is a failure.
- Configuration, only when instellar.yml has a list `kits`:
  `POST /publish/deployments/<id>/configurations` with
  `{"configuration": {"payload": {"kits", "sizes", "plans", "page"}}}`
  (sizes, plans and page only when present), all as written in the file.
  201: created, 200: it existed, 422: refused, with the reasons as the body;
  anything else is a failure.
- Order: authenticate; look up the commit's deployment; when it exists,
  skip storage and uploads and create the deployment from its archive_path
  (the original authenticates a second time first; this client reuses the
  token); else fetch the storage credential, upload, then create the
  deployment; then the configuration.
- instellar.yml is read from `$GITHUB_WORKSPACE/instellar.yml` (`--config`).

This client differs where the original crashed or leaked: a clear error
for every status and transport failure naming the step and the status, a
timeout the user sets (`--timeout`), no redirects followed (a redirect
would carry the tokens to another address), and tokens kept out of every
message and repr.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pakman.errors import PakmanError

DEFAULT_ENDPOINT = "https://opsmaru.com"
DEFAULT_TIMEOUT = 30.0
# How much of an error response's body a message quotes.
_BODY_EXCERPT = 300
# A storage host as the platform may name it: a DNS name, an IPv4 or a bracketed IPv6 address.
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\Z|\[[0-9A-Fa-f:.]+\]\Z")


class Secret:
    """A token: its value is only given to the request that sends it, never printed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value, for a request header or body."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class InstellarError(PakmanError):
    """A request to the platform failed: which step, which status, and why."""

    exit_code = 1

    def __init__(self, step: str, message: str, status: int | None = None) -> None:
        self.step = step
        self.status = status
        super().__init__(f"instellar: {step}: {message}")


@dataclass(frozen=True)
class Storage:
    """Where the packages go: an S3 bucket and its credential, as the platform gives them."""

    host: str
    port: int | None
    scheme: str  # "https://" or "http://", as the platform writes it
    region: str
    bucket: str
    access_key_id: Secret
    secret_access_key: Secret

    @property
    def endpoint_url(self) -> str:
        """`scheme://host[:port]`, what an S3 client is given."""
        scheme = self.scheme.removesuffix("://") or "https"
        port = f":{self.port}" if self.port else ""
        return f"{scheme}://{self.host}{port}"


@dataclass(frozen=True)
class Deployment:
    """A deployment the platform knows: its id and the key of its archive."""

    id: str
    archive_path: str | None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


class InstellarClient:
    """The platform's publishing API (see the module's docstring for each endpoint)."""

    def __init__(
        self,
        endpoint: str,
        auth_token: Secret,
        package_token: Secret,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self._auth_token = auth_token
        self._package_token = package_token
        self._token: Secret | None = None
        self._opener = urllib.request.build_opener(_NoRedirect())

    def __repr__(self) -> str:
        return f"InstellarClient({self.endpoint!r})"

    def authenticate(self) -> None:
        """Exchange INSTELLAR_AUTH_TOKEN for a session token."""
        step = "authenticate"
        status, body = self._request(
            step, "POST", "/publish/automation/callback", {"auth_token": self._auth_token.reveal()}
        )
        if status == 201:
            token = _field(step, status, body, "data", "token")
            if not isinstance(token, str) or not token:
                raise InstellarError(step, f"HTTP {status} without a token in the answer", status)
            self._token = Secret(token)
            return
        if status in (401, 403, 404):
            raise InstellarError(
                step,
                f"HTTP {status}: the platform refused INSTELLAR_AUTH_TOKEN "
                "(check the secret the workflow passes)",
                status,
            )
        raise self._unexpected(step, status, body)

    def get_deployment(self, sha: str) -> Deployment | None:
        """The deployment already made for commit `sha`, or None."""
        step = "look up the deployment of this commit"
        status, body = self._request(step, "GET", f"/publish/deployments/{_segment(sha)}")
        if status == 200:
            return _deployment(step, status, body)
        if status == 404:
            return None
        raise self._unexpected(step, status, body)

    def get_storage(self) -> Storage:
        """The bucket and credential to upload to."""
        step = "get the storage credential"
        status, body = self._request(step, "GET", "/publish/storage")
        if status != 200:
            raise self._unexpected(step, status, body)
        attributes = _field(step, status, body, "data", "attributes")
        credential = _field(step, status, attributes, "credential")
        texts = {}
        for source, key in (
            (attributes, "host"),
            (attributes, "bucket"),
            (credential, "access_key_id"),
            (credential, "secret_access_key"),
        ):
            value = source.get(key) if isinstance(source, dict) else None
            if not isinstance(value, str) or not value:
                raise InstellarError(step, f"HTTP {status}: the answer has no {key}", status)
            texts[key] = value
        if not _HOST.match(texts["host"]):
            raise InstellarError(
                step, f"HTTP {status}: the answer's host is not a host name", status
            )
        scheme = attributes.get("scheme") or "https://"
        if scheme not in ("https://", "http://", "https", "http"):
            raise InstellarError(
                step, f"HTTP {status}: the answer's scheme is neither https:// nor http://", status
            )
        port = attributes.get("port")
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        if port is not None and (not isinstance(port, int) or isinstance(port, bool)):
            raise InstellarError(step, f"HTTP {status}: the answer's port is not a number", status)
        return Storage(
            host=texts["host"],
            port=port,
            scheme=str(scheme),
            region=str(attributes.get("region") or "auto"),
            bucket=texts["bucket"],
            access_key_id=Secret(texts["access_key_id"]),
            secret_access_key=Secret(texts["secret_access_key"]),
        )

    def create_deployment(
        self, *, ref: str, sha: str, archive_path: str, stack: str | None
    ) -> tuple[bool, Deployment]:
        """Register the deployment of commit `sha`; True when created, False when it existed."""
        step = "create the deployment"
        deployment: dict[str, Any] = {"ref": ref, "hash": sha, "archive_path": archive_path}
        if stack is not None:
            deployment["stack"] = stack
        status, body = self._request(
            step, "POST", "/publish/deployments", {"deployment": deployment}
        )
        if status in (200, 201):
            return status == 201, _deployment(step, status, body)
        raise self._unexpected(step, status, body)

    def create_configuration(self, deployment_id: str, payload: Mapping[str, Any]) -> bool:
        """Post a deployment's kits configuration; True when created, False when it existed."""
        step = "create the kits configuration"
        status, body = self._request(
            step,
            "POST",
            f"/publish/deployments/{_segment(deployment_id)}/configurations",
            {"configuration": {"payload": dict(payload)}},
        )
        if status in (200, 201):
            return status == 201
        if status == 422:
            raise InstellarError(
                step, f"HTTP 422: the platform refused it: {self._excerpt(body)}", status
            )
        raise self._unexpected(step, status, body)

    def _unexpected(self, step: str, status: int, body: bytes) -> InstellarError:
        if 300 <= status < 400:
            return InstellarError(
                step,
                f"HTTP {status}: a redirect, not followed (it would carry the tokens "
                "elsewhere); set INSTELLAR_ENDPOINT to the address it names",
                status,
            )
        what = {
            401: "not authorised (the session or INSTELLAR_PACKAGE_TOKEN was refused)",
            403: "forbidden (INSTELLAR_PACKAGE_TOKEN may not publish this app)",
            404: "not found",
        }.get(status, "unexpected status")
        excerpt = self._excerpt(body)
        return InstellarError(
            step, f"HTTP {status}: {what}" + (f": {excerpt}" if excerpt else ""), status
        )

    def _excerpt(self, body: bytes) -> str:
        # Redacted before it is cut, so that no part of a token is left at the cut.
        text = self._redact(" ".join(body.decode("utf-8", "replace").split()))
        if len(text) > _BODY_EXCERPT:
            text = text[: _BODY_EXCERPT - 3] + "..."
        return text

    def _redact(self, text: str) -> str:
        for secret in (self._auth_token, self._package_token, self._token):
            if secret:
                text = text.replace(secret.reveal(), "***")
        return text

    def _request(self, step: str, method: str, path: str, payload: Any = None) -> tuple[int, bytes]:
        """Send one request; return its status and body. Transport failures raise InstellarError."""
        headers = {"accept": "application/json", "user-agent": "pakman"}
        if path != "/publish/automation/callback":
            if self._token is None:
                raise InstellarError(step, "not authenticated")
            headers["authorization"] = f"Bearer {self._token.reveal()}"
            headers["x-instellar-package-token"] = self._package_token.reveal()
        data = None
        if payload is not None:
            data = json.dumps(payload).encode()
            headers["content-type"] = "application/json"
        request = urllib.request.Request(
            self.endpoint + path, data=data, headers=headers, method=method
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    body = exc.read()
                except (OSError, http.client.HTTPException):
                    body = b""
            return exc.code, body
        except TimeoutError:
            raise InstellarError(
                step, f"no answer from {self.endpoint} within {self.timeout:g} s"
            ) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise InstellarError(
                    step, f"no answer from {self.endpoint} within {self.timeout:g} s"
                ) from None
            if isinstance(reason, ssl.SSLError):
                reason = reason.reason or reason
            elif isinstance(reason, OSError):
                reason = reason.strerror or reason
            raise InstellarError(
                step, f"cannot reach {self.endpoint}: {self._redact(str(reason))}"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise InstellarError(
                step, f"the connection to {self.endpoint} failed: {self._redact(str(exc))}"
            ) from None


def _segment(value: str) -> str:
    return urllib.parse.quote(str(value), safe="")


def _json(step: str, status: int, body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise InstellarError(step, f"HTTP {status}: the answer is not JSON", status) from None


def _field(step: str, status: int, data: Any, *keys: str) -> Any:
    """`data[k1][k2]...`, from a body (bytes, parsed as JSON) or from parsed JSON."""
    value = _json(step, status, data) if isinstance(data, bytes) else data
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            where = ".".join(keys)
            raise InstellarError(step, f"HTTP {status}: the answer has no {where}", status)
        value = value[key]
    return value


def _deployment(step: str, status: int, body: bytes) -> Deployment:
    attributes = _field(step, status, body, "data", "attributes")
    if not isinstance(attributes, dict) or attributes.get("id") is None:
        raise InstellarError(step, f"HTTP {status}: the answer has no deployment id", status)
    archive = attributes.get("archive_path")
    return Deployment(str(attributes["id"]), archive if isinstance(archive, str) else None)
