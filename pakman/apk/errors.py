"""The errors of the package format: bad input to the packer, and unreadable archives."""

from __future__ import annotations

from collections.abc import Sequence

from pakman.errors import ConfigError, Diagnostic, PakmanError


class PackageInputError(ConfigError):
    """The staged tree or the package metadata cannot become a valid package (exit 3).

    A plain message is reported as `pakman: <message>`.
    """

    def __init__(self, diagnostics: Sequence[Diagnostic] | Diagnostic | str) -> None:
        if isinstance(diagnostics, str):
            diagnostics = Diagnostic("pakman", 0, 0, "", diagnostics)
        super().__init__(diagnostics)


class SigningKeyError(PackageInputError):
    """A signing key is missing, unreadable, encrypted without a passphrase or mismatched.

    Messages name where the key came from (a file or an environment variable),
    never its content.
    """


class ArchiveError(PakmanError):
    """A package or index file is malformed and cannot be read (exit 1)."""
