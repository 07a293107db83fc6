"""`python -m pakman` runs the CLI."""

from pakman.cli import run

run()
