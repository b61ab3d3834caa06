"""The operations console: a small web application served by ybplug itself (``ybplug console``).

Importing this package loads nothing heavy: :mod:`ybplug.console.config` (the ``[console]``
section) is read by :mod:`ybplug.config` without aiohttp; the web application is
:mod:`ybplug.console.app`, loaded only when the console starts.
"""
