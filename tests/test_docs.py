"""The configuration reference documents every key pakman knows, by its full path."""

from __future__ import annotations

from collections.abc import Iterator

from pakman.config.schema import INSTELLAR
from pakman.config.shape import Fields, Free, Items, OneOf, Spec
from support import ROOT

REFERENCE = (ROOT / "docs" / "instellar-yml.md").read_text()


def key_paths(spec: Spec, prefix: str = "") -> Iterator[str]:
    if isinstance(spec, Items):
        yield from key_paths(spec.item, prefix + "[]")
    elif isinstance(spec, OneOf):
        for option in spec.options:
            yield from key_paths(option, prefix)
    elif isinstance(spec, Fields) and not isinstance(spec, Free):
        for name, field in spec.fields.items():
            path = f"{prefix}.{name}" if prefix else name
            yield path
            yield from key_paths(field.spec, path)


def test_every_key_is_in_the_reference() -> None:
    paths = set(key_paths(INSTELLAR))
    assert "run.services[].start.call" in paths
    assert sorted(p for p in paths if f"`{p}`" not in REFERENCE) == []
