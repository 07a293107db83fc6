"""Data-only files for what pakman reads back from `.pakman/`: typed JSON.

`.pakman/` may come from elsewhere (a CI cache restored, a shared store), so
nothing read from it may run code, as pickle does by design and marshal can
be made to (code objects). Records are JSON; the shape of what is read is
given by the reader, never by the file: a dataclass is a JSON list of its
fields in order, decoded by the field types it declares, and a file whose
data does not fit them exactly is refused (`Damaged`), which callers treat
as a cache miss.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from pakman.config.model import FrozenDict, freeze

T = TypeVar("T")
Decoder = Callable[[Any], Any]


class Damaged(ValueError):
    """A file's data does not have the shape its reader expects."""


def dumps(value: object) -> bytes:
    """The JSON bytes of a value made of dataclasses, tuples, mappings, Paths, enums and plain data.

    Raises TypeError for anything else (a YAML date in the platform's data,
    say): such a record is not kept.
    """
    return json.dumps(
        _plain(value), separators=(",", ":"), allow_nan=False, check_circular=False
    ).encode()


def loads(data: bytes, kind: Any) -> Any:
    """Decode bytes written by `dumps` as a value of type `kind`; Damaged when they do not fit."""
    try:
        plain = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise Damaged(f"not JSON: {exc}") from None
    return decoder(kind)(plain)


_FIELDS: dict[type, tuple[str, ...]] = {}  # a dataclass's fields to keep, by class
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: object) -> Any:
    # Exact types first: a fresh clone's snapshot holds some 150,000 values.
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is tuple or kind is list:
        return [v if type(v) is str else _plain(v) for v in value]  # type: ignore[attr-defined]
    names = _FIELDS.get(kind)
    if names is not None:
        return [_plain(getattr(value, name)) for name in names]
    if isinstance(value, (str, bool, int, float)):
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("a mapping with keys that are not text")
        return {k: _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(value) if f.init)
        return [_plain(getattr(value, name)) for name in names]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot keep a {type(value).__name__} in a data file")


_DECODERS: dict[Any, Decoder] = {}
_PLAIN_TYPES = (str, int, bool)  # checked by type(value) is ...: bool is not an int here


def decoder(kind: Any) -> Decoder:
    """The function that checks and builds a value of type `kind` from decoded JSON (cached)."""
    try:
        return _DECODERS[kind]
    except KeyError:
        pass
    except TypeError:  # an unhashable annotation
        return _make(kind)
    made = _make(kind)
    _DECODERS[kind] = made
    return made


def _fail(expected: str, value: object) -> Damaged:
    return Damaged(f"expected {expected}, got {type(value).__name__}")


def _scalar(kind: type) -> Decoder:
    def check(value: Any) -> Any:
        # bool is an int to isinstance: keep them apart.
        if type(value) is kind or (kind is float and type(value) is int):
            return value
        raise _fail(kind.__name__, value)

    return check


def _any(value: Any) -> Any:
    # Plain JSON data the model keeps frozen (a step's reads, a kit's values).
    if type(value) is list and set(map(type, value)) <= {str}:
        return tuple(value)  # the common case, at C speed: a list of names
    return freeze(value)


def _make(kind: Any) -> Decoder:
    if kind is Any or kind is object:
        return _any
    if kind is type(None):
        return _none
    if kind in (str, int, float, bool):
        return _scalar(kind)
    if kind is Path:
        text = _scalar(str)
        return lambda value: Path(text(value))
    if kind is bytes:
        return _bytes
    if isinstance(kind, type) and issubclass(kind, Enum):
        return _enum(kind)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _dataclass(kind)
    if isinstance(kind, type) and issubclass(kind, tuple) and hasattr(kind, "_fields"):
        return _named_tuple(kind)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return _union([decoder(a) for a in args])
    if origin is typing.Literal:
        return _literal(args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _sequence(args[0], tuple)
        if all(a in _PLAIN_TYPES for a in args):
            return _plain_tuple(args)
        return _fixed_tuple([decoder(a) for a in args])
    if origin is list:
        return _sequence(args[0], list)
    if origin in (dict, Mapping):
        return _mapping(decoder(args[1]), frozen=origin is not dict)
    if origin is frozenset:
        inner = _sequence(args[0], tuple)
        return lambda value: frozenset(inner(value))
    raise TypeError(f"no data-file decoder for {kind!r}")


def _none(value: Any) -> None:
    if value is not None:
        raise _fail("null", value)


def _bytes(value: Any) -> bytes:
    if type(value) is not str:
        raise _fail("base64 text", value)
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise Damaged("invalid base64") from None


def _enum(kind: type[Enum]) -> Decoder:
    def check(value: Any) -> Enum:
        try:
            return kind(value)
        except ValueError:
            raise Damaged(f"{value!r} is not a {kind.__name__}") from None

    return check


def _literal(allowed: tuple[Any, ...]) -> Decoder:
    def check(value: Any) -> Any:
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        raise Damaged(f"{value!r} is not one of {allowed!r}")

    return check


def _union(options: list[Decoder]) -> Decoder:
    if len(options) == 2 and _none in options:  # X | None, the common case
        other = options[0] if options[1] is _none else options[1]
        return lambda value: None if value is None else other(value)

    def check(value: Any) -> Any:
        for option in options:
            try:
                return option(value)
            except Damaged:
                continue
        raise _fail("one of a union's types", value)

    return check


def _sequence(kind: Any, make: type) -> Decoder:
    item = decoder(kind)
    rows: list[tuple[type, ...] | None] = []  # a named tuple's field types, when all are plain

    def check(value: Any) -> Any:
        if type(value) is not list:
            raise _fail("a list", value)
        if kind in _PLAIN_TYPES and set(map(type, value)) <= {kind}:
            return make(value)  # checked at C speed: lists of names, ids, paths
        if hasattr(kind, "_fields"):  # rows of a named tuple: a source tree's files
            if not rows:
                hints = typing.get_type_hints(kind)
                types_ = tuple(hints[name] for name in kind._fields)
                rows.append(types_ if all(t in _PLAIN_TYPES for t in types_) else None)
            if (
                rows[0] is not None
                and set(map(type, value)) <= {list}
                and {tuple(map(type, row)) for row in value} <= {rows[0]}
            ):
                return make(map(kind._make, value))
        return make([item(v) for v in value])

    return check


def _plain_tuple(types_: tuple[type, ...]) -> Decoder:
    def check(value: Any) -> tuple[Any, ...]:
        if type(value) is not list or tuple(map(type, value)) != types_:
            raise _fail(f"a list of {len(types_)} values", value)
        return tuple(value)

    return check


def _fixed_tuple(items: list[Decoder]) -> Decoder:
    def check(value: Any) -> tuple[Any, ...]:
        if type(value) is not list or len(value) != len(items):
            raise _fail(f"a list of {len(items)}", value)
        return tuple(decode(v) for decode, v in zip(items, value, strict=True))

    return check


def _mapping(item: Decoder, *, frozen: bool) -> Decoder:
    def check(value: Any) -> Any:
        if type(value) is not dict:
            raise _fail("an object", value)
        result = {k: item(v) for k, v in value.items()}
        return FrozenDict(result) if frozen else result

    return check


def _fields(kind: type) -> list[tuple[str, Any, Decoder]]:
    hints = typing.get_type_hints(kind)
    if dataclasses.is_dataclass(kind):
        names = [f.name for f in dataclasses.fields(kind) if f.init]
    else:
        names = list(kind._fields)  # type: ignore[attr-defined]
    return [(name, hints[name], decoder(hints[name])) for name in names]


def _dataclass(kind: type) -> Decoder:
    names: list[str] = []
    decoders: list[Decoder] = []
    plain: list[tuple[type, ...] | None] = []  # the field types when all are str, int or bool
    # Filled in directly, as unpickling does: the values are checked here, and
    # __init__ (object.__setattr__ per field of a frozen class) costs twice the time.
    direct = not hasattr(kind, "__slots__") and not hasattr(kind, "__post_init__")

    def check(value: Any) -> Any:
        if not names:  # resolved on first use: a class may name itself in its fields
            fields = _fields(kind)
            names.extend(name for name, _, _ in fields)
            decoders.extend(decode for _, _, decode in fields)
            types_ = tuple(hint for _, hint, _ in fields)
            plain.append(types_ if all(t in _PLAIN_TYPES for t in types_) else None)
        if type(value) is not list or len(value) != len(names):
            raise _fail(f"a list of {kind.__name__}'s {len(names)} fields", value)
        if plain[0] is not None and tuple(map(type, value)) == plain[0]:
            values = value
        else:
            values = [decode(v) for decode, v in zip(decoders, value, strict=True)]
        if direct:
            made: Any = object.__new__(kind)
            made.__dict__.update(zip(names, values, strict=True))
            return made
        try:
            return kind(*values)
        except (TypeError, ValueError) as exc:  # refused by the class itself
            if isinstance(exc, Damaged):
                raise
            raise Damaged(f"not a {kind.__name__}: {exc}") from None

    return check


def _named_tuple(kind: type) -> Decoder:
    decoders: list[Decoder] = []
    plain: list[tuple[type, ...] | None] = []
    make = kind._make  # type: ignore[attr-defined]

    def check(value: Any) -> Any:
        if not decoders:
            fields = _fields(kind)
            decoders.extend(decode for _, _, decode in fields)
            types_ = tuple(hint for _, hint, _ in fields)
            plain.append(types_ if all(t in _PLAIN_TYPES for t in types_) else None)
        if type(value) is not list or len(value) != len(decoders):
            raise _fail(f"a list of {kind.__name__}'s {len(decoders)} fields", value)
        if plain[0] is not None and tuple(map(type, value)) == plain[0]:
            return make(value)
        return make([decode(v) for decode, v in zip(decoders, value, strict=True)])

    return check
