"""``python3 -m xe_oneshot``: the collector (same as ``xe-oneshot``)."""

import sys

from .cli import main

sys.exit(main())
