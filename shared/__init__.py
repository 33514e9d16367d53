"""What the control plane and the node agents must agree on."""

__version__ = "0.1.0"
