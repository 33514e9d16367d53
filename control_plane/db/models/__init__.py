"""ORM models, one module per domain; importing this package registers them all."""

from control_plane.db.models.base import Base
from control_plane.db.models.node import Node
from control_plane.db.models.user import User

__all__ = ["Base", "Node", "User"]
