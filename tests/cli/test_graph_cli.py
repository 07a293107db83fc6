"""`pakman graph` and `pakman run-step`: the formats parsed and validated, the options an
exported file hands on, names make and ninja must quote, and what run-step refuses."""

from __future__ import annotations

import json
import multiprocessing
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pakman.cli import build_parser, main
from pakman.cli.options import project_argv, settings_from_args
from pakman.compile.settings import Settings
from pakman.export import formats as export
from pakman.project import load_project
from support import EXAMPLES, PAKMAN, copy_examples, subprocess_env

STEP_FIELDS = {
    "id",
    "stage",
    "app",
    "arch",
    "item",
    "description",
    "action",
    "key",
    "reads",
    "files",
    "after",
    "outputs",
    "manifest",
}


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The examples in a workspace that is the current folder, without identity variables."""
    copy_examples(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_REPOSITORY", "GITHUB_RUN_NUMBER", "SOURCE_DATE_EPOCH", "PAKMAN_MIRROR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ABUILD_PRIVATE_KEY", raising=False)
    return tmp_path


def graph(key: Path, fmt: str, *extra: str) -> bytes:
    out = Path(f"graph.{fmt}")
    args = ["graph", "examples", "--offline", f"--key={key}", "--package-version=1.2.3"]
    assert main([*args, *extra, "--format", fmt, "-o", str(out)]) == 0
    return out.read_bytes()


def test_json_lists_every_step_with_its_inputs_and_outputs(
    workspace: Path, signing_key: Path
) -> None:
    data = json.loads(graph(signing_key, "json"))
    assert data["format"] == export.JSON_FORMAT == 1
    assert data["repository"] == ".pakman/repo"
    steps = data["steps"]
    assert all(set(step) == STEP_FIELDS for step in steps)
    by_id = {step["id"]: step for step in steps}
    assert len(by_id) == len(steps)
    seen: set[str] = set()
    for step in steps:  # dependencies first, and every one of them a step
        assert set(step["after"]) <= seen, step["id"]
        seen.add(step["id"])
        assert step["manifest"] == f".pakman/steps/{step['id'].replace(':', '/')}.json"
    assert "rails-seed" not in {step["app"] for step in steps}  # left out by .pakmanignore

    build = by_id["heartbeat:build:x86_64"]
    assert (build["stage"], build["app"], build["arch"]) == ("build", "heartbeat", "x86_64")
    assert build["files"] == [
        "examples/heartbeat/instellar.yml",
        "examples/heartbeat/bin/heartbeat",
    ]
    assert build["after"] == ["heartbeat:fetch-deps-build:x86_64"]
    assert build["outputs"] == [".pakman/build/heartbeat/build-x86_64/"]
    assert build["reads"]["config"] == {
        "build.command": "sh -n bin/heartbeat\nchmod 0755 bin/heartbeat\n"
    }
    assert re.fullmatch(r"[0-9a-f]{64}", build["key"])
    # The signing key is a file the signing steps read; templates-only steps read no file.
    assert str(signing_key) in by_id["heartbeat:package:x86_64"]["files"]
    assert by_id["repo:sign:x86_64"]["files"] == [str(signing_key)]
    assert by_id["pyweb:render-finish"]["files"] == []
    # noarch packages (greet, static-site) join the repository's architecture
    assert by_id["repo:index:x86_64"]["after"] == [
        "greet:package:noarch",
        "heartbeat:package:x86_64",
        "pyweb:package:x86_64",
        "static-site:package:noarch",
    ]
    assert by_id["repo:sign:x86_64"]["outputs"] == [".pakman/repo/x86_64/"]


def affected(key: Path, capsys: pytest.CaptureFixture[str], *targets: str) -> list[str]:
    args = ["graph", "examples", "--offline", f"--key={key}", "--package-version=1.2.3"]
    capsys.readouterr()
    assert main([*args, *(f"--affected={t}" for t in targets)]) == 0
    return capsys.readouterr().out.splitlines()


def test_affected_lists_the_steps_a_change_would_run(
    workspace: Path, signing_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = json.loads(graph(signing_key, "json"))["steps"]
    order = [s["id"] for s in steps]
    # A source file: the steps that read it, everything after them, nothing else.
    source = affected(signing_key, capsys, "examples/heartbeat/bin/heartbeat")
    assert source == [i for i in order if i in set(source)]  # in build order
    assert "heartbeat:build:x86_64" in source
    assert "heartbeat:package:x86_64" in source
    assert "repo:sign:x86_64" in source
    assert not any(i.startswith(("greet:", "pyweb:")) for i in source)
    assert "heartbeat:render-apkbuild" not in source  # reads the config, not the file
    # An app: all its steps and what follows them; its instellar.yml reaches as far.
    app = affected(signing_key, capsys, "heartbeat")
    assert set(source) < set(app)
    assert {i for i in order if i.startswith("heartbeat:")} <= set(app)
    config = affected(signing_key, capsys, "examples/heartbeat/instellar.yml")
    assert set(source) <= set(config) <= set(app)
    # A signing key given with --key: the signing steps of every architecture.
    signing = affected(signing_key, capsys, str(signing_key))
    assert {i for i in order if i.startswith("repo:sign:")} <= set(signing)
    # Several targets: the union.
    both = affected(signing_key, capsys, "heartbeat", "greet")
    assert set(both) == set(app) | set(affected(signing_key, capsys, "greet"))


def test_the_build_order_is_a_topological_order_of_the_digraph(
    workspace: Path, signing_key: Path
) -> None:
    import networkx as nx

    project = load_project(Settings(paths=("examples",), offline=True, key_file=str(signing_key)))
    graph = project.graph
    assert nx.is_directed_acyclic_graph(graph.dag)
    assert set(graph.dag) == set(graph.steps)
    place = {step.id: i for i, step in enumerate(graph.order())}
    assert all(place[u] < place[v] for u, v in graph.dag.edges)
    assert graph.dag.number_of_edges() == sum(len(s.upstream) for s in graph.order())
    # affected: the step itself and exactly its descendants.
    build = "heartbeat:build:x86_64"
    assert {s.id for s in graph.affected([build])} == {build} | nx.descendants(graph.dag, build)


def test_affected_refuses_what_no_step_reads(
    workspace: Path, signing_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["graph", "examples", "--offline", f"--key={signing_key}", "--affected=nosuch"]
    assert main(args) == 3
    assert "nosuch: no app of that name, and no step reads it" in capsys.readouterr().err


def test_dot_draws_with_graphviz(workspace: Path, signing_key: Path) -> None:
    dot = shutil.which("dot")
    assert dot, "the tests need Graphviz (scripts/test installs it)"
    steps = json.loads(graph(signing_key, "json"))["steps"]
    text = graph(signing_key, "dot")
    svg = subprocess.run([dot, "-Tsvg"], input=text, capture_output=True, check=True).stdout
    assert svg.count(b'class="node"') == len(steps)
    assert svg.count(b'class="edge"') == sum(len(step["after"]) for step in steps)
    assert svg.count(b'class="cluster"') == 5  # four apps and the repository


def test_svg_format(workspace: Path, signing_key: Path) -> None:
    svg = graph(signing_key, "svg")
    assert svg.lstrip().startswith((b"<?xml", b"<svg"))
    assert b"build:x86_64" in svg


def test_svg_without_graphviz_is_a_clear_error(
    workspace: Path,
    signing_key: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", str(workspace / "no-tools-here"))
    args = ["graph", "examples", "--offline", f"--key={signing_key}", "--package-version=1.2.3"]
    assert main([*args, "--format", "svg"]) == 1
    err = capsys.readouterr().err
    assert "needs Graphviz's `dot`" in err
    assert "Traceback" not in err


MERMAID_LINE = re.compile(
    r"""(?x)
    (?P<subgraph>\ *subgraph\ (?P<sid>s_\w+)\["(?P<slabel>[^"]*)"\])
    | (?P<node>\ *(?P<nid>s_\w+)\["(?P<nlabel>[^"]*)"\])
    | (?P<edge>\ *(?P<src>s_\w+)\ -->\ (?P<dst>s_\w+))
    | (?P<end>\ *end)
    """
)


def check_mermaid(text: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """Parse the subset of Mermaid's flowchart syntax pakman writes; fail on anything else."""
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    nodes: dict[str, str] = {}
    groups: set[str] = set()
    edges: set[tuple[str, str]] = set()
    depth = 0
    for line in lines[1:]:
        match = MERMAID_LINE.fullmatch(line)
        assert match, f"not Mermaid pakman writes: {line!r}"
        if match["subgraph"]:
            assert depth == 0 and match["sid"] not in groups
            groups.add(match["sid"])
            depth += 1
        elif match["end"]:
            assert depth == 1
            depth -= 1
        elif match["node"]:
            assert match["nid"] not in nodes and match["nid"] not in groups
            nodes[match["nid"]] = match["nlabel"]
        else:
            assert depth == 0
            assert match["src"] in nodes and match["dst"] in nodes
            edges.add((match["src"], match["dst"]))
    assert depth == 0
    return nodes, edges


def test_mermaid_is_well_formed(workspace: Path, signing_key: Path) -> None:
    steps = json.loads(graph(signing_key, "json"))["steps"]
    nodes, edges = check_mermaid(graph(signing_key, "mermaid").decode())
    assert len(nodes) == len(steps)
    assert nodes[export.mermaid_id("pyweb:render-hook:post-install")] == "render-hook:post-install"
    assert len(edges) == sum(len(step["after"]) for step in steps)
    assert (
        export.mermaid_id("heartbeat:build:x86_64"),
        export.mermaid_id("heartbeat:collect:x86_64"),
    ) in edges


def test_mermaid_ids_are_distinct_and_labels_quoted() -> None:
    names = ["a-b:c", "a_b:c", "a:b-c", "a:b_c", "a_2d_b", "end", "ä:x", "a b"]
    ids = [export.mermaid_id(n) for n in names]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"s_\w+", i) and i.isascii() for i in ids)
    assert export.mermaid_text('say "hi" #1 <b>&') == '"say #quot;hi#quot; #35;1 #lt;b#gt;#amp;"'


def test_the_options_handed_to_run_step_compile_the_same_settings() -> None:
    parser = build_parser()
    args = parser.parse_args(["graph", "--", "apps", "-weird dir"])
    # Every build and identity option, set to a value that needs care.
    for action in args.project_actions:
        if action.nargs == 0:
            setattr(args, action.dest, True)
        elif action.dest == "only":
            setattr(args, action.dest, ["one", "-two"])
        elif action.choices:
            setattr(args, action.dest, list(action.choices)[-1])
        elif action.dest == "shard":  # I/N, checked by argparse
            setattr(args, action.dest, "2/3")
        else:
            setattr(args, action.dest, "-x $y #z 'q'")
    argv = project_argv(args)
    assert all(a.startswith("--") for a in argv)
    again = parser.parse_args(["run-step", *argv, "--", "app:build:x86_64", "apps", "-weird dir"])
    assert again.step == "app:build:x86_64"
    assert settings_from_args(again) == settings_from_args(args)
    defaults = parser.parse_args(["graph"])
    assert project_argv(defaults) == []


def test_run_step_refuses_when_upstream_steps_have_not_run_or_ran_otherwise(
    workspace: Path, signing_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = ["--offline", f"--key={signing_key}", "--package-version=1.2.3"]

    def run_step(step: str, *extra: str) -> int:
        return main(["run-step", *options, *extra, "--", step, "examples"])

    assert run_step("heartbeat:build:x86_64") == 1
    assert "heartbeat:fetch-deps-build:x86_64 has not run" in capsys.readouterr().err
    assert run_step("heartbeat:fetch-deps-build:x86_64") == 0
    # Another mirror gives fetch-deps another key: what it recorded is not this graph's.
    assert run_step("heartbeat:build:x86_64", "--mirror=http://127.0.0.1:9/alpine") == 1
    err = capsys.readouterr().err
    assert "heartbeat:fetch-deps-build:x86_64 ran with other inputs" in err
    assert not Path(".pakman/steps/heartbeat/build/x86_64.json").exists()
    assert run_step("heartbeat:build:x86_64") == 0
    assert Path(".pakman/steps/heartbeat/build/x86_64.json").exists()


ODD_NAMES = [
    "sp ace",
    "co:lon",
    "ha#sh",
    "dol$lar",
    "per%cent",
    "st*ar",
    "eq=ual",
    "pi|pe",
    "qu'o\"te",
]


def test_files_with_odd_names_are_prerequisites(tmp_path: Path, signing_key: Path) -> None:
    app = tmp_path / "apps" / "heartbeat"
    shutil.copytree(EXAMPLES / "heartbeat", app)
    for name in ODD_NAMES:
        (app / "data" / name).parent.mkdir(exist_ok=True)
        (app / "data" / name).write_text(name)
    key = tmp_path / "k $e #y" / signing_key.name
    key.parent.mkdir()
    shutil.copy2(signing_key, key)
    target = ".pakman/steps/heartbeat/build/x86_64.json"
    env = subprocess_env()

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
        )

    for fmt in ("makefile", "ninja"):
        exported = run(
            *PAKMAN,
            "graph",
            "apps",
            "--offline",
            f"--key={key}",
            "--format",
            fmt,
            "--command",
            " ".join(PAKMAN),
            "-o",
            "Makefile" if fmt == "makefile" else "build.ninja",
        )
        assert exported.returncode == 0, exported.stderr
    ninja = (sys.executable, "-m", "ninja")
    inputs = run(*ninja, "-t", "query", target).stdout
    for name in ODD_NAMES:
        assert f"    apps/heartbeat/data/{name}\n" in inputs
    assert (
        f"    {key.relative_to(tmp_path)}\n"
        in run(*ninja, "-t", "query", ".pakman/steps/heartbeat/package/x86_64.json").stdout
    )

    assert run("make", "-j2", target).returncode == 0  # a run-step that loads the quoted key
    assert run("make", "-q", target).returncode == 0
    for name in ODD_NAMES:  # what if this file changed?
        assert run("make", "-q", "-W", f"apps/heartbeat/data/{name}", target).returncode == 1, name
    time.sleep(0.02)
    (app / "data" / "dol$lar").touch()
    assert run("make", "-q", target).returncode == 1

    assert run(*ninja, "-j2", target).returncode == 0
    assert "no work to do" in run(*ninja, "-n", target).stdout
    time.sleep(0.02)
    (app / "data" / "pi|pe").touch()
    dry = run(*ninja, "-n", target).stdout
    assert "heartbeat:build:x86_64" in dry and "fetch-deps" not in dry


def test_names_make_cannot_spell_are_refused(
    workspace: Path, signing_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workspace / "examples" / "heartbeat" / "bin" / "a;b").write_text("")
    args = ["graph", "examples", "--offline", f"--key={signing_key}", "--package-version=1.2.3"]
    assert main([*args, "--format", "makefile"]) == 3
    assert (
        "examples/heartbeat/bin/a;b: a Makefile cannot name a file with `;`"
        in capsys.readouterr().err
    )
    assert main([*args, "--format", "ninja", "-o", "build.ninja"]) == 0
    assert "bin/a;b" in Path("build.ninja").read_text()


def _load_in_a_fresh_process(root: str, barrier: Any, out: Any) -> None:
    import os

    import pakman.apk

    generate = pakman.apk.generate_key
    pakman.apk.generate_key = lambda d, n: generate(d, n, bits=2048)  # type: ignore[assignment,misc]
    os.chdir(root)
    barrier.wait()
    project = load_project(Settings(paths=("examples",), offline=True))
    out.put(project.context.key_file)


def test_parallel_steps_make_one_workspace_key(tmp_path: Path) -> None:
    copy_examples(tmp_path)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(3)
    out = context.Queue()
    workers = [
        context.Process(target=_load_in_a_fresh_process, args=(str(tmp_path), barrier, out))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert len({out.get() for _ in workers}) == 1
    assert len(list((tmp_path / ".pakman" / "keys").glob("*.rsa"))) == 1


def test_graph_help_says_how_exports_run(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["graph", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("run-step OPTIONS -- STEP PATH", "workspace", "--command", "`$` doubled"):
        assert words in text, words
