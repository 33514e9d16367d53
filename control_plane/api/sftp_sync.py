"""After a change that can alter who may use SFTP where: push the nodes' access tables
(``control_plane/services/sftp.py``) once the request's transaction has committed."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from control_plane.api.routing import ApiRequest
from control_plane.keys import NODES, SESSIONS
from control_plane.services import sftp_push


def push_after_commit(req: ApiRequest[Any, Any], node_ids: Iterable[uuid.UUID]) -> None:
    """Push these nodes' SFTP access tables after commit (open sessions it ends, close)."""
    app, targets = req.http.app, set(node_ids)
    req.after_commit(lambda: sftp_push.push_access(app[SESSIONS], app[NODES], targets))
