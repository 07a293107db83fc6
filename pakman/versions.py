"""apk's version ordering and dependency constraints.

Versions compare token by token the way apk-tools does (src/version.c): a
number, then `.number` parts (a part with leading zeros sorts before one
without), an optional letter, `_suffix[N]` parts where alpha < beta < pre <
rc < (none) < cvs < svn < git < hg < p, then `-rN`. Constraints are
`<`, `<=`, `=`, `>=`, `>`, `~` (prefix match) and `><` (checksum, not
checked here).
"""

from __future__ import annotations

import functools
import re

_PRE = ("alpha", "beta", "pre", "rc")
_POST = ("cvs", "svn", "git", "hg", "p")
# Token kinds, in the order that decides comparisons between different kinds
# (a longer version is greater unless what follows is a pre-release suffix).
_NUMBER, _LETTER, _SUFFIX, _SUFFIX_NUMBER, _HASH, _RELEASE, _END = range(7)
_TOKEN = re.compile(
    r"(?P<dot>\.)?(?P<num>[0-9]+)|(?P<letter>[a-z])|_(?P<suffix>[a-z]+)(?P<sufnum>[0-9]*)"
    r"|~(?P<hash>[0-9a-f]+)|-r(?P<rel>[0-9]+)"
)


@functools.lru_cache(maxsize=4096)
def _tokens(version: str) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    pos = 0
    while pos < len(version):
        match = _TOKEN.match(version, pos)
        if match is None:
            raise ValueError(f"not an apk version: {version!r}")
        pos = match.end()
        if match["num"] is not None:
            digits = match["num"]
            if match["dot"] and len(digits) > 1 and digits.startswith("0"):
                # "1.01" sorts before "1.1": leading zeros count negatively.
                zeros = len(digits) - len(digits.lstrip("0"))
                out.append((_NUMBER, -zeros))
            out.append((_NUMBER, int(digits)))
        elif match["letter"] is not None:
            out.append((_LETTER, ord(match["letter"])))
        elif match["suffix"] is not None:
            name = match["suffix"]
            if name in _PRE:
                out.append((_SUFFIX, _PRE.index(name) - len(_PRE)))
            elif name in _POST:
                out.append((_SUFFIX, _POST.index(name)))
            else:
                raise ValueError(f"not an apk version: {version!r} (unknown suffix _{name})")
            if match["sufnum"]:
                out.append((_SUFFIX_NUMBER, int(match["sufnum"])))
        elif match["hash"] is not None:
            out.append((_HASH, 0))  # a commit hash does not order versions
        else:
            out.append((_RELEASE, int(match["rel"])))
    return tuple(out)


def compare(a: str, b: str, *, fuzzy: bool = False) -> int:
    """-1, 0 or 1 as apk orders versions `a` and `b`; `fuzzy` compares only b's length."""
    ta, tb = _tokens(a), _tokens(b)
    for (kind_a, value_a), (kind_b, value_b) in zip(ta, tb, strict=False):
        if kind_a != kind_b:
            return _tail_order(kind_a, value_a, kind_b, value_b)
        if value_a != value_b:
            return -1 if value_a < value_b else 1
    if len(ta) == len(tb) or (fuzzy and len(ta) >= len(tb)):
        return 0
    if len(ta) > len(tb):
        kind, value = ta[len(tb)]
        return -1 if kind == _SUFFIX and value < 0 else 1
    kind, value = tb[len(ta)]
    return 1 if kind == _SUFFIX and value < 0 else -1


def _tail_order(kind_a: int, value_a: int, kind_b: int, value_b: int) -> int:
    # Different kinds at the same place: a pre-release suffix sorts first,
    # otherwise the "more specific" kind (a further number) is greater.
    if kind_a == _SUFFIX and value_a < 0:
        return -1
    if kind_b == _SUFFIX and value_b < 0:
        return 1
    return -1 if kind_a > kind_b else 1


def satisfies(version: str, constraint: str) -> bool:
    """True when `version` meets a constraint such as `>=1.2`, `~3.1` or `` (any)."""
    if not constraint or constraint.startswith("><"):
        return True
    target = constraint.lstrip("<>=~")
    op = constraint[: len(constraint) - len(target)] or "="
    if op in ("~", "~="):
        return compare(version, target, fuzzy=True) == 0
    result = compare(version, target)
    return {
        "<": result < 0,
        "<=": result <= 0,
        "=": result == 0,
        ">=": result >= 0,
        ">": result > 0,
    }.get(op, False)


def newest(versions: list[str]) -> str:
    """The greatest of `versions` in apk's order."""
    return max(versions, key=functools.cmp_to_key(compare))
