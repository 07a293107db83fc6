"""Plain `doit` in this repository builds examples/ into .pakman/repo/ (as `pakman build examples/`).

In an app's own repository the whole dodo.py is one line:
`from pakman.dodo import *  # noqa: F403`.
"""

from pakman.dodo import tasks_for

globals().update(tasks_for("examples"))
