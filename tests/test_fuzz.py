"""Random YAML documents never end in a traceback: a model or a ConfigError, nothing else."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pakman.config.schema import validate
from pakman.config.source import load_bytes, load_text
from pakman.errors import ConfigError

KEYS = [
    "dependencies",
    "build",
    "runtime",
    "trace",
    "stack",
    "type",
    "command",
    "destinations",
    "destination",
    "strip_binary",
    "run",
    "name",
    "services",
    "commands",
    "binary",
    "path",
    "start",
    "stop",
    "call",
    "kill",
    "pid_path",
    "process",
    "variations",
    "hook",
    "post-install",
    "pre-install",
    "architectures",
    "source",
    "package",
    "kits",
    "ports",
    "target",
    "main",
    "variables",
    "key",
    "default_value",
    "driver",
    "driver_options",
    "forks",
    "sizes",
    "plans",
    "page",
    "orchestration",
    "description",
]
VALUES = [
    "alpine/3.20",
    "static",
    "custom",
    "default",
    "web",
    "x86_64",
    "serve",
    "dist",
    "*",
    "../x",
    "a b",
    "$(id)",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.sampled_from(VALUES),
    st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=12))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=6)
    ),
    max_leaves=40,
)


def check(text: str) -> None:
    try:
        validate(load_text(text, "instellar.yml"))
    except ConfigError as exc:
        assert exc.errors, "a ConfigError always carries at least one error"
        for diagnostic in exc.errors:
            assert diagnostic.message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), documents, max_size=8))
def test_random_structures(data: dict[str, Any]) -> None:
    check(yaml.safe_dump(data))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(" \n\t-:[]{}&*!|>'\"#%@`,?abc123")), max_size=120))
def test_random_yaml_text(text: str) -> None:
    check(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(raw: bytes) -> None:
    try:
        validate(load_bytes(raw, "instellar.yml"))
    except ConfigError as exc:
        assert exc.errors


EXAMPLE_DATA = [
    yaml.safe_load(p.read_text())
    for p in sorted(
        __import__("pathlib")
        .Path(__file__)
        .resolve()
        .parent.parent.glob("examples/*/instellar.yml")
    )
]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_examples(data: st.DataObject) -> None:
    """Replace one random part of a real example with random data."""
    document = data.draw(st.sampled_from(EXAMPLE_DATA))
    document = yaml.safe_load(yaml.safe_dump(document))  # a private copy
    node: Any = document
    while True:
        if isinstance(node, dict) and node:
            key = data.draw(st.sampled_from(sorted(node)))
        elif isinstance(node, list) and node:
            key = data.draw(st.integers(0, len(node) - 1))
        else:
            break
        if data.draw(st.booleans()) or not isinstance(node[key], (dict, list)):
            node[key] = data.draw(documents)
            break
        node = node[key]
    check(yaml.safe_dump(document))
