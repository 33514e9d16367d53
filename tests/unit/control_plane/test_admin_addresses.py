"""The addresses the node pages fill in for the administrator: the control plane's IP in the
install command, and a node's IP as the default for new ports."""

from __future__ import annotations

import pytest

from control_plane.web.admin_node_pages import ADDRESS_PLACEHOLDER, control_plane_ip, node_ip


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("198.51.100.7:8000", "198.51.100.7"),
        ("198.51.100.7", "198.51.100.7"),
        ("[2001:db8::7]:8000", "2001:db8::7"),
        ("2001:db8::7", "2001:db8::7"),
        ("panel.example.com", ADDRESS_PLACEHOLDER),
        ("localhost:8000", ADDRESS_PLACEHOLDER),
        ("127.0.0.1:8000", ADDRESS_PLACEHOLDER),
        ("[::1]:8000", ADDRESS_PLACEHOLDER),
        ("", ADDRESS_PLACEHOLDER),
        ("1.2.3.4; rm -rf /", ADDRESS_PLACEHOLDER),
    ],
)
def test_the_install_command_names_our_ip_only_when_we_were_reached_at_one(
    host: str, expected: str
) -> None:
    assert control_plane_ip(host) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://203.0.113.10:8443", "203.0.113.10"),
        ("http://127.0.0.1:9", "127.0.0.1"),
        ("https://[2001:db8::10]:8443", "2001:db8::10"),
        ("https://node1.example.com:8443", ""),
    ],
)
def test_new_ports_default_to_the_nodes_ip(url: str, expected: str) -> None:
    assert node_ip(url) == expected
