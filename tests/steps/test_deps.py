"""fetch-deps against fixture indexes served on 127.0.0.1: found, missing with suggestions,
provided by `so:`/`cmd:`, local, offline, mirror failures as the step reports them, the
build closure. The index cache and signatures themselves: tests/apk/test_mirror.py."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mirror_support import (
    BRANCH,
    BUILD_BASE,
    EPOCH,
    Keys,
    MirrorServer,
    ProjectLoader,
    copy_mirror,
    custom_app,
    identity_of,
    index_path,
    write_app,
)
from pakman.alpine import host_arch
from pakman.apk import PackageInfo, write_index, write_package
from pakman.apk.fetch import fetch_closure, trusted_package_keys
from pakman.cli import main
from pakman.errors import ConfigError, StepFailed
from pakman.project import Project
from pakman.steps import execute_step

Serve = Callable[[Path], MirrorServer]

NGINX_CONF = "server { listen 80; root /var/lib/site/public; }\n"


def run(project: Project, step_id: str) -> list[str]:
    """Run one step's action (never restored from the step store, even when run before); its warnings."""
    context = dataclasses.replace(project.context, use_store=False)
    outcome = execute_step(project.graph[step_id], context)
    assert not outcome.restored
    return list(outcome.warnings)


def lock_of(project: Project, step_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(project.graph[step_id].outputs[0]).read_text())
    return data


def cache_files(root: Path, pattern: str = "*.tar.gz") -> list[Path]:
    return sorted((root / ".pakman/cache/apkindex").glob(pattern))


@pytest.fixture
def tool(tmp_path: Path) -> Path:
    """A custom app whose dependencies exercise names, constraints, so: and cmd: names."""
    return write_app(
        tmp_path / "apps",
        "tool",
        custom_app(
            build=["bash", "nodejs>=20"],
            runtime=["busybox", "jq", "so:libc.musl-x86_64.so.1", "cmd:bash", "cmd:node>=21"],
        ),
    )


# --- resolving ---------------------------------------------------------------


def test_found_names_so_and_cmd_resolve_with_version_identity_and_repository(
    tool: Path, load: ProjectLoader, mirror: MirrorServer, mirror_root: Path
) -> None:
    project = load(mirror.url)
    assert run(project, "tool:fetch-deps-build:x86_64") == []
    assert run(project, "tool:fetch-deps-runtime:x86_64") == []

    build = lock_of(project, "tool:fetch-deps-build:x86_64")
    assert build["resolved"]["bash"] == {
        "source": "index",
        "package": "bash",
        "version": "5.2.26-r0",
        "identity": identity_of(mirror_root, "main", "x86_64", "bash", "5.2.26-r0"),
        "repository": "main",
    }
    assert build["resolved"]["nodejs"]["version"] == "20.15.1-r0"
    assert build["resolved"]["nodejs"]["constraints"] == [">=20"]
    assert (build["stack"], build["branch"], build["arch"]) == ("alpine/3.20", BRANCH, "x86_64")
    for repository in ("main", "community"):
        data = index_path(mirror_root, repository, "x86_64").read_bytes()
        assert build["indexes"][repository] == {
            "url": f"{mirror.url}/{BRANCH}/{repository}/x86_64/APKINDEX.tar.gz",
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    assert build["unresolved"] == [] and "offline" not in build

    runtime = lock_of(project, "tool:fetch-deps-runtime:x86_64")["resolved"]
    assert runtime["jq"]["repository"] == "community"
    assert runtime["so:libc.musl-x86_64.so.1"] == {
        "source": "index",
        "package": "musl",
        "version": "1.2.5-r0",
        "identity": identity_of(mirror_root, "main", "x86_64", "musl", "1.2.5-r0"),
        "repository": "main",
        "provides": "so:libc.musl-x86_64.so.1=1",
    }
    assert runtime["cmd:bash"]["package"] == "bash"
    assert runtime["cmd:bash"]["provides"] == "cmd:bash=5.2"
    # two packages provide cmd:node; only nodejs-current's meets >=21
    assert runtime["cmd:node"]["package"] == "nodejs-current"
    assert runtime["cmd:node"]["repository"] == "community"
    # both steps of the run asked for each index once
    assert sorted(r.path for r in mirror.requests) == [
        f"/{BRANCH}/community/x86_64/APKINDEX.tar.gz",
        f"/{BRANCH}/main/x86_64/APKINDEX.tar.gz",
    ]


def test_an_unmet_constraint_names_the_versions_found(
    tmp_path: Path, load: ProjectLoader, mirror: MirrorServer
) -> None:
    write_app(tmp_path / "apps", "tool", custom_app(build=["nodejs>=30"], runtime=[]))
    with pytest.raises(ConfigError) as caught:
        run(load(mirror.url), "tool:fetch-deps-build:x86_64")
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.path == "dependencies.build[0]"
    assert (diagnostic.line, diagnostic.column) == (5, 11)
    assert diagnostic.message == (
        f"`nodejs>=30`: no version in alpine {BRANCH} (main, community) for x86_64 fits; "
        "it has nodejs 20.15.1-r0 (main)"
    )


def test_errors_are_placed_from_the_model_without_reading_the_file_again(
    tmp_path: Path, load: ProjectLoader, mirror: MirrorServer
) -> None:
    app = write_app(tmp_path / "apps", "tool", custom_app(build=["nodejs>=30"], runtime=[]))
    load(mirror.url)
    project = load(mirror.url)  # the app as kept under .pakman/ by the first load
    # What the step reports comes from the positions kept since loading, not from the file.
    config = app / "instellar.yml"
    config.write_text("# edited since the build was prepared\n" * 3 + config.read_text())
    with pytest.raises(ConfigError) as caught:
        run(project, "tool:fetch-deps-build:x86_64")
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.line, diagnostic.column, diagnostic.path) == (5, 11, "dependencies.build[0]")
    assert diagnostic.file == str(config.absolute())


def test_missing_names_are_all_reported_with_suggestions_exit_3(
    tmp_path: Path,
    mirror: MirrorServer,
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_app(tmp_path / "apps", "tool", custom_app(build=["nodejs-lts", "curll"], runtime=["jq"]))
    monkeypatch.chdir(tmp_path)
    options = ["--mirror", mirror.url, "--key", str(keys.mirror_private)]
    code = main(["build", "apps", *options, "--package-version", "1.0.0"])
    out = capsys.readouterr().out
    assert code == 3
    where = f"alpine {BRANCH} (main, community) for x86_64, nor provided by one"
    config = tmp_path / "apps/tool/instellar.yml"
    assert (
        f"{config}:5:11: dependencies.build[0]: `nodejs-lts` is not a package of {where}; "
        "did you mean: nodejs, nodejs-current?"
    ) in out
    assert (
        f"{config}:5:25: dependencies.build[1]: `curll` is not a package of {where}; "
        "did you mean: curl?"
    ) in out


def test_a_name_like_nothing_gets_no_suggestion(
    tmp_path: Path, load: ProjectLoader, mirror: MirrorServer
) -> None:
    write_app(tmp_path / "apps", "tool", custom_app(build=[], runtime=["so:libzzz.so.9"]))
    with pytest.raises(ConfigError) as caught:
        run(load(mirror.url), "tool:fetch-deps-runtime:x86_64")
    assert str(caught.value).endswith(
        "`so:libzzz.so.9` is not a package of alpine v3.20 "
        "(main, community) for x86_64, nor provided by one"
    )


def test_packages_of_other_apps_of_the_build_are_local(
    tmp_path: Path, load: ProjectLoader, mirror: MirrorServer
) -> None:
    write_app(
        tmp_path / "apps",
        "api",
        "stack: alpine/3.20\n"
        "dependencies:\n  runtime: [api-openrc, worker, bash]\n"
        "build:\n  command: 'true'\n  destinations: [bin]\n"
        "run:\n  services:\n    - name: web\n      binary: api\n      start:\n        call: serve\n",
    )
    write_app(tmp_path / "apps", "worker", custom_app(build=[], runtime=["api-openrc"]))
    project = load(mirror.url)
    run(project, "api:fetch-deps-runtime:x86_64")
    resolved = lock_of(project, "api:fetch-deps-runtime:x86_64")["resolved"]
    assert resolved["api-openrc"] == {"source": "local"}
    assert resolved["worker"] == {"source": "local"}
    assert resolved["bash"]["source"] == "index"
    requests = len(mirror.requests)
    # the worker's only dependency is built here: no index is needed at all
    run(project, "worker:fetch-deps-runtime:x86_64")
    assert lock_of(project, "worker:fetch-deps-runtime:x86_64")["resolved"] == {
        "api-openrc": {"source": "local"}
    }
    assert len(mirror.requests) == requests


def test_a_static_site_gets_nginx_resolved(
    tmp_path: Path, load: ProjectLoader, mirror: MirrorServer
) -> None:
    write_app(
        tmp_path / "apps",
        "site",
        "stack: alpine/3.20\ntype: static\ndependencies:\n  runtime: []\n"
        "build:\n  command: 'mkdir -p public'\n  destinations: [public]\n",
        {"nginx.conf": NGINX_CONF},
    )
    project = load(mirror.url)
    run(project, "site:fetch-deps-runtime:x86_64")
    nginx = lock_of(project, "site:fetch-deps-runtime:x86_64")["resolved"]["nginx"]
    assert (nginx["package"], nginx["version"]) == ("nginx", "1.26.1-r0")


def test_noarch_resolves_against_the_host_architecture(
    tmp_path: Path, load: ProjectLoader, mirror: MirrorServer
) -> None:
    write_app(tmp_path / "apps", "tool", custom_app(build=[], runtime=["bash"], arches=("noarch",)))
    project = load(mirror.url)
    run(project, "tool:fetch-deps-runtime:noarch")
    lock = lock_of(project, "tool:fetch-deps-runtime:noarch")
    assert lock["arch"] == host_arch()
    assert lock["resolved"]["bash"]["package"] == "bash"
    assert {r.path.split("/")[3] for r in mirror.requests} == {host_arch()}


def test_the_mirror_comes_from_the_environment(
    tool: Path, load: ProjectLoader, mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAKMAN_MIRROR", mirror.url + "/")
    project = load(None)
    run(project, "tool:fetch-deps-build:x86_64")
    assert lock_of(project, "tool:fetch-deps-build:x86_64")["mirror"] == mirror.url + "/"
    assert len(mirror.requests) == 2


# --- offline and failing mirrors -----------------------------------------------


def build(
    tmp_path: Path, keys: Keys, mirror: str, *options: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[dict[str, Any]], str]:
    """`pakman build apps --json` in tmp_path: exit code, events, standard error."""
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        key = ["--key", str(keys.mirror_private), "--package-version", "1.0.0"]
        base = ["--build-base-packages", BUILD_BASE]
        code = main(["build", "apps", "--json", "--mirror", mirror, *key, *base, *options])
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    return code, events, captured.err


def test_offline_warns_and_leaves_the_lock_unresolved(
    tool: Path,
    tmp_path: Path,
    keys: Keys,
    mirror: MirrorServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, events, _ = build(tmp_path, keys, mirror.url, "--offline", capsys=capsys)
    assert code == 0
    done = {e["step"]: e for e in events if e["event"] == "success"}
    # placed where the list is written (line 5, column 10), as errors are
    assert done["tool:fetch-deps-build:x86_64"]["warnings"] == [
        f"{tool / 'instellar.yml'}:5:10: dependencies.build: not checked (--offline): "
        "bash, nodejs>=20"
    ]
    lock = json.loads((tmp_path / ".pakman/build/tool/deps/runtime-x86_64.json").read_text())
    assert lock["resolved"] == {} and lock["offline"] == "--offline"
    assert lock["unresolved"] == [
        "busybox",
        "jq",
        "so:libc.musl-x86_64.so.1",
        "cmd:bash",
        "cmd:node>=21",
    ]
    assert mirror.requests == []


def test_offline_with_require_deps_fails(
    tool: Path,
    tmp_path: Path,
    keys: Keys,
    mirror: MirrorServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, events, _ = build(
        tmp_path, keys, mirror.url, "--offline", "--require-deps", capsys=capsys
    )
    assert code == 1
    failures = [e for e in events if e["event"] == "failure"]  # both, with --continue
    assert {f["step"] for f in failures} == {
        "tool:fetch-deps-build:x86_64",
        "tool:fetch-deps-runtime:x86_64",
    }
    unchecked = {
        "tool:fetch-deps-build:x86_64": ("build", "bash, nodejs>=20"),
        "tool:fetch-deps-runtime:x86_64": (
            "runtime",
            "busybox, jq, so:libc.musl-x86_64.so.1, cmd:bash, cmd:node>=21",
        ),
    }
    for failure in failures:
        kind, names = unchecked[failure["step"]]
        assert failure["message"] == (
            f"dependencies.{kind} of tool cannot be checked against alpine {BRANCH} "
            f"(main, community) for x86_64 ({names}): --offline; --require-deps needs every "
            "dependency checked"
        )


@pytest.mark.parametrize("mode", ["error", "close"])
def test_a_failing_mirror_without_a_cache_warns_and_leaves_the_lock_unresolved(
    tool: Path, load: ProjectLoader, mirror: MirrorServer, mode: str
) -> None:
    mirror.mode = mode  # type: ignore[assignment]
    project = load(mirror.url)
    (warning,) = run(project, "tool:fetch-deps-build:x86_64")
    reason = "HTTP 500" if mode == "error" else "Remote end closed connection"
    assert warning.startswith(
        f"{tool / 'instellar.yml'}:5:10: dependencies.build: not checked "
        f"({mirror.url}/{BRANCH}/main/"
    )
    assert reason in warning and warning.endswith("): bash, nodejs>=20")
    lock = lock_of(project, "tool:fetch-deps-build:x86_64")
    assert lock["unresolved"] == ["bash", "nodejs>=20"] and reason in lock["offline"]
    assert cache_files(Path(project.settings.root)) == []
    with pytest.raises(StepFailed, match=r"--require-deps needs every dependency checked"):
        run(load(mirror.url, require_deps=True), "tool:fetch-deps-build:x86_64")


def test_a_failing_mirror_with_a_cached_index_uses_it_and_warns(
    tool: Path, load: ProjectLoader, mirror: MirrorServer
) -> None:
    run(load(mirror.url), "tool:fetch-deps-build:x86_64")
    mirror.mode = "error"
    project = load(mirror.url)  # a new run asks the mirror again
    warnings = run(project, "tool:fetch-deps-build:x86_64")
    assert warnings == [
        f"{mirror.url}/{BRANCH}/{repository}/x86_64/APKINDEX.tar.gz: HTTP 500 mirror broken "
        "for the test; used the cached copy of that index"
        for repository in ("main", "community")
    ]
    lock = lock_of(project, "tool:fetch-deps-build:x86_64")
    assert lock["resolved"]["bash"]["version"] == "5.2.26-r0" and lock["unresolved"] == []


def test_one_repository_failing_leaves_what_only_it_could_have_unresolved(
    tool: Path, load: ProjectLoader, mirror: MirrorServer
) -> None:
    mirror.fail = ("/community/",)
    project = load(mirror.url)
    (warning,) = run(project, "tool:fetch-deps-runtime:x86_64")
    lock = lock_of(project, "tool:fetch-deps-runtime:x86_64")
    # jq is in community, cmd:node>=21 only there: not reported missing, left unchecked
    assert lock["unresolved"] == ["jq", "cmd:node>=21"]
    assert set(lock["resolved"]) == {"busybox", "so:libc.musl-x86_64.so.1", "cmd:bash"}
    assert warning.startswith(f"{tool / 'instellar.yml'}:6:12: dependencies.runtime: not checked (")
    assert "community" in warning


# --- signatures ------------------------------------------------------------------


def test_an_index_signed_by_a_trusted_key_is_used(
    tool: Path, load: ProjectLoader, mirror: MirrorServer, keys: Keys
) -> None:
    project = load(mirror.url, alpine_keys=str(keys.trusted_dir))
    run(project, "tool:fetch-deps-build:x86_64")
    lock = lock_of(project, "tool:fetch-deps-build:x86_64")
    assert lock["indexes"]["main"]["signed_by"] == keys.mirror.keyname
    assert lock["resolved"]["bash"]["package"] == "bash"


# --- incremental -------------------------------------------------------------------


def test_a_second_build_does_not_fetch_again(
    tool: Path,
    tmp_path: Path,
    keys: Keys,
    mirror: MirrorServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, events, _ = build(tmp_path, keys, mirror.url, capsys=capsys)
    assert code == 0
    ran = [e["step"] for e in events if e["event"] == "success"]
    assert {"tool:fetch-deps-build:x86_64", "tool:fetch-deps-runtime:x86_64"} <= set(ran)
    requests = len(mirror.requests)
    assert requests == 2

    code, events, _ = build(tmp_path, keys, mirror.url, capsys=capsys)
    assert code == 0
    assert [e for e in events if e["event"] in ("start", "success")] == []
    fresh = {e["step"] for e in events if e["event"] == "up-to-date"}
    assert {"tool:fetch-deps-build:x86_64", "tool:fetch-deps-runtime:x86_64"} <= fresh
    assert len(mirror.requests) == requests


def test_which_keys_are_trusted_is_part_of_the_key(
    tool: Path, load: ProjectLoader, mirror: MirrorServer, keys: Keys, tmp_path: Path
) -> None:
    def key_with(**settings: str) -> str:
        return load(mirror.url, **settings).graph["tool:fetch-deps-build:x86_64"].key

    same = tmp_path / "same"
    shutil.copytree(keys.trusted_dir, same)
    other = tmp_path / "other"
    other.mkdir()
    (other / keys.other.keyname).write_bytes(keys.other.public_pem)

    trusted = key_with(alpine_keys=str(keys.trusted_dir))
    assert key_with(alpine_keys=str(same)) == trusted  # the keys count, not where they are
    assert key_with(alpine_keys=str(other)) != trusted
    assert key_with() != trusted  # unchecked
    (same / keys.other.keyname).write_bytes(keys.other.public_pem)
    assert key_with(alpine_keys=str(same)) != trusted  # a key added


# --- the build closure ---------------------------------------------------------


def test_the_build_lock_holds_the_closure_of_the_base_set_and_the_dependencies(
    tool: Path, load: ProjectLoader, mirror: MirrorServer, mirror_root: Path
) -> None:
    project = load(mirror.url)
    assert run(project, "tool:fetch-deps-build:x86_64") == []
    lock = lock_of(project, "tool:fetch-deps-build:x86_64")
    assert lock["base"] == ["busybox"]
    # bash and nodejs>=20 as written, busybox from the base set; musl for so:libc...
    assert [p["name"] for p in lock["closure"]] == ["bash", "busybox", "musl", "nodejs"]
    for package in lock["closure"]:
        repository = "main"
        name, version = package["name"], package["version"]
        path = mirror_root / BRANCH / repository / "x86_64" / f"{name}-{version}.apk"
        assert package == {
            "name": name,
            "version": version,
            "identity": identity_of(mirror_root, repository, "x86_64", name, version),
            "repository": repository,
            "arch": "x86_64",
            "size": path.stat().st_size,
            "installed_size": package["installed_size"],
            "requires": {"bash": ["busybox", "musl"], "musl": []}.get(name, ["musl"]),
        }
        assert package["installed_size"] > 0
    assert lock["install_order"] == ["musl", "busybox", "bash", "nodejs"]
    assert lock["resolved"]["nodejs"]["version"] == "20.15.1-r0"
    # the runtime lock has no closure: only the build's root is made of one
    run(project, "tool:fetch-deps-runtime:x86_64")
    assert "closure" not in lock_of(project, "tool:fetch-deps-runtime:x86_64")


def test_a_dependency_missing_deep_in_the_closure_is_located_at_what_brought_it_in(
    tmp_path: Path, load: ProjectLoader, mirror: MirrorServer
) -> None:
    write_app(tmp_path / "apps", "tool", custom_app(build=["bash", "broken-tool"], runtime=[]))
    with pytest.raises(ConfigError) as caught:
        run(load(mirror.url), "tool:fetch-deps-build:x86_64")
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.path == "dependencies.build[1]"
    assert (diagnostic.line, diagnostic.column) == (5, 19)
    assert diagnostic.message == (
        f"`so:libgone.so.3` is not a package of alpine {BRANCH} (main, community) for x86_64, "
        "nor provided by one (required by dependencies.build[1] `broken-tool` -> "
        "broken-tool 1.0-r0 `so:libgone.so.3`)"
    )


def test_a_conflict_with_the_closure_is_refused_where_it_is_written(
    tmp_path: Path, load: ProjectLoader, mirror: MirrorServer
) -> None:
    write_app(tmp_path / "apps", "tool", custom_app(build=["jq", "!musl"], runtime=[]))
    with pytest.raises(ConfigError) as caught:
        run(load(mirror.url), "tool:fetch-deps-build:x86_64")
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.path == "dependencies.build[1]"
    assert (diagnostic.line, diagnostic.column) == (5, 17)
    # busybox (the base set) comes first and brings musl in
    assert diagnostic.message == (
        "`so:libc.musl-x86_64.so.1` (required by the build base set `busybox` -> "
        "busybox 1.36.1-r0 `so:libc.musl-x86_64.so.1`) cannot be installed: musl 1.2.5-r0 "
        "conflicts with `!musl` from dependencies.build[1] `!musl`"
    )


def test_a_base_set_the_index_lacks_is_reported_as_the_base_sets(
    tool: Path, load: ProjectLoader, mirror: MirrorServer
) -> None:
    with pytest.raises(ConfigError) as caught:
        run(load(mirror.url, build_base="busybox, alpine-sdk"), "tool:fetch-deps-build:x86_64")
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.path == "stack"
    assert diagnostic.message == (
        "the build base set (--build-base-packages, PAKMAN_BUILD_BASE): `alpine-sdk` is not a "
        f"package of alpine {BRANCH} (main, community) for x86_64, nor provided by one"
    )


def test_the_base_set_defaults_to_the_originals_and_comes_from_the_environment(
    tool: Path, load: ProjectLoader, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pakman.compile.settings import BUILD_BASE as DEFAULT_BASE

    def base(**settings: object) -> list[str]:
        project = load(None, offline=True, **settings)
        run(project, "tool:fetch-deps-build:x86_64")
        lock = lock_of(project, "tool:fetch-deps-build:x86_64")
        assert lock["closure"] is None and lock["unresolved"] == ["bash", "nodejs>=20"]
        result: list[str] = lock["base"]
        return result

    assert base(build_base=None) == list(DEFAULT_BASE)
    assert "alpine-sdk" in DEFAULT_BASE and "busybox" in DEFAULT_BASE
    monkeypatch.setenv("PAKMAN_BUILD_BASE", "busybox git>=2")
    assert base(build_base=None) == ["busybox", "git>=2"]
    assert base(build_base="musl") == ["musl"]  # the option wins over the environment


def test_a_base_set_word_that_is_not_a_dependency_is_invalid_input(
    tool: Path, load: ProjectLoader
) -> None:
    with pytest.raises(ConfigError, match=r"--build-base-packages / PAKMAN_BUILD_BASE: a<<b"):
        load(None, offline=True, build_base="busybox a<<b")


def test_the_base_set_is_part_of_the_build_locks_key_only(tool: Path, load: ProjectLoader) -> None:
    first = load(None, offline=True, build_base="busybox").graph
    second = load(None, offline=True, build_base="busybox musl").graph
    for step in ("tool:fetch-deps-runtime:x86_64", "tool:render-apkbuild"):
        assert first[step].key == second[step].key
    assert first["tool:fetch-deps-build:x86_64"].key != second["tool:fetch-deps-build:x86_64"].key


def test_the_closure_of_a_build_lock_is_fetched_and_verified(
    tool: Path, load: ProjectLoader, mirror: MirrorServer, mirror_root: Path, keys: Keys
) -> None:
    project = load(mirror.url)
    run(project, "tool:fetch-deps-build:x86_64")
    lock = lock_of(project, "tool:fetch-deps-build:x86_64")
    cache = project.context.layout.state / "cache" / "apk"
    paths = fetch_closure(lock, cache, trusted_package_keys(str(keys.trusted_dir)))
    assert len(paths) == len(lock["closure"]) == 4
    for package in lock["closure"]:
        served = mirror_root / BRANCH / package["repository"] / "x86_64"
        expected = served / f"{package['name']}-{package['version']}.apk"
        assert paths[package["identity"]].read_bytes() == expected.read_bytes()
    # signed by the mirror's key, which is not Alpine's: refused with the shipped keys
    with pytest.raises(StepFailed, match="which is not a trusted key"):
        fetch_closure(lock, tmp_cache(project), trusted_package_keys())


def tmp_cache(project: Project) -> Path:
    return project.context.layout.state / "cache" / "other-apk"


def test_an_offline_lock_has_no_closure_to_fetch(tool: Path, load: ProjectLoader) -> None:
    project = load(None, offline=True)
    run(project, "tool:fetch-deps-build:x86_64")
    with pytest.raises(StepFailed, match="no closure to fetch"):
        fetch_closure(lock_of(project, "tool:fetch-deps-build:x86_64"), tmp_cache(project), {})


def test_the_lock_names_the_provider_the_closure_chose(
    tmp_path: Path, load: ProjectLoader, mirror: MirrorServer
) -> None:
    # alone, cmd:node would be nodejs-current 22; with nodejs asked for, nodejs provides it
    write_app(tmp_path / "apps", "tool", custom_app(build=["cmd:node", "nodejs"], runtime=[]))
    project = load(mirror.url)
    run(project, "tool:fetch-deps-build:x86_64")
    lock = lock_of(project, "tool:fetch-deps-build:x86_64")
    assert lock["resolved"]["cmd:node"]["package"] == "nodejs"
    assert lock["resolved"]["cmd:node"]["version"] == "20.15.1-r0"
    assert lock["resolved"]["cmd:node"]["provides"] == "cmd:node=20.15.1-r0"
    assert "nodejs-current" not in [p["name"] for p in lock["closure"]]


def test_a_runtime_name_is_met_as_apk_would_meet_it() -> None:
    from pakman.apk.index import IndexEntry
    from pakman.apk.mirror import Offer
    from pakman.steps.deps import choose

    def offer(name: str, version: str, provides: str = "", priority: int = 0) -> Offer:
        entry = IndexEntry("Q1", name, version, "x86_64", 1, 1, provider_priority=priority)
        provided = provides.partition("=")[2] if provides else version
        return Offer(entry, provided, provides, "main")

    own = offer("zlib", "1.3.1-r1")
    renamed = offer("zlib-ng", "2.2.0-r0", "zlib=2.2.0-r0")
    # the highest version of the name wins, even from a package of another name
    assert choose([own, renamed], []) is renamed
    assert choose([own, renamed], ["<2"]) is own
    # a provides without a version: only with a provider priority
    bare = offer("mailer-a", "1.0-r0", "mail-agent")
    preferred = offer("mailer-b", "1.0-r0", "mail-agent", priority=10)
    assert choose([bare], []) is None
    assert choose([bare, preferred], []) is preferred


def test_a_name_only_bare_provides_meet_asks_for_one_of_them(
    tmp_path: Path, load: ProjectLoader, mirror: MirrorServer, mirror_root: Path, keys: Keys
) -> None:
    root = copy_mirror(mirror_root, tmp_path / "mirror")
    for name in ("mailer-a", "mailer-b"):
        tree = tmp_path / "trees" / name
        (tree / "usr/share" / name).mkdir(parents=True)
        (tree / "usr/share" / name / "README").write_text(name)
        info = PackageInfo(name, "1.0", "x86_64", provides=("mail-agent",), builddate=EPOCH)
        write_package(tree, info, root / BRANCH / "community" / "x86_64", keys.mirror)
    write_index(root / BRANCH / "community" / "x86_64", keys.mirror, builddate=EPOCH)
    server = MirrorServer(root).start()
    try:
        write_app(tmp_path / "apps", "tool", custom_app(build=[], runtime=["mail-agent"]))
        with pytest.raises(ConfigError) as caught:
            run(load(server.url), "tool:fetch-deps-runtime:x86_64")
    finally:
        server.stop()
    assert caught.value.diagnostics[0].message == (
        "`mail-agent` is provided by mailer-a, mailer-b, none with a provider priority or a "
        "version, so apk would not choose; name the one wanted"
    )


def test_a_build_base_set_from_the_environment_reaches_a_prepared_build(
    tool: Path,
    tmp_path: Path,
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def ran() -> set[str]:
        monkeypatch.chdir(tmp_path)
        key = ["--key", str(keys.mirror_private), "--package-version", "1.0.0"]
        assert main(["build", "apps", "--json", "--offline", *key]) == 0
        events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        return {e["step"] for e in events if e["event"] in ("success", "restored")}

    monkeypatch.setenv("PAKMAN_BUILD_BASE", "busybox")
    assert "tool:fetch-deps-build:x86_64" in ran()
    assert ran() == set()  # nothing to do: the no-op path
    monkeypatch.setenv("PAKMAN_BUILD_BASE", "busybox musl")
    assert "tool:fetch-deps-build:x86_64" in ran()
    lock = json.loads((tmp_path / ".pakman/build/tool/deps/build-x86_64.json").read_text())
    assert lock["base"] == ["busybox", "musl"]


def test_a_lock_without_build_dependencies_says_why_it_has_no_closure(
    tmp_path: Path, load: ProjectLoader
) -> None:
    write_app(tmp_path / "apps", "tool", custom_app(build=[], runtime=[]))
    project = load(None, offline=True)
    assert run(project, "tool:fetch-deps-build:x86_64") == []
    lock = lock_of(project, "tool:fetch-deps-build:x86_64")
    assert (lock["closure"], lock["offline"], lock["unresolved"]) == (None, "--offline", [])
    with pytest.raises(StepFailed, match="no closure to fetch"):
        fetch_closure(lock, tmp_cache(project), {})


def test_only_the_base_set_unchecked_on_the_host_is_done_not_provisional(
    tmp_path: Path, load: ProjectLoader, mirror: MirrorServer
) -> None:
    write_app(tmp_path / "apps", "tool", custom_app(build=["bash"], runtime=[]))
    mirror.mode = "error"
    project = load(mirror.url)
    context = dataclasses.replace(project.context, use_store=False)
    # a dependency left unchecked: provisional, checked again next time
    assert execute_step(project.graph["tool:fetch-deps-build:x86_64"], context).provisional
    write_app(tmp_path / "apps", "tool", custom_app(build=[], runtime=[]))
    project = load(mirror.url)
    context = dataclasses.replace(project.context, use_store=False)
    outcome = execute_step(project.graph["tool:fetch-deps-build:x86_64"], context)
    # only the base set, which a host build does not use: done, quietly
    assert (outcome.provisional, outcome.warnings) == (False, ())
    assert lock_of(project, "tool:fetch-deps-build:x86_64")["closure"] is None
