"""A small language for the expected shape of YAML data, and its checker.

A shape is a tree of specs (`Text`, `Flag`, `Number`, `Plain`, `Free`,
`Items`, `Fields`, `OneOf`). Checking a value reports every problem with its
key path and position; the same tree describes itself as JSON Schema. Used
for instellar.yml (`schema.py`) and for pipeline definitions (`pipeline.py`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pakman.config.rules import Rule
from pakman.errors import Diagnostic, KeyPath, show

if TYPE_CHECKING:
    from pakman.config.source import Document

# --------------------------------------------------------------------------
# The checking context


class Checker:
    """Collects diagnostics for one document."""

    def __init__(self, document: Document, strict: bool) -> None:
        self.document = document
        self.strict = strict
        self.diagnostics: list[Diagnostic] = []
        self.error_paths: list[KeyPath] = []

    def error(self, path: KeyPath, message: str, *, at_key: bool = False) -> None:
        self.diagnostics.append(self.document.diagnostic(path, message, at_key=at_key))
        self.error_paths.append(path)

    def warn(self, path: KeyPath, message: str, *, at_key: bool = False) -> None:
        self.diagnostics.append(
            self.document.diagnostic(path, message, warning=True, at_key=at_key)
        )

    def clean(self, prefix: KeyPath) -> bool:
        """True when no error was reported at or under `prefix`."""
        n = len(prefix)
        return not any(p[:n] == prefix for p in self.error_paths)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.diagnostics, key=lambda d: (d.line, d.column))


def kind(value: object) -> str:
    """How a YAML value is called in messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "a date"
    if isinstance(value, bytes):
        return "binary data"
    return type(value).__name__


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`; did you mean `x`?` for the closest choice, or ''."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


# --------------------------------------------------------------------------
# Specs: each checks a value and describes itself as JSON Schema


class Spec:
    """The expected shape of one value."""

    description: str = ""

    def check(self, value: Any, path: KeyPath, ctx: Checker) -> bool:
        """Report problems with `value`; True when it is well-formed."""
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def expects(self) -> str:
        raise NotImplementedError

    def accepts_type(self, value: Any) -> bool:
        raise NotImplementedError

    def _described(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self.description:
            schema["description"] = self.description
        return schema

    def type_error(self, value: Any, path: KeyPath, ctx: Checker) -> bool:
        message = f"expected {self.expects()}, got {kind(value)}"
        if isinstance(value, (int, float, bool)) and "string" in self.expects():
            message += " (put it in quotes to make it text)"
        ctx.error(path, message)
        return False


@dataclass
class Text(Spec):
    description: str = ""
    rule: Rule | None = None
    enum: tuple[str, ...] = ()
    extra: Callable[[str], str | None] | None = None  # returns a refusal or None

    def expects(self) -> str:
        return "a string"

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, str)

    def check(self, value: Any, path: KeyPath, ctx: Checker) -> bool:
        if not isinstance(value, str):
            return self.type_error(value, path, ctx)
        if self.enum and value not in self.enum:
            choices = ", ".join(self.enum)
            ctx.error(
                path, f"{show(value)} is not one of: {choices}{did_you_mean(value, self.enum)}"
            )
            return False
        if self.rule is not None and not self.rule.match(value):
            ctx.error(path, f"{show(value)} is not allowed: {self.rule.says}")
            return False
        if self.extra is not None:
            refusal = self.extra(value)
            if refusal:
                ctx.error(path, refusal)
                return False
        return True

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string"}
        if self.enum:
            schema["enum"] = list(self.enum)
        if self.rule is not None:
            schema["pattern"] = self.rule.pattern
        return self._described(schema)


@dataclass
class Flag(Spec):
    description: str = ""

    def expects(self) -> str:
        return "true or false"

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, bool)

    def check(self, value: Any, path: KeyPath, ctx: Checker) -> bool:
        return True if isinstance(value, bool) else self.type_error(value, path, ctx)

    def json_schema(self) -> dict[str, Any]:
        return self._described({"type": "boolean"})


@dataclass
class Number(Spec):
    description: str = ""
    minimum: int = 0
    maximum: int = 2**63 - 1

    def expects(self) -> str:
        return "an integer"

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def check(self, value: Any, path: KeyPath, ctx: Checker) -> bool:
        if not self.accepts_type(value):
            return self.type_error(value, path, ctx)
        if not self.minimum <= value <= self.maximum:
            ctx.error(path, f"{value} is out of range ({self.minimum} to {self.maximum})")
            return False
        return True

    def json_schema(self) -> dict[str, Any]:
        schema = {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}
        return self._described(schema)


@dataclass
class Plain(Spec):
    """A single value kept verbatim: text, number or boolean."""

    description: str = ""

    def expects(self) -> str:
        return "a string, number or boolean"

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, (str, int, float, bool))

    def check(self, value: Any, path: KeyPath, ctx: Checker) -> bool:
        return True if self.accepts_type(value) else self.type_error(value, path, ctx)

    def json_schema(self) -> dict[str, Any]:
        return self._described({"type": ["string", "number", "boolean"]})


@dataclass
class Free(Spec):
    """Free-form data (platform metadata), kept verbatim; only its top shape is checked."""

    description: str = ""
    shape: Literal["mapping", "list", "any"] = "any"

    def expects(self) -> str:
        return {"mapping": "a mapping", "list": "a list", "any": "a value"}[self.shape]

    def accepts_type(self, value: Any) -> bool:
        if self.shape == "mapping":
            return isinstance(value, dict)
        return isinstance(value, list) if self.shape == "list" else True

    def check(self, value: Any, path: KeyPath, ctx: Checker) -> bool:
        if not self.accepts_type(value):
            return self.type_error(value, path, ctx)
        return _plain_data(value, path, ctx)

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {}
        if self.shape != "any":
            schema["type"] = {"mapping": "object", "list": "array"}[self.shape]
        return self._described(schema)


def _plain_data(value: Any, path: KeyPath, ctx: Checker) -> bool:
    """Free-form data must still be JSON-like, so it can travel with the package."""
    if isinstance(value, dict):
        return all([_plain_data(v, (*path, k), ctx) for k, v in value.items()])
    if isinstance(value, list):
        return all([_plain_data(v, (*path, i), ctx) for i, v in enumerate(value)])
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    ctx.error(path, f"expected plain data (text, numbers, lists, mappings), got {kind(value)}")
    return False


@dataclass
class Items(Spec):
    item: Spec
    description: str = ""
    min_items: int = 0
    unique: bool = False

    def expects(self) -> str:
        return "a list"

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, list)

    def check(self, value: Any, path: KeyPath, ctx: Checker) -> bool:
        if not isinstance(value, list):
            return self.type_error(value, path, ctx)
        if len(value) < self.min_items:
            ctx.error(path, f"needs at least {self.min_items} item(s)")
            return False
        ok = True
        seen: dict[Any, int] = {}
        for i, item in enumerate(value):
            item_path = (*path, i)
            if item is None:
                ctx.error(item_path, f"empty list item; expected {self.item.expects()}")
                ok = False
                continue
            if not self.item.check(item, item_path, ctx):
                ok = False
            elif self.unique and isinstance(item, str):
                if item in seen:
                    ctx.error(item_path, f"{show(item)} is listed twice (also item [{seen[item]}])")
                    ok = False
                seen.setdefault(item, i)
        return ok

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "array", "items": self.item.json_schema()}
        if self.min_items:
            schema["minItems"] = self.min_items
        if self.unique:
            schema["uniqueItems"] = True
        return self._described(schema)


@dataclass
class Field:
    spec: Spec
    required: bool = False
    deprecated: str = ""  # the modern spelling, when this key is an older shape


@dataclass
class Fields(Spec):
    """A mapping with known keys."""

    fields: dict[str, Field]
    description: str = ""
    unknown: Literal["warn", "error", "allow"] = "warn"
    unknown_hint: str = ""

    def expects(self) -> str:
        return "a mapping"

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, dict)

    def check(self, value: Any, path: KeyPath, ctx: Checker) -> bool:
        if not isinstance(value, dict):
            return self.type_error(value, path, ctx)
        ok = True
        for key, item in value.items():
            item_path = (*path, key)
            spec = self.fields.get(key)
            if spec is None:
                ok = self._unknown(key, item_path, ctx) and ok
            elif item is None:
                if spec.required:
                    ctx.error(item_path, "is required but empty")
                    ok = False
            elif not spec.spec.check(item, item_path, ctx):
                ok = False
        for key, spec in self.fields.items():
            if spec.required and key not in value:
                ctx.error((*path, key), "required key is missing")
                ok = False
        return ok

    def _unknown(self, key: str, path: KeyPath, ctx: Checker) -> bool:
        if self.unknown == "allow":
            return True
        known = [k for k, f in self.fields.items() if not f.deprecated]
        message = f"unknown key `{key}`{did_you_mean(key, self.fields)}"
        if self.unknown_hint:
            message += f" ({self.unknown_hint})"
        if self.unknown == "error" or ctx.strict:
            if (
                self.unknown == "error"
                and not self.unknown_hint
                and not did_you_mean(key, self.fields)
            ):
                message += f"; allowed: {', '.join(known)}"
            ctx.error(path, message, at_key=True)
            return False
        ctx.warn(path, message, at_key=True)
        return True

    def json_schema(self) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        for key, spec in self.fields.items():
            schema = spec.spec.json_schema()
            if not spec.required:
                _allow_null(schema)
            if spec.deprecated:
                schema["deprecated"] = True
                schema["description"] = f"Deprecated: write {spec.deprecated}."
            properties[key] = schema
        out: dict[str, Any] = {"type": "object", "properties": properties}
        required = [k for k, f in self.fields.items() if f.required]
        if required:
            out["required"] = required
        if self.unknown != "allow":
            out["additionalProperties"] = False
        return self._described(out)


def _allow_null(schema: dict[str, Any]) -> None:
    """Optional keys may be left empty (`key:`), which YAML reads as null."""
    kind_ = schema.get("type")
    if isinstance(kind_, str):
        schema["type"] = [kind_, "null"]
    elif isinstance(kind_, list) and "null" not in kind_:
        schema["type"] = [*kind_, "null"]
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]


@dataclass
class OneOf(Spec):
    """One of several shapes, told apart by the YAML kind of the value."""

    options: tuple[Spec, ...]
    description: str = ""

    def expects(self) -> str:
        return " or ".join(o.expects() for o in self.options)

    def accepts_type(self, value: Any) -> bool:
        return any(o.accepts_type(value) for o in self.options)

    def check(self, value: Any, path: KeyPath, ctx: Checker) -> bool:
        for option in self.options:
            if option.accepts_type(value):
                return option.check(value, path, ctx)
        return self.type_error(value, path, ctx)

    def json_schema(self) -> dict[str, Any]:
        return self._described({"anyOf": [o.json_schema() for o in self.options]})
