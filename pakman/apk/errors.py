"""The errors of the package format: bad input to the packer, and unreadable archives."""

from __future__ import annotations

from pakman.errors import ConfigError, PakmanError


class PackageInputError(ConfigError):
    """The staged tree or the package metadata cannot become a valid package (exit 3)."""


class SigningKeyError(ConfigError):
    """A signing key is missing, unreadable, encrypted without a passphrase or mismatched.

    Messages name where the key came from (a file or an environment variable),
    never its content.
    """


class ArchiveError(PakmanError):
    """A package or index file is malformed and cannot be read (exit 1)."""
