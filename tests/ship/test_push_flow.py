"""pakman.ship.push: the variables it reads, and the order of the original's push."""

from __future__ import annotations

import io
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from instellar_server import AUTH_TOKEN, PACKAGE_TOKEN, SESSION_TOKEN, Platform, serve
from push_support import KITS, SHA, write_app, write_packages

from pakman.errors import ConfigError
from pakman.ship.instellar import InstellarError, Storage
from pakman.ship.push import Upload, archive_upload, push, read_request


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    write_packages(home)
    workspace = write_app(tmp_path / "checkout", KITS)
    return {
        "HOME": str(home),
        "GITHUB_WORKSPACE": str(workspace),
        "INSTELLAR_AUTH_TOKEN": AUTH_TOKEN,
        "INSTELLAR_PACKAGE_TOKEN": PACKAGE_TOKEN,
        "WORKFLOW_SHA": SHA,
        "GITHUB_SHA": "not-this-one",
        "WORKFLOW_REF": "refs/heads/main",
        "GITHUB_REPOSITORY": "Upmaru-Stage/Loco.mo",
    }


@pytest.fixture
def platform() -> Platform:
    return Platform(
        storage={
            "host": "127.0.0.1",
            "port": 9000,
            "scheme": "http://",
            "region": "auto",
            "bucket": "deploys",
            "credential": {"access_key_id": "AK", "secret_access_key": "SK"},
        }
    )


@pytest.fixture
def endpoint(platform: Platform, environment: dict[str, str]) -> Iterator[str]:
    with serve(platform) as address:
        environment["INSTELLAR_ENDPOINT"] = address
        yield address


class Recorder:
    """An uploader that keeps what it was given (the S3 part is tested with a real server)."""

    def __init__(self) -> None:
        self.storage: Storage | None = None
        self.files: dict[str, bytes] = {}

    def __call__(
        self, storage: Storage, files: Sequence[Upload], concurrency: int, report: object
    ) -> None:
        self.storage = storage
        self.files.update({f.key: f.path.read_bytes() for f in files})


def test_the_whole_push_in_the_original_order(
    platform: Platform, endpoint: str, environment: dict[str, str]
) -> None:
    request = read_request(environment)
    uploader = Recorder()
    lines: list[str] = []
    outcome = push(request, uploader, lines.append)
    prefix = f"deployments/upmaru-stage/loco-mo/{SHA}/x86_64"
    archive_key = next(k for k in uploader.files if k.startswith("archives/"))
    assert uploader.files == {
        f"{prefix}/APKINDEX.tar.gz": b"index bytes",
        f"{prefix}/app-1.0.0-r3.apk": b"apk bytes",
        archive_key: b"zip bytes",
    }
    assert archive_key.endswith("/packages.zip") and len(archive_key.split("/")[1]) == 36
    assert uploader.storage is not None and uploader.storage.bucket == "deploys"
    assert platform.calls() == [
        ("POST", "/publish/automation/callback"),
        ("GET", f"/publish/deployments/{SHA}"),
        ("GET", "/publish/storage"),
        ("POST", "/publish/deployments"),
        ("POST", "/publish/deployments/1/configurations"),
    ]
    assert platform.requests[3].body == {
        "deployment": {
            "ref": "refs/heads/main",
            "hash": SHA,
            "archive_path": archive_key,
            "stack": "alpine/3.20",
        }
    }
    assert platform.requests[4].body == {
        "configuration": {
            "payload": {
                "kits": [
                    {
                        "name": "web",
                        "main": True,
                        "ports": [{"name": "web", "target": 4000, "main": True}],
                    }
                ],
                "sizes": [{"name": "small", "cpu": 1, "memory": 512}],
                "plans": [{"name": "basic"}],
                "page": {"title": "An app"},
            }
        }
    }
    assert outcome.deployment_created and outcome.configuration == "created"
    assert any("(branch main)" in line for line in lines)
    for line in lines:
        for token in (AUTH_TOKEN, PACKAGE_TOKEN, SESSION_TOKEN):
            assert token not in line


def test_a_deployment_that_exists_is_copied_without_uploading(
    platform: Platform, endpoint: str, environment: dict[str, str]
) -> None:
    platform.deployments[SHA] = {"id": 7, "archive_path": "archives/earlier/packages.zip"}
    uploader = Recorder()
    outcome = push(read_request(environment), uploader, lambda line: None)
    assert outcome.copied and uploader.files == {} and uploader.storage is None
    assert platform.calls() == [
        ("POST", "/publish/automation/callback"),
        ("GET", f"/publish/deployments/{SHA}"),
        ("POST", "/publish/deployments"),
        ("POST", "/publish/deployments/7/configurations"),
    ]
    assert platform.requests[2].body["deployment"]["archive_path"] == (
        "archives/earlier/packages.zip"
    )
    assert not outcome.deployment_created  # the platform answered 200


def test_without_kits_no_configuration_is_posted(
    platform: Platform, endpoint: str, environment: dict[str, str], tmp_path: Path
) -> None:
    write_app(tmp_path / "checkout", "sizes: [{name: small}]\n", stack="")
    outcome = push(read_request(environment), Recorder(), lambda line: None)
    assert outcome.configuration == "none"
    assert platform.calls()[-1] == ("POST", "/publish/deployments")
    # No stack in instellar.yml: none is sent (pakman's default stack is not the user's).
    assert "stack" not in platform.requests[-1].body["deployment"]


def test_kits_alone_send_kits_alone(
    platform: Platform, endpoint: str, environment: dict[str, str], tmp_path: Path
) -> None:
    write_app(tmp_path / "checkout", "kits: [{name: web, main: true}]\n")
    push(read_request(environment), Recorder(), lambda line: None)
    assert platform.requests[-1].body == {
        "configuration": {"payload": {"kits": [{"name": "web", "main": True}]}}
    }


def test_a_failed_upload_creates_no_deployment(
    platform: Platform, endpoint: str, environment: dict[str, str]
) -> None:
    def failing(
        storage: Storage, files: Sequence[Upload], concurrency: int, report: object
    ) -> None:
        raise InstellarError("upload", "refused")

    with pytest.raises(InstellarError):
        push(read_request(environment), failing, lambda line: None)
    assert ("POST", "/publish/deployments") not in platform.calls()


def test_a_failing_step_stops_the_push(
    platform: Platform, endpoint: str, environment: dict[str, str]
) -> None:
    platform.fail["/publish/storage"] = 500
    uploader = Recorder()
    with pytest.raises(InstellarError, match="get the storage credential: HTTP 500"):
        push(read_request(environment), uploader, lambda line: None)
    assert uploader.files == {}
    assert platform.calls()[-1] == ("GET", "/publish/storage")


def test_every_missing_variable_is_named_at_once(environment: dict[str, str]) -> None:
    for name in ("INSTELLAR_AUTH_TOKEN", "WORKFLOW_SHA", "GITHUB_SHA", "GITHUB_REPOSITORY"):
        del environment[name]
    environment["INSTELLAR_PACKAGE_TOKEN"] = ""
    with pytest.raises(ConfigError) as caught:
        read_request(environment)
    message = str(caught.value)
    for said in (
        "INSTELLAR_AUTH_TOKEN is not set",
        "INSTELLAR_PACKAGE_TOKEN is not set",
        "WORKFLOW_SHA or GITHUB_SHA is not set",
        "GITHUB_REPOSITORY is not set",
    ):
        assert said in message


def test_github_variables_are_the_fallback(environment: dict[str, str]) -> None:
    environment.pop("WORKFLOW_SHA")
    environment.pop("WORKFLOW_REF")
    environment["GITHUB_SHA"] = "feed"
    environment["GITHUB_REF"] = "refs/heads/release/2.0"
    request = read_request(environment)
    assert (request.sha, request.ref, request.branch) == (
        "feed",
        "refs/heads/release/2.0",
        "release/2.0",
    )


def test_the_branch_is_read_from_the_variables_value(environment: dict[str, str]) -> None:
    # The original's Environment.branch replaced in the text "GITHUB_REF" itself.
    environment["WORKFLOW_REF"] = "refs/heads/feature-x"
    assert read_request(environment).branch == "feature-x"
    environment["WORKFLOW_REF"] = "refs/tags/v1.2.0"
    assert read_request(environment).branch == "refs/tags/v1.2.0"


def test_a_sha_that_is_not_a_commit_id_is_refused(environment: dict[str, str]) -> None:
    environment["WORKFLOW_SHA"] = "../../x"
    with pytest.raises(ConfigError, match="is not a commit id"):
        read_request(environment)


def test_no_packages_stops_before_storage(
    platform: Platform, endpoint: str, environment: dict[str, str], tmp_path: Path
) -> None:
    request = read_request(environment, packages=tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no packages in"):
        push(request, Recorder(), lambda line: None)
    assert ("GET", "/publish/storage") not in platform.calls()


def test_a_missing_archive_stops_before_storage(
    platform: Platform, endpoint: str, environment: dict[str, str]
) -> None:
    request = read_request(environment, archive=Path("missing.zip"))
    assert request.archive == Path(environment["HOME"]) / "missing.zip"
    with pytest.raises(ConfigError, match="cannot read the archive"):
        push(request, Recorder(), lambda line: None)
    assert ("GET", "/publish/storage") not in platform.calls()


def test_the_archive_key_is_the_same_for_the_same_bytes(environment: dict[str, str]) -> None:
    archive = Path(environment["HOME"]) / "packages.zip"
    first = archive_upload(archive).key
    assert archive_upload(archive).key == first
    archive.write_bytes(b"other zip bytes")
    assert archive_upload(archive).key != first


def test_without_an_archive_push_makes_one_the_same_every_time(
    platform: Platform, endpoint: str, environment: dict[str, str]
) -> None:
    (Path(environment["HOME"]) / "packages.zip").unlink()
    request = read_request(environment)
    assert request.archive is None
    made = []
    for _ in range(2):
        platform.deployments.clear()  # a new commit's push each time, not a copy
        uploader = Recorder()
        push(request, uploader, lambda line: None)
        [key] = [k for k in uploader.files if k.startswith("archives/")]
        assert key.endswith("/packages.zip")
        made.append((key, uploader.files[key]))
    assert made[0] == made[1]
    with zipfile.ZipFile(io.BytesIO(made[0][1])) as archive:
        assert {i.filename: archive.read(i) for i in archive.infolist()} == {
            "packages/x86_64/APKINDEX.tar.gz": b"index bytes",
            "packages/x86_64/app-1.0.0-r3.apk": b"apk bytes",
        }
    assert platform.requests[3].body["deployment"]["archive_path"] == made[0][0]


def test_the_packages_are_home_packages_else_the_workspace_repository(
    environment: dict[str, str], tmp_path: Path
) -> None:
    home = Path(environment["HOME"])
    assert read_request(environment).packages == home / "packages"
    shutil.rmtree(home / "packages")
    workspace = Path(environment["GITHUB_WORKSPACE"])
    (workspace / ".pakman/repo").mkdir(parents=True)
    assert read_request(environment).packages == workspace / ".pakman/repo"
    assert read_request(environment, packages=tmp_path).packages == tmp_path


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("ftp://opsmaru.com", "INSTELLAR_ENDPOINT is not an http:// or https:// address"),
        ("opsmaru.com", "INSTELLAR_ENDPOINT is not an http:// or https:// address"),
        ("https://me:hunter2@opsmaru.com", "INSTELLAR_ENDPOINT holds a user or password"),
    ],
)
def test_an_endpoint_that_is_not_an_address(
    environment: dict[str, str], value: str, said: str
) -> None:
    environment["INSTELLAR_ENDPOINT"] = value
    with pytest.raises(ConfigError) as caught:
        read_request(environment)
    assert said in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_the_endpoint_defaults_to_the_originals(environment: dict[str, str]) -> None:
    environment.pop("INSTELLAR_ENDPOINT", None)
    assert read_request(environment).endpoint == "https://opsmaru.com"
