"""ServerSpec: what a node accepts as a game server, and what it refuses."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.server_spec import ServerSpec, StopCommand, StopSignal
from tests.support.factories import server_spec

# What a spec cannot do without, and one allocation: the rest comes from the defaults.
MINIMAL_FIELDS = ("uuid", "image", "memory_mib", "disk_mib", "allocations")


def test_minimal_spec_gets_hardened_defaults() -> None:
    full = server_spec()
    spec = ServerSpec.model_validate({name: full[name] for name in MINIMAL_FIELDS})
    assert spec.read_only_root is True
    assert spec.swap_mib == 0
    assert spec.stop == StopSignal(type="signal", value="SIGTERM")
    assert spec.install is None
    assert spec.primary_allocation is not None
    assert spec.primary_allocation.protocols == ("tcp", "udp")


def test_spec_round_trips_through_json() -> None:
    spec = ServerSpec.model_validate(
        server_spec(stop={"type": "command", "value": "stop"}, startup=["a", "b c"])
    )
    assert ServerSpec.model_validate_json(spec.model_dump_json()) == spec
    assert spec.stop == StopCommand(type="command", value="stop")


def test_startup_string_is_split_into_arguments_without_a_shell() -> None:
    spec = ServerSpec.model_validate(server_spec(startup='java -Xmx1G -jar "my server.jar"'))
    assert spec.startup == ("java", "-Xmx1G", "-jar", "my server.jar")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("unknown", 1),
        ("image", "UPPER/case"),
        ("image", "evil image; rm -rf /"),
        ("image", ""),
        ("startup", 'unbalanced "quote'),
        ("startup", ["nul\x00byte"]),
        ("memory_mib", 0),
        ("memory_mib", 10**9),
        ("swap_mib", -1),
        ("cpu_percent", 0),
        ("disk_mib", 1),
        ("pids_limit", 0),
        ("pids_limit", 10**7),
        ("stop", {"type": "signal", "value": "SIGSTOP"}),
        ("stop", {"type": "command", "value": "stop\nrm -rf"}),
        ("stop", {"type": "shell", "value": "x"}),
        ("stop_timeout_seconds", 0),
        ("read_only_root", "maybe"),
        ("install", {"image": "x", "script": "echo", "needs_root": True, "privileged": True}),
        ("install", {"image": "x", "script": ""}),
        ("install", {"image": "x", "script": "echo", "entrypoint": "sh"}),
    ],
)
def test_out_of_bounds_field_is_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        ServerSpec.model_validate(server_spec(**{field: value}))


@pytest.mark.parametrize(
    "environment",
    [
        {"SERVER_PORT": "1"},
        {"PATH": "/evil"},
        {"LD_PRELOAD": "/tmp/x.so"},
        {"STELLAR_TOKEN": "x"},
        {"1BAD": "x"},
        {"BAD-NAME": "x"},
        {"A": "x" * 10000},
        {"A": "nul\x00"},
    ],
)
def test_reserved_or_malformed_environment_is_refused(environment: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        ServerSpec.model_validate(server_spec(environment=environment))


@pytest.mark.parametrize(
    "allocation",
    [
        {"ip": "localhost", "port": 25565},
        {"ip": "127.0.0.1; rm", "port": 25565},
        {"ip": "127.0.0.1", "port": 80},
        {"ip": "127.0.0.1", "port": 70000},
        {"ip": "127.0.0.1", "port": 25565, "protocols": ["sctp"]},
        {"ip": "127.0.0.1", "port": 25565, "protocols": []},
        {"ip": "127.0.0.1", "port": 25565, "protocols": ["tcp", "tcp"]},
    ],
)
def test_malformed_allocation_is_refused(allocation: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ServerSpec.model_validate(server_spec(allocations=[allocation]))


def test_duplicate_allocation_is_refused() -> None:
    same = {"ip": "127.0.0.1", "port": 25565}
    with pytest.raises(ValidationError, match="listed twice"):
        ServerSpec.model_validate(server_spec(allocations=[same, same]))


def test_ipv6_allocation_is_normalised() -> None:
    spec = ServerSpec.model_validate(
        server_spec(allocations=[{"ip": "0:0:0:0:0:0:0:1", "port": 30000, "protocols": ["udp"]}])
    )
    assert spec.allocations[0].ip == "::1"
