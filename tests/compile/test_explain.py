"""`pakman explain` and `build --explain` say which input changed, in words."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from build_support import KeyPair, build, make_key, make_workspace, working_directory
from pakman.cli import main


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture
def workspace(tmp_path: Path, key: KeyPair) -> Path:
    root = make_workspace(tmp_path, ["pyweb"])
    assert build(root, key).code == 0
    return root


def explain(workspace: Path, key: KeyPair, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with working_directory(workspace), contextlib.redirect_stdout(out):
        code = main(["explain", "-p", "apps", "--offline", "--key", str(key.private), *args])
    return code, out.getvalue()


def reasons(workspace: Path, key: KeyPair, *args: str) -> dict[str, list[str]]:
    code, text = explain(workspace, key, "--json", *args)
    assert code == 0
    return {e["step"]: e["reasons"] for e in json.loads(text)}


def test_nothing_to_explain(workspace: Path, key: KeyPair) -> None:
    code, text = explain(workspace, key)
    assert (code, text) == (0, "0 of 20 steps will run\n")


def test_a_source_file(workspace: Path, key: KeyPair) -> None:
    main_py = workspace / "apps/pyweb/src/main.py"
    main_py.write_text(main_py.read_text() + "\n# more\n")
    (workspace / "apps/pyweb/src/extra.py").write_text("x = 1\n")
    found = reasons(workspace, key)
    assert found["pyweb:build:x86_64"] == ["source files changed: src/main.py; added: src/extra.py"]
    assert found["pyweb:collect:x86_64"] == ["upstream step pyweb:build:x86_64 changed"]
    assert set(found) == {
        "pyweb:build:x86_64",
        "pyweb:collect:x86_64",
        "pyweb:package:x86_64",
        "repo:index:x86_64",
        "repo:sign:x86_64",
    }


def test_config_template_release(workspace: Path, key: KeyPair) -> None:
    config = workspace / "apps/pyweb/instellar.yml"
    config.write_text(config.read_text().replace("serve --port 8080", "serve --port 9090"))
    found = reasons(workspace, key, "--release", "5", "pyweb:render-run", "pyweb:package")
    assert found["pyweb:render-run"] == [
        "config `run.services[0].start.call` changed: 'serve --port 8080' -> 'serve --port 9090'"
    ]
    assert found["pyweb:package:x86_64"] == [
        "the package's release changed: '0' -> '5'",
        "upstream step pyweb:render-run changed",
    ]


def test_text_output_and_restorable(workspace: Path, key: KeyPair) -> None:
    config = workspace / "apps/pyweb/instellar.yml"
    original = config.read_text()
    config.write_text(original.replace("rc-update add pyweb\n", "rc-update add pyweb default\n"))
    assert build(workspace, key).code == 0
    config.write_text(original)
    code, text = explain(workspace, key, "pyweb:render-hook")
    assert code == 0
    assert text == (
        "pyweb:render-hook:post-install will run (its outputs will be restored from the store):\n"
        "  - config `hook.post-install (line 1)` changed: 'rc-update add pyweb default' -> "
        "'rc-update add pyweb'\n"
        "1 of 4 steps will run\n"
    )


def test_never_built_and_missing_outputs(workspace: Path, key: KeyPair) -> None:
    # never ran here: no manifest and no journal line (a manifest alone: tests/test_state.py)
    (workspace / ".pakman/steps/pyweb/render-run.json").unlink()
    journal = workspace / ".pakman/journal"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(x for x in lines if not x.startswith("pyweb:render-run ")))
    (workspace / ".pakman/build/pyweb/render/pyweb.log").unlink()
    found = reasons(workspace, key)
    assert found["pyweb:render-run"] == [
        "it has not run here yet (or its last run failed or was interrupted)"
    ]
    assert found["pyweb:render-log"] == [
        f"its output {workspace}/.pakman/build/pyweb/render/pyweb.log is missing"
    ]


def test_unknown_target(workspace: Path, key: KeyPair) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code, _ = explain(workspace, key, "nope")
    assert code == 3 and "no app or step named nope" in err.getvalue()


def test_build_explain(workspace: Path, key: KeyPair) -> None:
    main_py = workspace / "apps/pyweb/src/main.py"
    main_py.write_text(main_py.read_text() + "\n# more\n")
    out = io.StringIO()
    with working_directory(workspace), contextlib.redirect_stdout(out):
        code = main(["build", "apps", "--offline", "--key", str(key.private), "--explain"])
    assert code == 0
    text = out.getvalue()
    assert "pyweb:build:x86_64 will run:\n  - source files changed: src/main.py\n" in text
    assert text.index("will run") < text.index("ran  pyweb:build:x86_64")


def test_a_package_deleted_from_the_repository(workspace: Path, key: KeyPair) -> None:
    (workspace / ".pakman/repo/x86_64/pyweb-0.0.0-r0.apk").unlink()
    repo = workspace / ".pakman/repo/x86_64"
    assert reasons(workspace, key) == {
        "repo:sign:x86_64": [
            f"its output {repo}/ changed since it ran (replaced, or a file in it deleted or added)"
        ]
    }


def test_the_build_base_set(workspace: Path, key: KeyPair) -> None:
    found = reasons(workspace, key, "--build-base-packages", "busybox musl")
    assert found["pyweb:fetch-deps-build:x86_64"] == [
        "the build base set changed (--build-base-packages, PAKMAN_BUILD_BASE)"
    ]
    assert "pyweb:fetch-deps-runtime:x86_64" not in found
    assert found["pyweb:build:x86_64"] == ["upstream step pyweb:fetch-deps-build:x86_64 changed"]


def test_a_word_naming_a_folder_is_a_path(workspace: Path, key: KeyPair) -> None:
    # `pakman explain apps` looks for apps in apps/, as build, check and graph do with a
    # PATH; words that name no file or folder are targets.
    (workspace / "apps/pyweb/src/extra.py").write_text("x = 1\n")
    out = io.StringIO()
    with working_directory(workspace), contextlib.redirect_stdout(out):
        code = main(["explain", "apps", "--offline", "--key", str(key.private)])
    assert (code, out.getvalue()) == explain(workspace, key)
    assert out.getvalue().endswith("5 of 20 steps will run\n")
    out = io.StringIO()
    with working_directory(workspace), contextlib.redirect_stdout(out):
        code = main(["explain", "apps", "pyweb:build", "--offline", "--key", str(key.private)])
    assert (code, out.getvalue()) == explain(workspace, key, "pyweb:build")
    assert out.getvalue().endswith("1 of 1 steps will run\n")
