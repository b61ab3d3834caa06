"""``python -m ybplug.sandbox``: the same as ``ybplug sandbox`` (the benchmarks start it so)."""

import sys

from ybplug.sandbox.cli import main

sys.exit(main())
