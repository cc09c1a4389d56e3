"""``python -m fp4sim.cli``: the fp4sim command."""

import sys

from . import main

sys.exit(main())
