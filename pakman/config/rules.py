"""What names, versions, paths and dependencies may look like, and slugify.

Each pattern is written so that Python's `re` and JSON Schema (ECMA-262)
read it the same way; the schema reuses them. Each comes with the rule a
refusal quotes, so users learn what is allowed.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Rule:
    """A regular expression and the words that explain it."""

    pattern: str
    says: str
    compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", re.compile(self.pattern))

    def match(self, text: str) -> bool:
        # fullmatch: `$` alone also matches before a trailing newline.
        return self.compiled.fullmatch(text) is not None


# The true end of the text: `$` alone also matches before a final newline in
# Python (and so in Python's JSON Schema validators); ECMA-262 reads the
# lookahead as a no-op.
END = r"$(?!\n)"

# apk's version grammar: digits separated by dots, an optional letter, any
# number of _suffix[N], an optional ~hash (apk-tools src/version.c).
_VERSION = r"[0-9]+(\.[0-9]+)*[a-z]?(_(alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]*)*(~[0-9a-f]+)?"
VERSION = Rule(
    rf"^{_VERSION}{END}",
    "an Alpine version: numbers separated by dots, an optional letter, then optional "
    "suffixes _alpha, _beta, _pre, _rc, _cvs, _svn, _git, _hg or _p each with an "
    "optional number (e.g. 1.2.3, 2.0a, 1.4_rc2, 3.1_p1)",
)
# At most 100 characters, so that every file named after the package
# (`<name>-openrc-<version>-r<release>.apk`, `<name>.pre-install`, ...) fits
# in a file name (255 bytes).
PACKAGE_NAME = Rule(
    rf"^[a-z0-9][a-z0-9+._-]{{0,99}}{END}",
    "an Alpine package name: lower-case letters, digits, '+', '.', '_' and '-', "
    "starting with a letter or digit, at most 100 characters",
)
DEPENDENCY = Rule(
    r"^!?([a-z0-9][a-z0-9._+-]*:)?[A-Za-z0-9][A-Za-z0-9._+-]*(@[A-Za-z0-9_-]+)?"
    rf"(([<>]=?|=|~=?|><){_VERSION}(-r[0-9]+)?)?{END}",
    "an Alpine dependency: a package name (or a provider such as so:libc.musl-x86_64.so.1 "
    "or cmd:bash), optionally followed by a constraint such as >=20, =1.2.3-r0 or ~3.1, "
    "with no spaces; '!' in front means a conflict",
)
SERVICE_NAME = Rule(
    rf"^[A-Za-z0-9][A-Za-z0-9_.-]*{END}",
    "a service name: letters, digits, '_', '.' and '-', starting with a letter or digit",
)
COMMAND_NAME = Rule(
    rf"^[A-Za-z_][A-Za-z0-9_]*{END}",
    "a command name becomes a shell function of the OpenRC script: letters, digits "
    "and '_', not starting with a digit",
)
BINARY = Rule(
    rf"^(?!(.*/)?\.\.?(/|$))[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*{END}",
    "a file name (or a relative path to it, as in the original, e.g. bin/app): "
    "'/'-separated letters, digits, '_', '.', '+' and '-', without '.' or '..' segments",
)
BIN_PATH = Rule(
    rf"^(?!(.*/)?\.\.?(/|$))(/|/?[A-Za-z0-9_.+@-]+(/[A-Za-z0-9_.+@-]+)*/?){END}",
    "a folder such as /usr/bin, or one relative to /var/lib/<name> such as bin: "
    "'/'-separated letters, digits, '_', '.', '+', '@' and '-', without '.' or '..' segments",
)
DESTINATION = Rule(
    rf"^(?!/)(?!(.*/)?\.\.(/|$))[A-Za-z0-9_.+@%,=:/*?\[\]!-]+{END}",
    "a path inside the app (a shell glob is allowed: *, ?, [...]) made of letters, digits "
    "and _.+@%,=:-!/ — not absolute, no '..' segments, no spaces or quotes",
)
ENV_KEY = Rule(
    rf"^[A-Za-z_][A-Za-z0-9_]*{END}",
    "an environment variable name: letters, digits and '_', not starting with a digit",
)
DRIVER = Rule(
    rf"^[a-z0-9_-]+/[a-z0-9_.-]+{END}",
    "a driver name such as generic/secret or database/postgresql",
)
STACK = Rule(
    rf"^alpine/(edge|3\.[0-9]+){END}",
    "alpine/3.NN (for example alpine/3.20) or alpine/edge",
)
URL = Rule(
    rf"^https?://[A-Za-z0-9._~:/?#@!$&()*+,;=%-]+{END}",
    "an http(s) URL without spaces or quotes",
)
ONE_LINE = Rule(rf"^[^\x00-\x1f\x7f]*{END}", "one line of text without control characters")
# abuild's sanity check refuses a pkgdesc longer than 128 characters.
DESCRIPTION = Rule(
    rf"^[^\x00-\x1f\x7f]{{1,128}}{END}",
    "one line of 1 to 128 characters without control characters (abuild's limit for pkgdesc)",
)

_SLUG_RUN = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    """ASCII-transliterate, lower-case, and turn every other run of characters into '-'.

    `artellectual.com` -> `artellectual-com`, like the original's Slug.slugify.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _SLUG_RUN.sub("-", ascii_text.lower()).strip("-")


def license_problem(text: str) -> str | None:
    """Why `text` is not an SPDX licence expression of SPDX-listed licences, or None."""
    return _read_license(text)[1]


def normal_license(text: str) -> str:
    """The SPDX expression `text` (valid: see `license_problem`) in its normal spelling (`mit` -> `MIT`)."""
    normal, problem = _read_license(text)
    if problem is not None:
        raise ValueError(problem)
    return normal


@functools.lru_cache(maxsize=256)
def _read_license(text: str) -> tuple[str, str | None]:
    """(normal spelling, None) of an SPDX licence expression, or ("", why it is not one).

    Read with the `license-expression` library (imported here: only a build
    that sets a licence pays for it), as the SPDX tools read it; once per
    text, since every app of a build is given the same one.
    """
    from license_expression import ExpressionError, ExpressionParseError

    try:
        parsed = _spdx_licensing().parse(text, validate=True, strict=True)
    except (ExpressionError, ExpressionParseError) as exc:
        return "", f"{text!r} is not an SPDX licence expression: {exc}"
    if parsed is None:
        return (
            "",
            "an empty licence: give an SPDX licence expression, e.g. MIT or Apache-2.0 OR MIT",
        )
    return str(parsed), None


@functools.cache
def _spdx_licensing() -> Any:
    """The SPDX licence list, built once (get_spdx_licensing builds it anew on each call)."""
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()


def is_version(text: str) -> bool:
    """True when `text` is a valid apk version without the -rN release."""
    return VERSION.match(text)
