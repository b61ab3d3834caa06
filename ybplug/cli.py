"""The ``ybplug`` command (filled in as the host lands)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "sandbox":
        from ybplug.sandbox import main as sandbox_main

        return sandbox_main(args[1:])
    print("usage: ybplug sandbox [--host H] [--port N] [--db FILE]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
