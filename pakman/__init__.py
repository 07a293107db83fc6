"""pakman: turn an app's instellar.yml into signed Alpine Linux packages.

The public API is what this module exports. Names are loaded lazily so that
`import pakman` (and the CLI's start-up) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AppConfig",
    "ConfigError",
    "Diagnostic",
    "Identity",
    "PakmanError",
    "__version__",
    "load_app",
    "resolve_identity",
]

_LAZY = {
    "AppConfig": "pakman.model",
    "Identity": "pakman.model",
    "ConfigError": "pakman.errors",
    "Diagnostic": "pakman.errors",
    "PakmanError": "pakman.errors",
    "load_app": "pakman.schema",
    "resolve_identity": "pakman.identity",
}

if TYPE_CHECKING:
    from pakman.errors import ConfigError, Diagnostic, PakmanError
    from pakman.identity import resolve_identity
    from pakman.model import AppConfig, Identity
    from pakman.schema import load_app


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pakman' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
