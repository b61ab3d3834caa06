"""Hook specifications of ybplug (filled in by the host work)."""
