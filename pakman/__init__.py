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
    "AppConfig": "pakman.config.model",
    "Identity": "pakman.config.model",
    "ConfigError": "pakman.errors",
    "Diagnostic": "pakman.errors",
    "PakmanError": "pakman.errors",
    "load_app": "pakman.config.schema",
    "resolve_identity": "pakman.config.identity",
}

if TYPE_CHECKING:
    from pakman.config.identity import resolve_identity
    from pakman.config.model import AppConfig, Identity
    from pakman.config.schema import load_app
    from pakman.errors import ConfigError, Diagnostic, PakmanError


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pakman' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
