"""Slices of an app's configuration: what a step's key is made of, and all its action gets.

A stage's `reads: config:` names keys of instellar.yml (dotted paths, plus
the derived `service-files` and `hook:names`); `config_slice` takes each out
of `config_data`, the model as plain data under the file's own key names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pakman.config.model import AppConfig


def config_data(app: AppConfig) -> dict[str, Any]:
    """The model as plain data under instellar.yml's own key names."""
    run = app.run
    return {
        "stack": app.stack,
        "type": app.type.value,
        "dependencies": {
            "build": [str(d) for d in app.dependencies.build],
            "runtime": [str(d) for d in app.dependencies.runtime],
            "trace": app.dependencies.trace,
        },
        "build": {
            "command": app.build.command,
            "destinations": list(app.build.destinations),
            "strip_binary": app.build.strip_binary,
        },
        "run": None
        if run is None
        else {
            "name": run.name,
            "services": [
                {"name": s.name, "binary": s.binary, "path": s.path, "start": {"call": s.start}}
                for s in run.services
            ],
            "commands": [
                {"name": c.name, "binary": c.binary, "path": c.path, "call": c.call}
                for c in run.commands
            ],
        },
        "hook": dict(app.hooks),
        # Derived, not a key of the file: which files run the app (services,
        # commands only, nothing), which the APKBUILD and init script follow.
        "service-files": list(app.service_files),
        "architectures": list(app.architectures),
        "source": app.source,
        "package": app.package,
    }


def config_slice(data: Mapping[str, Any], key: str, each: str | None) -> Any:
    """The value of a dotted key (`build.command`, `hook.{each}`, `hook:names`)."""
    if key.endswith(":names"):
        names = config_slice(data, key[: -len(":names")], each)
        return sorted(names) if isinstance(names, Mapping) else []
    value: Any = data
    for part in key.format(each=each).split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


__all__ = ["config_data", "config_slice"]
