"""`python -m pakman` runs the CLI."""

import sys

from pakman.cli import main

sys.exit(main())
