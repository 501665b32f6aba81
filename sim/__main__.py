"""``python -m sim``: the command line (see ``sim.cli``)."""

import sys

from .cli import main

sys.exit(main())
