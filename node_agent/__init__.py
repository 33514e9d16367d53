"""The node agent: runs game servers in hardened containers on one host, on signed commands."""

from shared import __version__

__all__ = ["__version__"]
