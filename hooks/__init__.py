"""The contract between ybplug and its plugins.

A plugin is any object or module with functions marked ``@hookimpl`` whose names are hooks in
:mod:`ybplug.hooks.specs`.  Implementations may be ``async def`` (awaited on the host's event
loop) or plain functions (run in a worker thread, since a hospital's local write may block).
Each receives only the arguments it names.  The built-in plugins in ``ybplug.plugins`` use the
same hooks; a hospital registers its own through the ``ybplug`` entry-point group::

    [project.entry-points.ybplug]
    st_mary = "st_mary_his.ybplug_plugin"
"""

import pluggy

PROJECT = "ybplug"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "hookimpl", "hookspec"]
