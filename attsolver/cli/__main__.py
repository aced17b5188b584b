"""``python -m attsolver.cli``: the ``attsolver`` command."""

import sys

from .main import main

sys.exit(main())
