"""pakman.apk.mirror against a fixture mirror served on 127.0.0.1: conditional requests, the
cache under .pakman/cache/apkindex, failures, and the signatures of indexes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from apk_support import KeyPair
from mirror_support import (
    BRANCH,
    MirrorServer,
    build_mirror,
    copy_mirror,
    index_path,
    tamper_index,
)
from pakman.apk import SigningKey, generate_key, write_index
from pakman.apk.mirror import (
    cached_copy,
    fetch_index,
    index_url,
    read_index,
    trusted_keys,
)
from pakman.errors import ConfigError, StepFailed


@pytest.fixture(scope="module")
def mirror_root(tmp_path_factory: pytest.TempPathFactory, key_pair: KeyPair) -> Path:
    """The fixture mirror (x86_64 only), built once; tests that change it work on a copy."""
    return build_mirror(tmp_path_factory.mktemp("mirror") / "alpine", key_pair.key, ("x86_64",))


@pytest.fixture(scope="module")
def trusted(tmp_path_factory: pytest.TempPathFactory, key_pair: KeyPair) -> Path:
    """A folder like /etc/apk/keys holding only the mirror's public key."""
    folder = tmp_path_factory.mktemp("trusted")
    (folder / key_pair.public_path.name).write_bytes(key_pair.public_path.read_bytes())
    return folder


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    private, _ = generate_key(tmp_path_factory.mktemp("stranger"), "other", bits=2048)
    return SigningKey.from_file(private)


@pytest.fixture
def serve() -> Iterator[type[MirrorServer]]:
    servers: list[MirrorServer] = []

    class Started(MirrorServer):
        def __init__(self, root: Path) -> None:
            super().__init__(root)
            self.start()
            servers.append(self)

    yield Started
    for server in servers:
        server.stop()


@pytest.fixture
def mirror(serve: type[MirrorServer], mirror_root: Path) -> MirrorServer:
    return serve(mirror_root)


def url_of(server: MirrorServer, repository: str = "main") -> str:
    return index_url(server.url, BRANCH, repository, "x86_64")


def cache_files(cache: Path, pattern: str = "*.tar.gz") -> list[Path]:
    return sorted(cache.glob(pattern))


def test_an_index_is_downloaded_and_cached_under_its_digest(
    mirror: MirrorServer, mirror_root: Path, tmp_path: Path
) -> None:
    fetched = fetch_index(url_of(mirror), tmp_path)
    data = index_path(mirror_root, "main", "x86_64").read_bytes()
    assert (fetched.how, fetched.data, fetched.problem) == ("downloaded", data, "")
    assert fetched.sha256 == hashlib.sha256(data).hexdigest()
    assert [p.name for p in cache_files(tmp_path)] == [f"{fetched.sha256}.tar.gz"]
    assert len(cache_files(tmp_path, "url-*.json")) == 1


@pytest.mark.parametrize("validator", ["etag", "last-modified"])
def test_an_unchanged_index_is_revalidated_not_downloaded_again(
    mirror: MirrorServer, tmp_path: Path, validator: str
) -> None:
    mirror.etag = validator == "etag"
    mirror.last_modified = validator == "last-modified"
    first = fetch_index(url_of(mirror), tmp_path)
    second = fetch_index(url_of(mirror), tmp_path)
    assert mirror.statuses() == [200, 304]
    header = "If-None-Match" if validator == "etag" else "If-Modified-Since"
    assert header in mirror.requests[1].headers
    assert second.how == "not modified" and second.data == first.data


def test_within_one_run_a_url_is_asked_for_once(mirror: MirrorServer, tmp_path: Path) -> None:
    fetch_index(url_of(mirror), tmp_path, run_id="run-1")
    fetch_index(url_of(mirror), tmp_path, run_id="run-1")
    assert mirror.statuses() == [200]
    fetch_index(url_of(mirror), tmp_path, run_id="run-2")  # a new run asks again
    assert mirror.statuses() == [200, 304]


def test_the_cache_keeps_each_content_once(
    serve: type[MirrorServer], mirror_root: Path, tmp_path: Path, key_pair: KeyPair
) -> None:
    root = copy_mirror(mirror_root, tmp_path / "mirror")
    (root / "alt").symlink_to(".")  # a second URL serving the same bytes
    server = serve(root)
    cache = tmp_path / "cache"
    urls = [index_url(server.url + alt, BRANCH, "main", "x86_64") for alt in ("", "/alt")]
    old = fetch_index(urls[0], cache).sha256
    fetch_index(urls[1], cache)
    assert [p.name for p in cache_files(cache)] == [f"{old}.tar.gz"]
    assert len(cache_files(cache, "url-*.json")) == 2
    # a new index replaces the old content once no URL has it any more
    write_index(root / BRANCH / "main" / "x86_64", key_pair.key, builddate=1)
    fetch_index(urls[0], cache)
    assert (cache / f"{old}.tar.gz").exists()  # the other URL still has it
    fetch_index(urls[1], cache)
    assert not (cache / f"{old}.tar.gz").exists()
    assert len(cache_files(cache)) == 1


def test_a_damaged_cached_index_is_fetched_again(mirror: MirrorServer, tmp_path: Path) -> None:
    fetch_index(url_of(mirror), tmp_path)
    for path in cache_files(tmp_path):
        path.write_bytes(path.read_bytes()[:100])
    fetched = fetch_index(url_of(mirror), tmp_path)
    assert fetched.how == "downloaded"
    assert mirror.statuses() == [200, 200]  # no conditional request for a damaged copy
    assert "If-None-Match" not in mirror.requests[1].headers
    for path in cache_files(tmp_path):
        assert hashlib.sha256(path.read_bytes()).hexdigest() + ".tar.gz" == path.name


@pytest.mark.parametrize("mode", ["error", "close"])
def test_a_failing_mirror_gives_the_cached_copy_or_nothing(
    mirror: MirrorServer, tmp_path: Path, mode: str
) -> None:
    url = url_of(mirror)
    mirror.mode = mode  # type: ignore[assignment]
    nothing = fetch_index(url, tmp_path)
    reason = "HTTP 500" if mode == "error" else "Remote end closed connection"
    assert (
        nothing.data == b"" and nothing.problem.startswith(f"{url}: ") and reason in nothing.problem
    )
    mirror.mode = "ok"
    downloaded = fetch_index(url, tmp_path)
    mirror.mode = mode  # type: ignore[assignment]
    cached = fetch_index(url, tmp_path)
    assert (cached.how, cached.data) == ("cached", downloaded.data)
    assert reason in cached.problem


def test_a_damaged_cache_is_not_used_when_the_mirror_fails(
    mirror: MirrorServer, tmp_path: Path
) -> None:
    fetch_index(url_of(mirror), tmp_path)
    for path in cache_files(tmp_path):
        path.write_bytes(b"garbage")
    mirror.mode = "error"
    fetched = fetch_index(url_of(mirror), tmp_path)
    assert fetched.data == b"" and "HTTP 500" in fetched.problem
    assert cache_files(tmp_path) == []


def test_the_cached_copy_is_had_without_asking_the_mirror(
    mirror: MirrorServer, tmp_path: Path
) -> None:
    url = url_of(mirror)
    assert cached_copy(url, tmp_path).problem == f"{url}: no cached copy"
    downloaded = fetch_index(url, tmp_path)
    copy = cached_copy(url, tmp_path)
    assert (copy.how, copy.data, copy.sha256) == ("cached", downloaded.data, downloaded.sha256)
    assert mirror.statuses() == [200]


def test_an_index_the_mirror_does_not_have_fails(mirror: MirrorServer, tmp_path: Path) -> None:
    url = index_url(mirror.url, "v3.99", "main", "x86_64")
    with pytest.raises(
        StepFailed, match=r"v3\.99/main/x86_64/APKINDEX\.tar\.gz: not found \(HTTP 404\)"
    ):
        fetch_index(url, tmp_path)


def test_a_mirror_that_is_not_a_url_is_invalid_input(tmp_path: Path) -> None:
    url = index_url("dl-cdn.alpinelinux.org/alpine", BRANCH, "main", "x86_64")
    with pytest.raises(ConfigError, match=r"not a URL pakman can fetch"):
        fetch_index(url, tmp_path)


def test_what_is_not_an_index_fails_clearly(
    serve: type[MirrorServer], mirror_root: Path, tmp_path: Path
) -> None:
    root = copy_mirror(mirror_root, tmp_path / "mirror")
    index_path(root, "main", "x86_64").write_text("<html>captive portal</html>")
    cache = tmp_path / "cache"
    with pytest.raises(StepFailed, match=r"main/x86_64/APKINDEX\.tar\.gz: what the mirror sent "):
        fetch_index(url_of(serve(root)), cache)
    assert cache_files(cache) == []


# --- signatures ------------------------------------------------------------------


def test_an_index_signed_by_a_trusted_key_is_read(
    mirror: MirrorServer, tmp_path: Path, trusted: Path, key_pair: KeyPair
) -> None:
    index = read_index(fetch_index(url_of(mirror), tmp_path), "main", trusted_keys(str(trusted)))
    assert index.signed_by == key_pair.key.keyname
    assert [o.entry.name for o in index.offers["bash"]] == ["bash"]
    unchecked = read_index(fetch_index(url_of(mirror), tmp_path), "main", trusted_keys(""))
    assert unchecked.signed_by == "" and unchecked.offers == index.offers


def test_an_index_signed_by_another_key_is_untrusted(
    serve: type[MirrorServer],
    mirror_root: Path,
    tmp_path: Path,
    trusted: Path,
    stranger: SigningKey,
) -> None:
    root = copy_mirror(mirror_root, tmp_path / "mirror")
    write_index(root / BRANCH / "main" / "x86_64", stranger, builddate=1)
    url = url_of(serve(root))
    fetched = fetch_index(url, tmp_path / "cache")
    with pytest.raises(StepFailed) as caught:
        read_index(fetched, "main", trusted_keys(str(trusted)), str(trusted))
    assert str(caught.value) == (
        f"{url}: untrusted: signed by {stranger.keyname}, which is not one of the keys in "
        f"{trusted} (--alpine-keys); is the mirror right, or is its key missing?"
    )


def test_a_tampered_index_is_bad_even_from_the_cache(
    serve: type[MirrorServer], mirror_root: Path, tmp_path: Path, trusted: Path, key_pair: KeyPair
) -> None:
    root = copy_mirror(mirror_root, tmp_path / "mirror")
    tamper_index(index_path(root, "community", "x86_64"), key_pair.key)
    server = serve(root)
    cache = tmp_path / "cache"
    fetch_index(url_of(server, "community"), cache)  # cached, unchecked
    server.mode = "error"
    fetched = fetch_index(url_of(server, "community"), cache)
    assert fetched.how == "cached"
    with pytest.raises(StepFailed, match=r"community/x86_64/APKINDEX\.tar\.gz: BAD signature by "):
        read_index(fetched, "community", trusted_keys(str(trusted)))


def test_trusted_keys_must_be_a_folder_of_keys(tmp_path: Path) -> None:
    assert trusted_keys("") is None  # not checking
    with pytest.raises(ConfigError, match="not a folder"):
        trusted_keys(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"there are no \*\.pub keys in it"):
        trusted_keys(str(tmp_path / "empty"))
