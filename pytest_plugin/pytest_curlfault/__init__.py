"""pytest plugin for curlfault (registered through the ``pytest11`` entry point)."""

from curlfault import __version__

__all__ = ["__version__"]
