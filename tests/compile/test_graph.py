"""The step graph: its shape per app type, and which keys change with which input."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pakman.compile.graph import Step, StepGraph
from pakman.compile.settings import Settings
from pakman.config.model import FrozenDict
from pakman.errors import ConfigError
from pakman.project import load_project
from support import EXAMPLES

_KEY: list[Path] = []


@pytest.fixture(autouse=True)
def _build_environment(signing_key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One signing key for every graph (the signing steps' keys read it), no identity variables."""
    for name in ("GITHUB_REPOSITORY", "GITHUB_RUN_NUMBER", "SOURCE_DATE_EPOCH", "PAKMAN_MIRROR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ABUILD_PRIVATE_KEY", raising=False)
    _KEY[:] = [signing_key]


def compile_apps(
    folders: list[Path], root: Path, *, release: int = 0, name: str | None = None
) -> StepGraph:
    """The graph a build of these apps in workspace `root` runs (as `pakman build` prepares it)."""
    settings = Settings(
        paths=tuple(str(f) for f in folders),
        root=str(root),
        name=name,
        version="1.0.0",
        release=str(release),
        key_file=str(_KEY[0]),
        offline=True,
        build_on="host",  # the graph without a buildroot stage (tests/test_build_on.py has it)
    )
    return load_project(settings, use_snapshot=False).graph


@pytest.fixture
def workspace(tmp_path: Path) -> Callable[..., list[Path]]:
    def copy(*names: str) -> list[Path]:
        out = []
        for name in names:
            target = tmp_path / "apps" / name
            if not target.exists():
                shutil.copytree(EXAMPLES / name, target)
            out.append(target)
        return out

    return copy


def test_shape_of_a_default_app(workspace: Callable[..., list[Path]], tmp_path: Path) -> None:
    graph = compile_apps(workspace("pyweb"), tmp_path)
    ids = set(graph.steps)
    assert {
        "pyweb:fetch-deps-build:x86_64",
        "pyweb:build:x86_64",
        "pyweb:collect:x86_64",
        "pyweb:render-apkbuild",
        "pyweb:render-initd",
        "pyweb:render-run",
        "pyweb:render-hook:post-install",
        "pyweb:package:x86_64",
        "repo:index:x86_64",
        "repo:sign:x86_64",
    } <= ids
    assert "pyweb:render-hook:pre-install" not in ids  # merged into render-pre-install
    assert graph["pyweb:build:x86_64"].upstream == ("pyweb:fetch-deps-build:x86_64",)
    assert graph["repo:sign:x86_64"].upstream == ("pyweb:package:x86_64", "repo:index:x86_64")
    order = [s.id for s in graph.order()]
    assert order.index("pyweb:package:x86_64") < order.index("repo:index:x86_64")


def test_static_and_custom_have_no_service_files(
    workspace: Callable[..., list[Path]], tmp_path: Path
) -> None:
    graph = compile_apps(workspace("static-site", "greet"), tmp_path)
    assert not any(s.stage == "render-initd" for s in graph.steps.values())
    assert "greet:collect:noarch" not in graph.steps  # custom: package() does it
    assert "static-site:collect:noarch" in graph.steps


def test_noarch_packages_join_every_repository_architecture(
    workspace: Callable[..., list[Path]], tmp_path: Path
) -> None:
    (site,) = workspace("static-site", "greet")[:1]
    # the examples' static site is noarch: here it is built for two architectures
    config = site / "instellar.yml"
    config.write_text(config.read_text().replace("  - noarch", "  - x86_64\n  - aarch64"))
    graph = compile_apps([site, tmp_path / "apps/greet"], tmp_path)
    assert graph["repo:index:x86_64"].upstream == (
        "greet:package:noarch",
        "static-site:package:x86_64",
    )
    assert graph["repo:index:aarch64"].upstream == (
        "greet:package:noarch",
        "static-site:package:aarch64",
    )


def test_keys_are_stable_and_location_free(
    workspace: Callable[..., list[Path]], tmp_path: Path
) -> None:
    first = compile_apps(workspace("pyweb"), tmp_path)
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "apps", moved / "apps")
    second = compile_apps([moved / "apps" / "pyweb"], moved)
    assert {k: s.key for k, s in first.steps.items()} == {k: s.key for k, s in second.steps.items()}


def changed(before: StepGraph, after: StepGraph) -> set[str]:
    return {
        k for k, s in after.steps.items() if before.steps.get(k) is None or before[k].key != s.key
    }


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_hook_text_changes_only_its_render_and_what_follows(
    workspace: Callable[..., list[Path]], tmp_path: Path
) -> None:
    (app,) = workspace("pyweb")
    before = compile_apps([app], tmp_path)
    edit(
        app / "instellar.yml",
        "  pre-upgrade: |\n    rc-service pyweb stop\n",
        "  pre-upgrade: |\n    rc-service pyweb stop || true\n",
    )
    after = compile_apps([app], tmp_path)
    assert changed(before, after) == {
        "pyweb:render-hook:pre-upgrade",
        "pyweb:package:x86_64",
        "repo:index:x86_64",
        "repo:sign:x86_64",
    }


def test_release_changes_only_package_index_sign(
    workspace: Callable[..., list[Path]], tmp_path: Path
) -> None:
    (app,) = workspace("pyweb")
    before = compile_apps([app], tmp_path, release=1)
    after = compile_apps([app], tmp_path, release=2)
    assert changed(before, after) == {
        "pyweb:package:x86_64",
        "repo:index:x86_64",
        "repo:sign:x86_64",
    }


def test_a_build_command_naming_pkgrel_reads_the_release(
    workspace: Callable[..., list[Path]], tmp_path: Path
) -> None:
    (app,) = workspace("heartbeat")
    edit(
        app / "instellar.yml",
        "chmod 0755 bin/heartbeat",
        "chmod 0755 bin/heartbeat\n    echo $pkgrel > REL",
    )
    before = compile_apps([app], tmp_path, release=1)
    after = compile_apps([app], tmp_path, release=2)
    assert "heartbeat:build:x86_64" in changed(before, after)


def test_source_content_not_mtime(workspace: Callable[..., list[Path]], tmp_path: Path) -> None:
    (app,) = workspace("heartbeat")
    before = compile_apps([app], tmp_path)
    (app / "bin" / "heartbeat").touch()
    assert changed(before, compile_apps([app], tmp_path)) == set()
    edit(app / "bin" / "heartbeat", "interval=60", "interval=61")
    assert changed(before, compile_apps([app], tmp_path)) == {
        "heartbeat:build:x86_64",
        "heartbeat:collect:x86_64",
        "heartbeat:package:x86_64",
        "repo:index:x86_64",
        "repo:sign:x86_64",
    }


def test_names_must_be_unique(workspace: Callable[..., list[Path]], tmp_path: Path) -> None:
    first, second = workspace("heartbeat", "pyweb")
    edit(second / "instellar.yml", "  name: pyweb\n", "  name: heartbeat\n")
    shutil.move(second, second.parent / "heartbeat2")
    with pytest.raises(ConfigError, match="two apps are both named `heartbeat`"):
        compile_apps([first, second.parent / "heartbeat2"], tmp_path)


def test_an_app_cannot_be_named_repo(workspace: Callable[..., list[Path]], tmp_path: Path) -> None:
    (app,) = workspace("heartbeat")
    with pytest.raises(ConfigError, match="may not be named `repo`"):
        compile_apps([app], tmp_path, name="repo")


def test_a_summary_is_the_step_its_init_would_make() -> None:
    outputs = ("/ws/.pakman/build/web/stage/x86_64/",)
    made = Step.summary("web:collect:x86_64", "collect", "x86_64", "ab" * 32, outputs)
    expected = Step(
        "web:collect:x86_64",
        "collect",
        "",
        "",
        None,
        "x86_64",
        None,
        outputs,
        FrozenDict(),
        key="ab" * 32,
        complete=False,
    )
    # Every field, the ones equality skips too (a field added to Step must be added to summaries).
    assert vars(made) == vars(expected)
    assert made == expected
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.key = "other"  # type: ignore[misc]
