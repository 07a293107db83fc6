"""The collect step: the build's destinations, copied into /var/lib/<name>/ of the package tree."""

from __future__ import annotations

from pathlib import Path

from pakman.compile.graph import Step
from pakman.steps import RunContext, fresh_dir, replace_dir, upstream_output
from pakman.steps.staging import collect_destinations, make_dirs


def collect(step: Step, context: RunContext) -> None:
    """Copy what build.destinations name (shell glob rules) out of the build folder."""
    assert step.app is not None
    build_dir = Path(upstream_output(step, "build"))
    out = Path(step.outputs[0])
    tmp = fresh_dir(out.with_name(out.name + ".tmp"), context)
    home = tmp / "var" / "lib" / step.app.name
    make_dirs(home)  # var/, var/lib/ and the home 0755, as abuild's install -d makes them
    collect_destinations(build_dir, step.app.config.build.destinations, home)
    replace_dir(tmp, out, context)
