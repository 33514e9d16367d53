"""A server's last install as the control plane keeps it from a node's event, and shows it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from control_plane.db.models import Server
from control_plane.security.permissions import ServerAccess
from control_plane.services.servers.installs import (
    install_recorded,
    install_view,
    record_install,
    state_after,
)


def event(**fields: Any) -> dict[str, Any]:
    return {
        "type": "install",
        "server": str(uuid.uuid4()),
        "success": False,
        "exit_code": 3,
        "duration_seconds": 1.5,
        "last_lines": ["error: the download failed"],
        "reason": "the install script exited with code 3",
        **fields,
    }


def access(role: str, *permissions: str) -> ServerAccess:
    return ServerAccess(uuid.uuid4(), role, frozenset(permissions))  # type: ignore[arg-type]


def test_a_failed_install_is_kept_and_shown_with_its_lines_to_console_readers() -> None:
    server = Server(state="installing")
    install = record_install(server, event())

    assert server.state == "installing"  # the state is the caller's, through change_state
    assert state_after(install) == "install_failed"
    server.state = state_after(install)
    owner = install_view(server, access("owner"))
    assert owner.model_dump() == {
        "state": "install_failed",
        "exit_code": 3,
        "seconds": 1.5,
        "reason": "the install script exited with code 3",
        "last_lines": ["error: the download failed"],
    }
    assert install_view(server, access("subuser", "console.read")) == owner
    starter = install_view(server, access("subuser", "control.start"))
    assert starter == owner.model_copy(update={"last_lines": None})


def test_a_node_cannot_make_the_control_plane_keep_more_than_its_caps() -> None:
    server = Server(state="installing")
    record_install(server, event(last_lines=["z" * 50_000] * 10_000, reason="r" * 10_000))
    assert server.install_output is not None
    assert len(server.install_output) == 100
    assert {len(line) for line in server.install_output} == {1024}
    assert server.install_reason == "r" * 255


def test_a_failure_without_a_reason_still_says_it_failed() -> None:
    server = Server(state="installing")
    record_install(server, event(reason=None, last_lines=None))
    assert server.install_reason == "the install failed"
    assert install_view(server, access("owner")).last_lines == []


def test_a_successful_install_is_installed_and_recorded_once() -> None:
    server = Server(state="installing")
    done = event(success=True, exit_code=0, reason=None, last_lines=[])
    assert not install_recorded(server, done)
    install = record_install(server, done)
    assert state_after(install) == "offline"
    server.state = state_after(install)
    assert install_view(server, access("owner")).state == "installed"
    assert install_recorded(server, done)


def test_something_that_is_not_an_install_event_is_refused() -> None:
    with pytest.raises(ValidationError):
        record_install(Server(state="installing"), event(success="perhaps", exit_code="x"))
