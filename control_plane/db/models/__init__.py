"""ORM models, one module per domain; importing this package registers them all."""

from control_plane.db.models.api_key import ApiKey
from control_plane.db.models.audit import AuditEntry, AuditHead
from control_plane.db.models.base import Base
from control_plane.db.models.node import Node
from control_plane.db.models.session import Session
from control_plane.db.models.user import User

__all__ = ["ApiKey", "AuditEntry", "AuditHead", "Base", "Node", "Session", "User"]
