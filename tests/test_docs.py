"""The docs match the code: every configuration key is in the reference, every module named exists."""

from __future__ import annotations

import re
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


MODULE_PATH = re.compile(r"\bpakman/[\w/]+\.py\b")
MODULE_NAME = re.compile(r"`(pakman(?:\.\w+)+)(?::\w+)?`")


def docs() -> dict[str, str]:
    return {
        p.name: p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    }


def test_the_modules_the_docs_name_exist() -> None:
    missing = []
    for name, text in docs().items():
        missing += [f"{name}: {m}" for m in MODULE_PATH.findall(text) if not (ROOT / m).is_file()]
        for module in MODULE_NAME.findall(text):
            path = ROOT / module.replace(".", "/")
            if not (path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()):
                missing.append(f"{name}: {module}")
    assert missing == []


def test_the_development_section_names_only_what_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Development") :]
    section = section[: section.index("- Golden files")]
    names = re.findall(r"`([\w/.]+(?:\.py|/))`", section)
    assert names
    package = ROOT / "pakman"
    missing = [
        n
        for n in names
        if not (
            (ROOT / n).exists()
            or (package / n).exists()
            or any(package.rglob(n.rstrip("/").rpartition("/")[2]))
        )
    ]
    assert missing == []
