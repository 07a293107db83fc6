"""`pakman push` end to end: a local Instellar platform, and a real S3 server (SeaweedFS) as its storage."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from instellar_server import AUTH_TOKEN, PACKAGE_TOKEN, SESSION_TOKEN, Platform, serve
from push_support import KITS, SHA, write_app, write_packages

from build_support import build, make_key, make_workspace
from pakman.cli import main
from s3_support import ACCESS_KEY, SECRET_KEY, FaultProxy, S3Server, fail_puts_matching

SECRETS = (AUTH_TOKEN, PACKAGE_TOKEN, SESSION_TOKEN, SECRET_KEY)
PREFIX = f"deployments/upmaru-stage/locomo/{SHA}/x86_64"


def storage_of(endpoint: str, bucket: str, secret: str = SECRET_KEY) -> dict[str, object]:
    """The storage attributes the platform answers, pointing at `endpoint`."""
    address = urlsplit(endpoint)
    return {
        "host": address.hostname,
        "port": address.port,
        "scheme": "http://",
        "region": "us-east-1",
        "bucket": bucket,
        "credential": {"access_key_id": ACCESS_KEY, "secret_access_key": secret},
    }


@pytest.fixture
def home(tmp_path: Path) -> Path:
    write_packages(tmp_path / "home")
    write_app(tmp_path / "checkout", KITS)
    return tmp_path / "home"


@pytest.fixture
def platform(s3_server: S3Server, s3_bucket: str) -> Platform:
    return Platform(storage=storage_of(s3_server.endpoint, s3_bucket))


@pytest.fixture
def endpoint(platform: Platform) -> Iterator[str]:
    with serve(platform) as address:
        yield address


def variables(home: Path, endpoint: str) -> dict[str, str]:
    return {
        "HOME": str(home),
        "GITHUB_WORKSPACE": str(home.parent / "checkout"),
        "INSTELLAR_ENDPOINT": endpoint,
        "INSTELLAR_AUTH_TOKEN": AUTH_TOKEN,
        "INSTELLAR_PACKAGE_TOKEN": PACKAGE_TOKEN,
        "WORKFLOW_SHA": SHA,
        "WORKFLOW_REF": "refs/heads/main",
        "GITHUB_REPOSITORY": "upmaru-stage/locomo",
    }


def pakman_push(
    home: Path, endpoint: str, *args: str, **changes: str
) -> subprocess.CompletedProcess[str]:
    """`pakman push ARGS` in a process of its own, as a workflow runs it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "GITHUB_", "WORKFLOW_", "INSTELLAR_"))
    }
    env.update(variables(home, endpoint))
    env.update(changes)
    return subprocess.run(
        [sys.executable, "-m", "pakman", "push", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def no_secret_in(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def test_push_uploads_the_repository_and_registers_the_deployment(
    s3_server: S3Server, s3_bucket: str, platform: Platform, endpoint: str, home: Path
) -> None:
    done = pakman_push(home, endpoint, "--concurrency", "3")
    assert done.returncode == 0, done.stderr
    stored = s3_server.objects(s3_bucket)
    archive = next(k for k in stored if k.startswith("archives/"))
    assert stored == {
        f"{PREFIX}/APKINDEX.tar.gz": b"index bytes",
        f"{PREFIX}/app-1.0.0-r3.apk": b"apk bytes",
        archive: b"zip bytes",
    }
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
            "archive_path": archive,
            "stack": "alpine/3.20",
        }
    }
    assert set(platform.requests[4].body["configuration"]["payload"]) == {
        "kits",
        "sizes",
        "plans",
        "page",
    }
    assert "(branch main)" in done.stdout
    assert "3 uploaded" in done.stdout and "0 failed" in done.stdout
    # Not a terminal (a CI log): one plain line per file on standard error.
    assert f"uploaded {PREFIX}/app-1.0.0-r3.apk (9 B)" in done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    no_secret_in(done.stdout, done.stderr)

    # The same commit again: the platform has its deployment, so nothing is uploaded.
    del platform.requests[:]
    again = pakman_push(home, endpoint)
    assert again.returncode == 0, again.stderr
    assert platform.calls() == [
        ("POST", "/publish/automation/callback"),
        ("GET", f"/publish/deployments/{SHA}"),
        ("POST", "/publish/deployments"),
        ("POST", "/publish/deployments/1/configurations"),
    ]
    assert platform.requests[2].body["deployment"]["archive_path"] == archive
    assert "(the existing deployment copied, nothing uploaded)" in again.stdout
    assert s3_server.objects(s3_bucket) == stored
    no_secret_in(again.stdout, again.stderr)


def test_a_failed_upload_registers_nothing_and_a_rerun_sends_only_what_is_missing(
    s3_server: S3Server,
    s3_bucket: str,
    s3_proxy: FaultProxy,
    platform: Platform,
    endpoint: str,
    home: Path,
) -> None:
    platform.storage = storage_of(s3_proxy.endpoint, s3_bucket)
    s3_proxy.rule = fail_puts_matching(r"/archives/")
    failed = pakman_push(home, endpoint)
    assert failed.returncode == 1
    assert "no deployment was created" in failed.stderr and "archives/" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert ("POST", "/publish/deployments") not in platform.calls()
    assert set(s3_server.objects(s3_bucket)) == {
        f"{PREFIX}/APKINDEX.tar.gz",
        f"{PREFIX}/app-1.0.0-r3.apk",
    }
    no_secret_in(failed.stdout, failed.stderr)

    s3_proxy.rule = lambda method, path, seen: None
    del s3_proxy.requests[:]
    rerun = pakman_push(home, endpoint)
    assert rerun.returncode == 0, rerun.stderr
    assert [path for method, path in s3_proxy.writes()] == [
        f"/{s3_bucket}/{k}" for k in s3_server.objects(s3_bucket) if k.startswith("archives/")
    ]
    assert "1 uploaded" in rerun.stdout and "2 skipped" in rerun.stdout
    assert f"unchanged {PREFIX}/app-1.0.0-r3.apk" in rerun.stderr
    assert platform.calls()[-2:] == [
        ("POST", "/publish/deployments"),
        ("POST", "/publish/deployments/1/configurations"),
    ]


def test_wrong_storage_credentials_create_no_deployment(
    s3_server: S3Server, s3_bucket: str, platform: Platform, endpoint: str, home: Path
) -> None:
    platform.storage = storage_of(s3_server.endpoint, s3_bucket, secret="not-the-secret-9q8w7e")
    done = pakman_push(home, endpoint, "--progress", "bar")
    assert done.returncode == 1
    assert "] 0/3 files" in done.stderr and "\x1b[K" in done.stderr  # the bar, as on a terminal
    assert f"FAILED {PREFIX}/" in done.stderr
    assert "SignatureDoesNotMatch" in done.stderr or "AccessDenied" in done.stderr
    assert "no deployment was created" in done.stderr
    assert "Traceback" not in done.stderr
    assert ("POST", "/publish/deployments") not in platform.calls()
    assert s3_server.objects(s3_bucket) == {}
    no_secret_in(done.stdout, done.stderr)
    assert "not-the-secret-9q8w7e" not in done.stdout + done.stderr


def test_an_error_status_is_one_line_naming_the_step(
    platform: Platform, endpoint: str, home: Path
) -> None:
    platform.fail["/publish/deployments"] = 500
    done = pakman_push(home, endpoint)
    assert done.returncode == 1
    assert "pakman: instellar: create the deployment: HTTP 500: unexpected status" in done.stderr
    assert "Traceback" not in done.stderr
    no_secret_in(done.stdout, done.stderr)


def test_a_wrong_auth_token_is_named_and_not_shown(
    platform: Platform, endpoint: str, home: Path
) -> None:
    done = pakman_push(home, endpoint, INSTELLAR_AUTH_TOKEN="wrong-token-5k4j3h")
    assert done.returncode == 1
    assert "authenticate: HTTP 404: the platform refused INSTELLAR_AUTH_TOKEN" in done.stderr
    assert "wrong-token-5k4j3h" not in done.stdout + done.stderr
    assert platform.calls() == [("POST", "/publish/automation/callback")]


def test_a_platform_that_never_answers_fails_in_bounded_time(home: Path) -> None:
    platform = Platform(hang=threading.Event())
    with serve(platform) as address:
        started = time.monotonic()
        done = pakman_push(home, address, "--timeout", "1")
        elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert f"authenticate: no answer from {address} within 1 s" in done.stderr
    assert elapsed < 20  # the interpreter's start included


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse: --help, usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--concurrency", "abc"], "argument --concurrency: 'abc' is not a whole number"),
        (["--concurrency", "0"], "argument --concurrency: 0 is less than 1"),
        (["--concurrency", "2.5"], "argument --concurrency: '2.5' is not a whole number"),
        (["--timeout", "0"], "argument --timeout: 0 is not more than 0 seconds"),
        (["--timeout", "soon"], "argument --timeout: 'soon' is not a number of seconds"),
    ],
)
def test_a_wrong_number_is_a_usage_error(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run_main(["push", *args], capsys)
    assert code == 2
    assert said in err


def test_missing_variables_are_named_before_any_request(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = Platform()
    with serve(platform) as address:
        for name, value in variables(home, address).items():
            monkeypatch.setenv(name, value)
        for name in ("INSTELLAR_PACKAGE_TOKEN", "WORKFLOW_REF", "GITHUB_REF"):
            monkeypatch.delenv(name, raising=False)
        code, out, err = run_main(["push"], capsys)
    assert code == 3
    assert err == (
        "cannot push: INSTELLAR_PACKAGE_TOKEN is not set; WORKFLOW_REF or GITHUB_REF is not set\n"
    )
    assert platform.requests == []
    no_secret_in(out, err)


def test_help_lists_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run_main(["push", "--help"], capsys)
    assert code == 0
    for variable in (
        "INSTELLAR_ENDPOINT",
        "https://opsmaru.com",
        "INSTELLAR_AUTH_TOKEN",
        "INSTELLAR_PACKAGE_TOKEN",
        "WORKFLOW_SHA, GITHUB_SHA",
        "WORKFLOW_REF, GITHUB_REF",
        "GITHUB_REPOSITORY",
        "GITHUB_WORKSPACE",
        "HOME",
        "--concurrency N",
        "--timeout SECONDS",
    ):
        assert variable in out


def test_push_uploads_a_repository_that_pakman_build_wrote(
    s3_server: S3Server, s3_bucket: str, platform: Platform, endpoint: str, tmp_path: Path
) -> None:
    """`pakman build`, then a bare `pakman push`: the workspace's repository, and an archive made."""
    home = tmp_path / "empty-home"  # no ~/packages, no ~/packages.zip
    home.mkdir()
    workspace = make_workspace(tmp_path / "ws", ["greet"])
    (workspace / ".pakman").mkdir()
    run = build(workspace, make_key(tmp_path / "key"))
    assert run.code == 0, run.messages()
    repository = workspace / ".pakman/repo"
    built = {
        f"{arch.name}/{path.name}": path.read_bytes()
        for arch in repository.iterdir()
        if not arch.name.startswith(".")
        for path in arch.iterdir()
    }
    assert any(name.endswith(".apk") for name in built) and any(
        name.endswith("/APKINDEX.tar.gz") for name in built
    )
    done = pakman_push(
        home,
        endpoint,
        "--config",
        str(workspace / "apps/greet/instellar.yml"),
        GITHUB_WORKSPACE=str(workspace),
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(built)} files in {repository}" in done.stdout
    stored = s3_server.objects(s3_bucket)
    prefix = f"deployments/upmaru-stage/locomo/{SHA}/"
    assert {k[len(prefix) :]: v for k, v in stored.items() if k.startswith(prefix)} == built
    [archive] = [k for k in stored if k.startswith("archives/")]
    with zipfile.ZipFile(io.BytesIO(stored[archive])) as made:
        assert {i.filename: made.read(i) for i in made.infolist()} == {
            f"packages/{name}": data for name, data in built.items()
        }
    assert platform.requests[3].body["deployment"]["archive_path"] == archive


def test_a_stack_that_is_not_text_is_located_before_any_request(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The original's add_stack had no clause for it (instellar.ex:172): a FunctionClauseError.
    write_app(home.parent / "checkout", KITS, stack="stack: 3.20\n")
    platform = Platform()
    with serve(platform) as address:
        for name, value in variables(home, address).items():
            monkeypatch.setenv(name, value)
        code, _out, err = run_main(["push"], capsys)
    assert code == 3
    assert "instellar.yml:1:8: stack: expected a string, got a number" in err
    assert platform.requests == []
