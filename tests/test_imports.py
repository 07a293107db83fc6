"""pakman's import graph: no cycle, and each layer imports only the layers before it.

Read from the source with `ast`, imports inside functions included: a
function-level import is still a dependency, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

import pakman

# The layers, first to last: a module imports only modules of its own layer or
# of layers before it. A module belongs to the layer naming it, or else its
# package (the longest prefix). Update this table when modules move.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # What every layer may use: errors, Alpine's facts, file helpers, the generated files.
    ("foundation", ("pakman.errors", "pakman.alpine", "pakman.fileio", "pakman.render.files")),
    ("config", ("pakman.config",)),  # YAML -> located, validated model
    # The package itself: __version__, and the public API (config's names, loaded lazily).
    ("public API", ("pakman",)),
    ("apk", ("pakman.apk",)),  # the package format
    ("sandbox", ("pakman.sandbox",)),
    ("workspace", ("pakman.workspace",)),  # .pakman/: layout, fingerprints, journal, store
    ("render", ("pakman.render",)),  # Jinja2
    ("compile", ("pakman.compile",)),  # apps prepared -> the step graph
    ("steps", ("pakman.steps",)),  # what steps run
    ("fastpath", ("pakman.fastpath",)),  # the plan, the snapshot, the watcher
    (
        "project",
        ("pakman.project", "pakman.affected"),
    ),  # load_project: prepared and compiled, or reused
    ("doit", ("pakman.doit",)),  # the doit adapter
    ("export", ("pakman.export",)),
    ("ship", ("pakman.ship",)),  # out of the workspace: the platform, S3 buckets
    ("cli", ("pakman.cli",)),
    ("entry points", ("pakman.dodo", "pakman.__main__")),
)
# The configuration layer and what it stands on.
FOUNDATION = LAYERS[0][1]
CONFIG_LAYERS = ("foundation", "config")
# What the configuration layer must not load, even through another module.
HEAVY = ("jinja2", "networkx", "doit")
# The doit adapter: the only modules that import doit.
DOIT_ADAPTER = ("pakman.doit.tasks", "pakman.doit.reporter")
PACKAGE = Path(pakman.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """Every module `path` imports anywhere in it: pakman's by name, others by top-level name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            # `from pakman import names` imports the module pakman.config.rules.
            submodules = {f"{source}.{a.name}" for a in node.names} & modules
            found.update(submodules or {source})
    return {m if m in modules else m.split(".")[0] for m in found} - {name}


def import_graph() -> nx.DiGraph[str]:
    """pakman's modules, an edge from each to each module it imports (third-party ones too)."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(paths)
    for name, path in paths.items():
        graph.add_edges_from((name, target) for target in _imports(path, name, set(paths)))
    return graph


GRAPH = import_graph()


def layer_of(module: str) -> int:
    """The index in LAYERS of the layer naming `module`, else of its package's (the longest name)."""
    for index, (_, names) in enumerate(LAYERS):
        if module in names:
            return index
    packages = [
        (len(name), index)
        for index, (_, names) in enumerate(LAYERS)
        for name in names
        if name != "pakman" and module.startswith(name + ".")
    ]
    if not packages:
        raise ValueError(f"{module} is in no layer; add it to LAYERS")
    return max(packages)[1]


def _layer_modules(*layers: str) -> tuple[str, ...]:
    wanted = {[name for name, _ in LAYERS].index(layer) for layer in layers}
    return tuple(sorted(m for m in GRAPH if m.startswith("pakman") and layer_of(m) in wanted))


def test_the_tables_name_real_modules() -> None:
    for name in (*FOUNDATION, *DOIT_ADAPTER):
        assert name in GRAPH, f"{name} is not one of pakman's modules; update the table"
    for layer, names in LAYERS:
        for name in names:
            assert any(m == name or m.startswith(name + ".") for m in GRAPH), (layer, name)


def test_every_module_is_in_a_layer() -> None:
    for module in GRAPH:
        if module.startswith("pakman"):
            layer_of(module)


def test_each_module_imports_only_its_layer_and_the_layers_before() -> None:
    upward = sorted(
        f"{source} ({LAYERS[layer_of(source)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})"
        for source, target in GRAPH.edges
        if source.startswith("pakman")
        and target.startswith("pakman")
        and layer_of(target) > layer_of(source)
    )
    assert upward == []


def test_pakman_imports_no_cycle() -> None:
    internal = GRAPH.subgraph(n for n in GRAPH if n.startswith("pakman"))
    cycles = sorted(sorted(c) for c in nx.simple_cycles(internal))
    assert cycles == []


@pytest.mark.parametrize("module", _layer_modules(*CONFIG_LAYERS))
def test_the_configuration_layer_loads_no_template_graph_or_doit(module: str) -> None:
    reached = nx.descendants(GRAPH, module)
    assert sorted(reached & set(HEAVY)) == []
    outside = {m for m in reached if m.startswith("pakman")} - set(_layer_modules(*CONFIG_LAYERS))
    assert sorted(outside) == [], f"{module} reaches beyond the configuration layer"


def test_only_the_doit_adapter_imports_doit() -> None:
    importers = sorted(m for m in GRAPH.predecessors("doit") if m.startswith("pakman"))
    assert importers == sorted(DOIT_ADAPTER)


def test_the_graph_sees_function_level_imports() -> None:
    # cli.build imports the step runner inside functions only; the graph must still see it.
    assert "pakman.doit.tasks" in nx.descendants(GRAPH, "pakman.cli.build")
