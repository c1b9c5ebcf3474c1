"""``python -m cache_tools.testing run -- CMD ...``: run CMD with a real Redis (see the package)."""

import sys

from . import main

sys.exit(main())
