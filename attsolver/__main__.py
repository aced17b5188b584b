"""``python -m attsolver``: the ``attsolver`` command."""

import sys

from .cli import main

sys.exit(main())
