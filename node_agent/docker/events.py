"""dockerd's event stream, narrowed to the start and exit of the agent's own containers."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import aiodocker
import aiohttp

from node_agent.docker.errors import DockerUnavailable
from node_agent.docker.hardening import MANAGED_LABEL, ROLE_LABEL, SERVER_LABEL

ContainerAction = Literal["start", "die"]


@dataclass(frozen=True)
class ContainerEvent:
    """A managed container started or exited."""

    action: ContainerAction
    container_id: str
    server_id: uuid.UUID
    role: str
    exit_code: int | None


def _parse(data: dict[str, Any]) -> ContainerEvent | None:
    action = data.get("Action") or data.get("status")
    if action not in ("start", "die"):
        return None
    actor = data.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    try:
        server_id = uuid.UUID(str(attributes.get(SERVER_LABEL)))
    except ValueError:
        return None
    code = attributes.get("exitCode")
    return ContainerEvent(
        action=action,
        container_id=str(actor.get("ID") or data.get("id") or ""),
        server_id=server_id,
        role=str(attributes.get(ROLE_LABEL, "")),
        exit_code=int(code) if code is not None and str(code).isdigit() else None,
    )


async def container_events(
    docker: aiodocker.Docker, *, since: float | None
) -> AsyncIterator[ContainerEvent]:
    """Start and die events of managed containers from ``since`` on; ends if dockerd goes away."""
    filters = {
        "type": ["container"],
        "event": ["start", "die"],
        "label": [f"{MANAGED_LABEL}=true"],
    }
    params: dict[str, str] = {"filters": json.dumps(filters)}
    if since is not None:
        params["since"] = f"{since:.9f}"
    endless = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=10)
    try:
        # aiodocker's DockerEvents is untyped and fans out through unbounded queues; the
        # stream is one JSON object per line, read here directly.
        async with docker._query("events", params=params, timeout=endless) as response:
            async for raw in response.content:
                if not raw.strip():
                    continue
                event = _parse(json.loads(raw))
                if event is not None:
                    yield event
    except (aiodocker.DockerError, aiohttp.ClientError, OSError, ValueError) as err:
        raise DockerUnavailable("Docker event stream broke") from err
