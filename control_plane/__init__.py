"""The control plane: the public HTTP API of StellarStack."""

from shared import __version__

__all__ = ["__version__"]
