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

# The layers, by module name. Update these names when modules move.
# What every layer may use: the version, the errors, Alpine's facts, the generated files, file helpers.
FOUNDATION = ("pakman", "pakman.errors", "pakman.alpine", "pakman.render.files", "pakman.fileio")
# The configuration layer: YAML -> located, validated model.
CONFIG = (
    "pakman.config.source",
    "pakman.config.rules",
    "pakman.config.shape",
    "pakman.config.model",
    "pakman.config.schema",
    "pakman.config.identity",
    "pakman.config.lint",
    "pakman.config.prepare",
)
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


def test_the_tables_name_real_modules() -> None:
    for name in (*FOUNDATION, *CONFIG, *DOIT_ADAPTER):
        assert name in GRAPH, f"{name} is not one of pakman's modules; update the table"


def test_pakman_imports_no_cycle() -> None:
    internal = GRAPH.subgraph(n for n in GRAPH if n.startswith("pakman"))
    cycles = sorted(sorted(c) for c in nx.simple_cycles(internal))
    assert cycles == []


@pytest.mark.parametrize("module", FOUNDATION[1:] + CONFIG)
def test_the_configuration_layer_loads_no_template_graph_or_doit(module: str) -> None:
    reached = nx.descendants(GRAPH, module)
    assert sorted(reached & set(HEAVY)) == []
    outside = {m for m in reached if m.startswith("pakman")} - {*FOUNDATION, *CONFIG}
    assert sorted(outside) == [], f"{module} reaches beyond the configuration layer"


def test_only_the_doit_adapter_imports_doit() -> None:
    importers = sorted(m for m in GRAPH.predecessors("doit") if m.startswith("pakman"))
    assert importers == sorted(DOIT_ADAPTER)


def test_the_graph_sees_function_level_imports() -> None:
    # cli.build imports the step runner inside functions only; the graph must still see it.
    assert "pakman.doit.tasks" in nx.descendants(GRAPH, "pakman.cli.build")
