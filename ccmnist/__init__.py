"""ccmnist: how networks learn a color shortcut, how to see it, remove it and attack it."""

__version__ = "0.1.0"
