"""YAML text -> raw data plus a map from every key path to its line and column.

PyYAML's C parser composes the node tree when it is available (the pure
Python one otherwise); the nodes are then turned into plain Python data here,
so that each value's position is recorded and a key repeated inside one
mapping is an error instead of silently keeping the last value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pakman.errors import ConfigError, Diagnostic, KeyPath, Severity, format_path
from pakman.fileio import confined, read_regular

MAX_BYTES = 1 << 20  # an instellar.yml is a few KB; 1 MiB is far beyond any real one
MAX_DEPTH = 64
MAX_VALUES = 100_000  # counted after alias expansion, so "billion laughs" stops early
# Nesting the C composer handles before its own recursion becomes a risk.
_SAFE_COMPOSE_DEPTH = 5_000

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_BRACKETS = re.compile(r"[^\[\]{}]+")

Position = tuple[int, int]


@dataclass(frozen=True)
class Document:
    """A loaded YAML file: its data and where every value and key sits."""

    name: str
    data: Any
    marks: Mapping[KeyPath, Position] = field(default_factory=dict)
    key_marks: Mapping[KeyPath, Position] = field(default_factory=dict)

    def where(self, path: KeyPath, *, at_key: bool = False) -> Position:
        """Line and column of a path's key or value, else of its nearest parent."""
        if at_key and path in self.key_marks:
            return self.key_marks[path]
        while True:
            if path in self.marks:
                return self.marks[path]
            if not path:
                return (0, 0)
            path = path[:-1]

    def diagnostic(
        self, path: KeyPath, message: str, *, warning: bool = False, at_key: bool = False
    ) -> Diagnostic:
        """A diagnostic located at `path` in this document."""
        line, column = self.where(path, at_key=at_key)
        severity: Severity = "warning" if warning else "error"
        return Diagnostic(self.name, line, column, format_path(path), message, severity)


def load_file(path: Path | str, name: str | None = None) -> Document:
    """Read and parse one YAML file; raise ConfigError on any problem."""
    path = Path(path)
    name = name if name is not None else str(path)
    # A link to a file outside the app's folder would be read and echoed in messages.
    confined(path, path.parent, "this file")
    try:
        raw = read_regular(path, MAX_BYTES)
    except IsADirectoryError:
        raise ConfigError(Diagnostic(name, 0, 0, "", "is a directory, not a file")) from None
    except OSError as exc:
        raise ConfigError(Diagnostic(name, 0, 0, "", f"cannot read: {exc.strerror}")) from None
    if len(raw) > MAX_BYTES:
        size = path.stat().st_size
        raise ConfigError(
            Diagnostic(
                name,
                0,
                0,
                "",
                f"the file is too large ({size / 1e6:.1f} MB); the limit is 1 MiB "
                "(an instellar.yml is normally a few KB)",
            )
        )
    return load_bytes(raw, name)


def load_bytes(raw: bytes, name: str) -> Document:
    """Parse YAML bytes that should be UTF-8 text."""
    if len(raw) > MAX_BYTES:
        raise ConfigError(Diagnostic(name, 0, 0, "", "the text is too large; the limit is 1 MiB"))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = raw[exc.start]
        raise ConfigError(
            Diagnostic(name, line, column, "", f"not UTF-8 text: invalid byte 0x{byte:02x}")
        ) from None
    return load_text(text, name)


def load_text(text: str, name: str) -> Document:
    """Parse YAML text into a Document."""
    if "\x00" in text:
        offset = text.index("\x00")
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        raise ConfigError(
            Diagnostic(name, line, column, "", "the file contains NUL bytes; is it a binary file?")
        )
    if not text.strip():
        raise ConfigError(Diagnostic(name, 0, 0, "", "the file is empty"))
    if _nesting_bound(text) > _SAFE_COMPOSE_DEPTH:
        _check_depth_by_events(text, name)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(Diagnostic(name, 0, 0, "", "the file is empty (only comments)"))
        if not isinstance(node, yaml.MappingNode):
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
            raise ConfigError(
                Diagnostic(
                    name,
                    line,
                    column,
                    "",
                    "the top level must be a mapping of keys (dependencies, build, run, ...), "
                    f"got {_kind(node)}",
                )
            )
        builder = _Builder(loader, name)
        data = builder.build(node, (), 0)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(_yaml_error(exc, name, text)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(Diagnostic(name, 0, 0, "", f"invalid YAML: {exc}")) from None
    finally:
        loader.dispose()
    if builder.errors:
        raise ConfigError(builder.errors)
    return Document(name, data, builder.marks, builder.key_marks)


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    return "a single value" if node.value else "nothing"


def _yaml_error(exc: yaml.MarkedYAMLError, name: str, text: str = "") -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    problem = (exc.problem or "syntax error").removeprefix("but ")
    if "maximum nesting depth" in problem:  # libyaml >= 0.2.6 stops at its own limit
        return Diagnostic(name, line, column, "", f"nested more than {MAX_DEPTH} levels deep")
    message = f"invalid YAML: {problem}"
    if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        message += f" ({exc.context} at line {exc.context_mark.line + 1})"
    if mark is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t":
        message += "; YAML cannot indent with tabs, use spaces"
    return Diagnostic(name, line, column, "", message)


def _nesting_bound(text: str) -> int:
    """A cheap upper bound on the nesting depth of a YAML text.

    Each block level needs at least one column on its line and each flow
    level a bracket, so the longest line plus the deepest bracket count bounds
    the depth (quoted brackets only make the bound looser).
    """
    depth = deepest = 0
    for char in _BRACKETS.sub("", text):
        depth = depth + 1 if char in "[{" else depth - 1
        deepest = max(deepest, depth)
    longest = max(map(len, text.splitlines()), default=0)
    return deepest + longest


def _check_depth_by_events(text: str, name: str) -> None:
    """Walk parser events (no recursion) and refuse documents nested too deeply."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
                    raise ConfigError(
                        Diagnostic(
                            name,
                            line,
                            column,
                            "",
                            f"nested more than {MAX_DEPTH} levels deep",
                        )
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(_yaml_error(exc, name, text)) from None


class _Builder:
    """Turns composed nodes into plain data, recording positions."""

    def __init__(self, loader: yaml.SafeLoader, name: str) -> None:
        self.loader = loader
        self.name = name
        self.marks: dict[KeyPath, Position] = {}
        self.key_marks: dict[KeyPath, Position] = {}
        self.errors: list[Diagnostic] = []
        self.count = 0
        self.merging: set[int] = set()  # the mappings being expanded, to catch `a: &m {<<: *m}`

    def fail(self, node: yaml.Node, path: KeyPath, message: str) -> ConfigError:
        mark = node.start_mark
        return ConfigError(
            Diagnostic(self.name, mark.line + 1, mark.column + 1, format_path(path), message)
        )

    def build(self, node: yaml.Node, path: KeyPath, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise self.fail(node, path, f"more than {MAX_VALUES} values (after expanding aliases)")
        if depth > MAX_DEPTH:
            raise self.fail(node, path, f"nested more than {MAX_DEPTH} levels deep")
        mark = node.start_mark
        self.marks[path] = (mark.line + 1, mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)
        return self.mapping(node, path, depth)

    def scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        if node.tag == _STR_TAG:
            return node.value
        try:
            return self.loader.construct_object(node)
        except yaml.constructor.ConstructorError as exc:
            raise self.fail(node, path, f"cannot read this value: {exc.problem}") from None

    def mapping(
        self, node: yaml.MappingNode, path: KeyPath, depth: int, *, merged: bool = False
    ) -> dict[str, Any]:
        # Counted here too: a mapping merged with `<<` is expanded without build().
        self.count += 1
        if self.count > MAX_VALUES:
            raise self.fail(node, path, f"more than {MAX_VALUES} values (after expanding aliases)")
        if id(node) in self.merging:
            if merged:
                raise self.fail(node, path, "a merge key (<<) includes the mapping it belongs to")
            raise self.fail(node, path, "an alias (*name) names the mapping it is inside")
        self.merging.add(id(node))
        try:
            return self._mapping(node, path, depth)
        finally:
            self.merging.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: KeyPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.update(self.merge(value_node, path, depth))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(
                    key_node, path, "a key must be a plain value, not a list or mapping"
                )
            # The key's text as written: `on:` or `yes:` stay words, not booleans.
            key = str(key_node.value)
            key_path = (*path, key)
            line = key_node.start_mark.line + 1
            if key in first_seen:
                self.errors.append(
                    Diagnostic(
                        self.name,
                        line,
                        key_node.start_mark.column + 1,
                        format_path(key_path),
                        f"key repeated in the same mapping (first at line {first_seen[key]}); "
                        "YAML would silently keep only the last one",
                    )
                )
                continue
            first_seen[key] = line
            self.key_marks[key_path] = (line, key_node.start_mark.column + 1)
            result[key] = self.build(value_node, key_path, depth + 1)
        for key, value in merged.items():
            result.setdefault(key, value)
        return result

    def merge(self, node: yaml.Node, path: KeyPath, depth: int) -> dict[str, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise self.fail(
                    source, path, "a merge key (<<) needs a mapping or list of mappings"
                )
            if depth >= MAX_DEPTH:
                raise self.fail(source, path, f"nested more than {MAX_DEPTH} levels deep")
            for key, value in self.mapping(source, path, depth + 1, merged=True).items():
                merged.setdefault(key, value)
        return merged
