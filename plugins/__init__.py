"""Built-in plugins of ybplug: they use the same hooks a hospital's plugins use."""
