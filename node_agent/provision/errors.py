"""The one error of host provisioning."""

from __future__ import annotations


class InstallError(Exception):
    """The node cannot be (un)installed as asked; the message says why and what to do."""
