"""The game container's command, ``STARTUP`` and stop signal, as the create body carries them.

``startup`` arguments become ``Cmd`` unless the spec asks for the image's own command; the
blueprint's startup template is the ``STARTUP`` variable, placeholders unfilled (egg images
read it), never with a value pasted in; the stop signal is Docker's ``StopSignal``. Each of
these is part of the container's fingerprint, so a change rebuilds the container.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from node_agent.docker.hardening import (
    CONFIG_LABEL,
    ContainerPlacement,
    game_container_config,
    install_container_config,
)
from shared.server_spec import InstallSpec, ServerSpec
from tests.support.factories import server_spec

PLACEMENT = ContainerPlacement("stellar-test", Path("/srv/volume"))
TEMPLATE = "java -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}} --motd {{MOTD}}"
HOSTILE_MOTD = "hi; rm -rf / $(reboot) `id`"


def config(**changes: Any) -> dict[str, Any]:
    return game_container_config(ServerSpec.model_validate(server_spec(**changes)), PLACEMENT)


def environment(body: dict[str, Any]) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in body["Env"])


def fingerprint(body: dict[str, Any]) -> str:
    value: str = body["Labels"][CONFIG_LABEL]
    return value


def test_the_startup_template_is_the_startup_variable_with_its_placeholders() -> None:
    body = config(
        startup_template=TEMPLATE,
        environment={"SERVER_JARFILE": "server.jar", "MOTD": HOSTILE_MOTD},
    )

    env = environment(body)
    assert env["STARTUP"] == TEMPLATE
    # The values are variables of their own; none is pasted into the template.
    assert (env["SERVER_JARFILE"], env["MOTD"]) == ("server.jar", HOSTILE_MOTD)
    assert HOSTILE_MOTD not in env["STARTUP"]


def test_without_a_template_there_is_no_startup_variable() -> None:
    assert "STARTUP" not in environment(config())


def test_a_blueprint_cannot_set_startup_itself() -> None:
    with pytest.raises(ValidationError, match="STARTUP is set by the agent"):
        ServerSpec.model_validate(server_spec(environment={"STARTUP": "sh -c reboot"}))


def test_startup_arguments_are_the_command_unless_the_image_command_runs() -> None:
    arguments = ["fake-game", "--name", "x; y"]

    assert config(startup=arguments)["Cmd"] == arguments
    own = config(startup=arguments, image_command=True, startup_template="fake-game")
    assert "Cmd" not in own
    assert "Entrypoint" not in own
    assert environment(own)["STARTUP"] == "fake-game"
    assert "Cmd" not in config(startup=[])


def test_the_install_container_gets_the_same_startup_variable_and_its_own_command() -> None:
    spec = ServerSpec.model_validate(server_spec(startup_template=TEMPLATE, image_command=True))
    install = InstallSpec(image="stellar-test/busybox:latest", script="true")

    body = install_container_config(spec, install, PLACEMENT)

    assert environment(body)["STARTUP"] == TEMPLATE
    assert (body["Entrypoint"], body["Cmd"]) == (["/bin/sh"], ["-c", "true"])


@pytest.mark.parametrize("signal", ["SIGINT", "SIGTERM", "SIGQUIT", "SIGHUP", "SIGUSR1"])
def test_a_stop_signal_is_the_containers_stop_signal(signal: str) -> None:
    body = config(stop={"type": "signal", "value": signal}, stop_timeout_seconds=7)

    assert (body["StopSignal"], body["StopTimeout"]) == (signal, 7)


def test_a_stop_command_leaves_dockers_stop_signal_alone() -> None:
    body = config(stop={"type": "command", "value": "stop"})

    assert "StopSignal" not in body


def test_startup_image_command_and_stop_signal_change_the_fingerprint() -> None:
    fixed = {"uuid": server_spec()["uuid"], "allocations": [{"ip": "127.0.0.1", "port": 25565}]}
    base = fingerprint(config(**fixed, startup=["fake-game"]))
    same = fingerprint(config(**fixed, startup=["fake-game"]))
    changed = {
        "template": config(**fixed, startup=["fake-game"], startup_template="a"),
        "other template": config(**fixed, startup=["fake-game"], startup_template="b"),
        "image command": config(**fixed, startup=["fake-game"], image_command=True),
        "stop signal": config(
            **fixed, startup=["fake-game"], stop={"type": "signal", "value": "SIGINT"}
        ),
    }

    assert base == same
    prints = {name: fingerprint(body) for name, body in changed.items()}
    assert base not in prints.values()
    assert len(set(prints.values())) == len(prints)


def test_done_markers_alone_leave_the_container_as_it_is() -> None:
    # Markers are the agent's business, not the container's: no rebuild when they change.
    uuid = server_spec()["uuid"]
    port = [{"ip": "127.0.0.1", "port": 25565}]

    plain = config(uuid=uuid, allocations=port)
    marked = config(uuid=uuid, allocations=port, startup_done=["Done", "regex:^Ready"])

    assert plain == marked


def test_an_images_volumes_are_tmpfs_mounts_but_the_servers_own_and_tmp() -> None:
    spec = ServerSpec.model_validate(server_spec())
    volumes = ("/data", "/srv/world/", "/home/container", "/home/container/", "/tmp/", "/")

    tmpfs = game_container_config(spec, PLACEMENT, None, volumes)["HostConfig"]["Tmpfs"]

    assert tmpfs == {
        "/tmp": "rw,noexec,nosuid,size=64m",
        "/data": "rw,noexec,nosuid,size=64m,uid=1000,gid=1000",
        "/srv/world": "rw,noexec,nosuid,size=64m,uid=1000,gid=1000",
    }
