"""Valid objects for tests to start from: change only the fields a test is about."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.agent_process import free_port
from tests.support.containers import FAKE_GAME_IMAGE


def server_spec(**changes: Any) -> dict[str, Any]:
    """A new server's spec, as the control plane sends it to a node (``PUT`` body of
    ``/api/v1/servers/{uuid}``): the local fake-game image, small limits, one free port on
    127.0.0.1 and the game's ``stop`` command; ``changes`` replace whole fields."""
    spec: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "image": FAKE_GAME_IMAGE,
        "memory_mib": 64,
        "swap_mib": 0,
        "cpu_percent": 50,
        "disk_mib": 256,
        "pids_limit": 64,
        "allocations": [{"ip": "127.0.0.1", "port": free_port()}],
        "stop": {"type": "command", "value": "stop"},
        "stop_timeout_seconds": 5,
    }
    spec.update(changes)
    return spec
