"""The Instellar API client against a local platform (tests/ship/instellar_server.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from instellar_server import AUTH_TOKEN, PACKAGE_TOKEN, SESSION_TOKEN, Platform, serve

from pakman.ship.instellar import InstellarClient, InstellarError, Secret

TOKENS = (AUTH_TOKEN, PACKAGE_TOKEN, SESSION_TOKEN)


@pytest.fixture
def platform() -> Platform:
    return Platform(
        storage={
            "host": "127.0.0.1",
            "port": 9,
            "scheme": "http://",
            "region": "auto",
            "bucket": "b",
            "credential": {"access_key_id": "AK", "secret_access_key": "SK"},
        }
    )


@pytest.fixture
def endpoint(platform: Platform) -> Iterator[str]:
    with serve(platform) as address:
        yield address


def client(endpoint: str, auth: str = AUTH_TOKEN, timeout: float = 5) -> InstellarClient:
    return InstellarClient(endpoint, Secret(auth), Secret(PACKAGE_TOKEN), timeout=timeout)


def no_token_in(text: str) -> None:
    for token in TOKENS:
        assert token not in text


def test_each_request_as_the_original_sends_it(platform: Platform, endpoint: str) -> None:
    api = client(endpoint)
    api.authenticate()
    assert api.get_deployment("abc123") is None
    storage = api.get_storage()
    assert storage.endpoint_url == "http://127.0.0.1:9"
    assert storage.access_key_id.reveal() == "AK"
    created, deployment = api.create_deployment(
        ref="refs/heads/main", sha="abc123", archive_path="archives/x/packages.zip", stack=None
    )
    assert created and deployment.id == "1"
    assert api.create_configuration(deployment.id, {"kits": []}) is True
    assert api.create_configuration(deployment.id, {"kits": []}) is False
    assert platform.calls() == [
        ("POST", "/publish/automation/callback"),
        ("GET", "/publish/deployments/abc123"),
        ("GET", "/publish/storage"),
        ("POST", "/publish/deployments"),
        ("POST", "/publish/deployments/1/configurations"),
        ("POST", "/publish/deployments/1/configurations"),
    ]
    first, *rest = platform.requests
    assert first.body == {"auth_token": AUTH_TOKEN}
    assert "authorization" not in first.headers
    assert first.headers["content-type"] == "application/json"
    for request in rest:
        assert request.headers["authorization"] == f"Bearer {SESSION_TOKEN}"
        assert request.headers["x-instellar-package-token"] == PACKAGE_TOKEN
    assert platform.requests[3].body == {
        "deployment": {
            "ref": "refs/heads/main",
            "hash": "abc123",
            "archive_path": "archives/x/packages.zip",
        }
    }
    assert platform.requests[4].body == {"configuration": {"payload": {"kits": []}}}


def test_an_unknown_auth_token_is_a_clear_error(endpoint: str) -> None:
    with pytest.raises(InstellarError) as caught:
        client(endpoint, auth="wrong-" + AUTH_TOKEN).authenticate()
    assert caught.value.status == 404
    assert str(caught.value).startswith("instellar: authenticate: HTTP 404:")
    assert "INSTELLAR_AUTH_TOKEN" in str(caught.value)
    no_token_in(str(caught.value))


@pytest.mark.parametrize(
    ("path", "status", "call", "step"),
    [
        ("/publish/automation/callback", 500, "authenticate", "authenticate"),
        ("/publish/automation/callback", 401, "authenticate", "authenticate"),
        ("/publish/deployments/abc", 500, "get_deployment", "look up the deployment"),
        ("/publish/deployments/abc", 401, "get_deployment", "look up the deployment"),
        ("/publish/storage", 403, "get_storage", "get the storage credential"),
        ("/publish/storage", 404, "get_storage", "get the storage credential"),
        ("/publish/storage", 502, "get_storage", "get the storage credential"),
        ("/publish/deployments", 422, "create_deployment", "create the deployment"),
        ("/publish/deployments", 500, "create_deployment", "create the deployment"),
        ("/publish/deployments/1/configurations", 500, "create_configuration", "kits"),
        ("/publish/deployments/1/configurations", 302, "create_configuration", "kits"),
    ],
)
def test_every_status_names_the_step_and_the_status(
    platform: Platform, endpoint: str, path: str, status: int, call: str, step: str
) -> None:
    platform.fail[path] = status
    api = client(endpoint)
    with pytest.raises(InstellarError) as caught:
        if call != "authenticate":
            api.authenticate()
        if call == "get_deployment":
            api.get_deployment("abc")
        elif call == "get_storage":
            api.get_storage()
        elif call == "create_deployment":
            api.create_deployment(ref="r", sha="abc", archive_path="a", stack=None)
        elif call == "create_configuration":
            api.create_configuration("1", {"kits": []})
        else:
            api.authenticate()
    message = str(caught.value)
    assert caught.value.status == status
    assert step in message and f"HTTP {status}" in message
    no_token_in(message)


def test_a_refused_configuration_says_why(endpoint: str) -> None:
    api = client(endpoint)
    api.authenticate()
    with pytest.raises(InstellarError) as caught:
        api.create_configuration("1", {"sizes": []})
    assert caught.value.status == 422
    assert "refused it" in str(caught.value) and "can't be blank" in str(caught.value)


def test_a_wrong_package_token_is_a_401(platform: Platform, endpoint: str) -> None:
    api = InstellarClient(endpoint, Secret(AUTH_TOKEN), Secret("nope"), timeout=5)
    api.authenticate()
    with pytest.raises(InstellarError) as caught:
        api.get_deployment("abc")
    assert caught.value.status == 401
    assert "INSTELLAR_PACKAGE_TOKEN" in str(caught.value)


def test_an_answer_without_a_token(platform: Platform, endpoint: str) -> None:
    platform.fail["/publish/automation/callback"] = 201  # 201 with an errors body
    with pytest.raises(InstellarError, match=r"HTTP 201 without a token|has no data.token"):
        client(endpoint).authenticate()


def test_a_server_that_never_answers_fails_in_bounded_time(platform: Platform) -> None:
    platform.hang = threading.Event()
    with serve(platform) as address:
        started = time.monotonic()
        with pytest.raises(InstellarError) as caught:
            client(address, timeout=1).authenticate()
        elapsed = time.monotonic() - started
    assert elapsed < 5
    assert str(caught.value) == f"instellar: authenticate: no answer from {address} within 1 s"


def test_nothing_listening_is_a_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(InstellarError, match=r"authenticate: cannot reach http://127.0.0.1:\d+: "):
        client(f"http://127.0.0.1:{port}").authenticate()


def test_tokens_stay_out_of_reprs() -> None:
    api = client("http://127.0.0.1:1")
    no_token_in(repr(api) + repr(Secret(AUTH_TOKEN)) + str(Secret(AUTH_TOKEN)))
    assert repr(Secret(AUTH_TOKEN)) == "Secret('***')"


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"host": "evil.example/x"}, "the answer's host is not a host name"),
        ({"host": None}, "the answer has no host"),
        ({"scheme": "ftp://"}, "the answer's scheme is neither https:// nor http://"),
        ({"port": "80a"}, "the answer's port is not a number"),
        ({"credential": {"access_key_id": "AK"}}, "the answer has no secret_access_key"),
    ],
)
def test_a_storage_answer_pakman_cannot_use_is_a_clear_error(
    platform: Platform, endpoint: str, change: dict[str, object], said: str
) -> None:
    platform.storage.update(change)
    api = client(endpoint)
    api.authenticate()
    with pytest.raises(InstellarError) as caught:
        api.get_storage()
    assert str(caught.value) == f"instellar: get the storage credential: HTTP 200: {said}"


def test_a_storage_port_may_be_text_or_absent(platform: Platform, endpoint: str) -> None:
    api = client(endpoint)
    api.authenticate()
    platform.storage["port"] = "9000"
    assert api.get_storage().endpoint_url == "http://127.0.0.1:9000"
    del platform.storage["port"]
    platform.storage["scheme"] = "https://"
    assert api.get_storage().endpoint_url == "https://127.0.0.1"


def test_a_redirect_is_not_followed(platform: Platform, endpoint: str) -> None:
    elsewhere = Platform()
    with serve(elsewhere) as other:
        platform.redirect["/publish/storage"] = f"{other}/publish/storage"
        api = client(endpoint)
        api.authenticate()
        with pytest.raises(InstellarError) as caught:
            api.get_storage()
    assert caught.value.status == 302
    assert "a redirect, not followed" in str(caught.value)
    assert elsewhere.requests == []  # the tokens went nowhere else
