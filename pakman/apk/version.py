"""Ordering apk versions the way apk-tools 2 does (src/version.c).

A version is read as a sequence of tokens, each of a type that may only be
followed by certain others: numbers separated by dots, one letter, `_suffix`
with an optional number, then `-rN`. Two versions compare token by token;
when one runs out first, the longer one is newer unless its next token is a
pre-release suffix (`_alpha`, `_beta`, `_pre`, `_rc`). A dot-number starting
with zeros sorts below one without (1.01 < 1.1), as in apk.
"""

from __future__ import annotations

from functools import cmp_to_key

# Token types, in apk's order; a type may only be followed by a higher one
# (with three exceptions, see _next_type).
_DIGIT_OR_ZERO, _DIGIT, _LETTER, _SUFFIX, _SUFFIX_NO, _REVISION_NO, _END = range(7)
_INVALID = -1
_PRE_RELEASE = ("alpha", "beta", "pre", "rc")
_POST_RELEASE = ("cvs", "svn", "git", "hg", "p")
_ALLOWED_STEPS_DOWN = {(_DIGIT, _DIGIT_OR_ZERO), (_SUFFIX_NO, _SUFFIX), (_LETTER, _DIGIT)}


class _Cursor:
    """A position in a version string and the type of the token found there."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.type = _DIGIT

    def copy(self) -> _Cursor:
        other = _Cursor(self.text)
        other.pos, other.type = self.pos, self.type
        return other

    def _next_type(self) -> None:
        """Find the type of the next token from the character at `pos` (skipping separators)."""
        text, pos, current = self.text, self.pos, self.type
        char = text[pos] if pos < len(text) else ""
        if not char:
            found = _END
        elif current in (_DIGIT, _DIGIT_OR_ZERO) and "a" <= char <= "z":
            found = _LETTER
        elif current == _LETTER and char.isascii() and char.isdigit():
            found = _DIGIT
        elif current == _SUFFIX and char.isascii() and char.isdigit():
            found = _SUFFIX_NO
        else:
            if char == ".":
                found = _DIGIT_OR_ZERO
            elif char == "_":
                found = _SUFFIX
            elif char == "-" and text[pos + 1 : pos + 2] == "r":
                found = _REVISION_NO
                pos += 1
            else:
                found = _INVALID
            pos += 1
        if found < current and (current, found) not in _ALLOWED_STEPS_DOWN:
            found = _INVALID
        self.pos, self.type = pos, found

    def take(self) -> int:
        """The value of the token at the cursor; moves to the next one."""
        text, pos = self.text, self.pos
        if pos >= len(text):
            self.type = _END
            return 0
        length = 0
        next_type = _INVALID
        value = 0
        if self.type == _DIGIT_OR_ZERO and text[pos] == "0":
            # a run of leading zeros counts as a negative value, then the number itself
            while pos + length + 1 < len(text) and text[pos + length + 1] == "0":
                length += 1
            value = -length
            next_type = _DIGIT
        elif self.type in (_DIGIT_OR_ZERO, _DIGIT, _SUFFIX_NO, _REVISION_NO):
            while pos + length < len(text) and "0" <= text[pos + length] <= "9":
                length += 1
            if length >= 18:
                self.type = _INVALID
                return -1
            value = int(text[pos : pos + length]) if length else 0
        elif self.type == _LETTER:
            value = ord(text[pos])
            length = 1
        elif self.type == _SUFFIX:
            for index, suffix in enumerate(_PRE_RELEASE):
                if text.startswith(suffix, pos):
                    value, length = index - len(_PRE_RELEASE), len(suffix)
                    break
            else:
                for index, suffix in enumerate(_POST_RELEASE):
                    if text.startswith(suffix, pos):
                        value, length = index, len(suffix)
                        break
                else:
                    self.type = _INVALID
                    return -1
        else:
            self.type = _INVALID
            return -1
        self.pos = pos + length
        if self.pos >= len(text):
            self.type = _END
        elif next_type != _INVALID:
            self.type = next_type
        else:
            self._next_type()
        return value


def compare_versions(a: str, b: str, *, fuzzy: bool = False) -> int:
    """-1, 0 or 1 as apk orders versions `a` and `b` (each may end in -rN).

    `fuzzy` (the `~` constraint) counts them equal when one is a prefix of the other.
    """
    left, right = _Cursor(a), _Cursor(b)
    left_value = right_value = 0
    while (
        left.type == right.type and left.type not in (_END, _INVALID) and left_value == right_value
    ):
        left_value = left.take()
        right_value = right.take()
    if left_value != right_value:
        return -1 if left_value < right_value else 1
    if left.type == right.type or fuzzy:
        return 0
    if left.type == _SUFFIX and left.copy().take() < 0:
        return -1
    if right.type == _SUFFIX and right.copy().take() < 0:
        return 1
    if left.type > right.type:
        return -1
    if right.type > left.type:
        return 1
    return 0


version_key = cmp_to_key(compare_versions)


def satisfies(version: str, constraint: str) -> bool:
    """True when `version` meets a constraint such as `>=1.2`, `~3.1`, `=1.0-r2` or `` (any).

    `><` (a checksum) is not checked here and always holds.
    """
    if not constraint or constraint.startswith("><"):
        return True
    target = constraint.lstrip("<>=~")
    op = constraint[: len(constraint) - len(target)] or "="
    if op in ("~", "~="):
        return compare_versions(version, target, fuzzy=True) == 0
    result = compare_versions(version, target)
    return {
        "<": result < 0,
        "<=": result <= 0,
        "=": result == 0,
        ">=": result >= 0,
        ">": result > 0,
    }.get(op, False)
