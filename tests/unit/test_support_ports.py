"""tests/support/ports.py: ports for test servers that no outgoing connection takes."""

from __future__ import annotations

import socket

import pytest

from tests.support import ports


def test_ports_come_from_below_the_ephemeral_range_free_and_never_twice() -> None:
    low = ports._ephemeral_low()
    chosen = [ports.free_port() for _ in range(200)]
    assert len(set(chosen)) == len(chosen)
    assert all(ports.FLOOR <= port < low for port in chosen)
    # Each was free when chosen: it binds.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", chosen[-1]))


def test_a_kernel_with_little_room_below_its_range_gets_the_kernels_choice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = ports._ephemeral_low()
    monkeypatch.setattr(ports, "_ephemeral_low", lambda: ports.FLOOR + 10)
    assert ports.free_port() >= real  # the kernel's, from its own range
