"""Schemas of the node agent's HTTP API: the agent answers with them, the control plane reads."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict


class NodeFacts(BaseModel):
    """What a host has, refreshed by the agent in the background."""

    model_config = ConfigDict(frozen=True)

    cpu_count: int
    memory_bytes: int
    disk_total_bytes: int
    disk_free_bytes: int
    docker_version: str | None
    docker_error: str | None = None
    refreshed_at: float


class SystemInfo(BaseModel):
    """``GET /api/v1/system``."""

    node_id: uuid.UUID
    agent_version: str
    facts: NodeFacts


class Health(BaseModel):
    """``GET /healthz``: reveals nothing but liveness."""

    status: str = "ok"
