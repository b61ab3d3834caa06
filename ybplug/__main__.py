"""``python -m ybplug``: the ``ybplug`` command, for where the script is not on PATH (a Windows
Python installed without its Scripts folder on PATH)."""

import sys

from ybplug.cli import main

sys.exit(main())
