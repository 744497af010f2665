"""python3 -m memfit.dtr: the live DTR runtime's command line (memfit.dtr.cli)."""

import sys

from .cli import main

sys.exit(main())
