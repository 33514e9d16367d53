"""Game servers in hardened containers, driven through a real agent's signed API and real dockerd.

Every server is created with ``PUT /api/v1/servers/{uuid}`` on a running ``stellar-agent``;
what the agent built is then checked from outside (``docker inspect``, the host's cgroup
files, the published port) and from inside (``docker exec`` as the container's own user).
The ``servers`` fixture deletes every server it handed out, and removes by label whatever the
agent may have left, even when a test fails half-way.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest

from node_agent.docker.hardening import (
    CONFIG_LABEL,
    INSTALL_ROOT_CAPABILITIES,
    MANAGED_LABEL,
    SERVER_LABEL,
    game_container_name,
    install_container_name,
)
from node_agent.docker.network import AGENT_NETWORK, ICC_OPTION
from node_agent.docker.seccomp import DENIED_BTRFS_IOCTLS
from tests.integration.node_agent.live_agent import LiveServers
from tests.support.agent_process import AgentFactory, AgentProcess, SigningKey
from tests.support.containers import (
    BUSYBOX_IMAGE,
    FAKE_GAME_IMAGE,
    Answer,
    SignedAgentClient,
    cgroup_pids,
    docker_cli,
    exec_in,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]

MIB = 1024 * 1024
# Some swap, so that the container's MemorySwap tells memory and swap apart.
SPEC_DEFAULTS = {"swap_mib": 32}
NO_CAPABILITIES = "0000000000000000"
# CHOWN (0), DAC_OVERRIDE (1), FOWNER (3), SETGID (6), SETUID (7).
INSTALL_ROOT_CAPABILITY_MASK = f"{(1 << 0) | (1 << 1) | (1 << 3) | (1 << 6) | (1 << 7):016x}"


@pytest.fixture
def agent_api(
    agent: AgentProcess, signing_key: SigningKey, http: aiohttp.ClientSession
) -> SignedAgentClient:
    return SignedAgentClient(agent, signing_key, http)


@pytest.fixture
async def servers(
    agent: AgentProcess, agent_api: SignedAgentClient, docker: aiodocker.Docker
) -> AsyncIterator[LiveServers]:
    handed_out = LiveServers(agent, agent_api, docker, defaults=SPEC_DEFAULTS)
    try:
        yield handed_out
    finally:
        await handed_out.cleanup()


async def wait_until(
    check: Callable[[], Awaitable[Answer]],
    accept: Callable[[Any], bool],
    timeout: float = 15.0,
) -> Any:
    """Poll ``check`` until its body passes ``accept``; return that body."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await check()
        if answer.status == 200 and accept(answer.body):
            return answer.body
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout} s; last: {answer}")
        await asyncio.sleep(0.1)


def is_running(body: Any) -> bool:
    return bool(body["container"] and body["container"]["running"])


def has_exited(body: Any) -> bool:
    return bool(body["container"] and body["container"]["status"] == "exited")


async def start(api: SignedAgentClient, server_id: uuid.UUID) -> None:
    answer = await api.power(server_id, "start")
    assert answer.status == 200, answer.body
    await wait_until(lambda: api.read(server_id), is_running)


async def console(docker: aiodocker.Docker, name: str, line: str) -> None:
    """Type a line on the game's console (its stdin)."""
    async with docker.containers.container(name).attach(stdin=True) as stream:
        await stream.write_in(line.encode() + b"\n")


async def logs(docker: aiodocker.Docker, name: str) -> str:
    lines = await docker.containers.container(name).log(stdout=True, stderr=True)
    return "".join(lines)


def status_line(status_text: str, field_name: str) -> str:
    for line in status_text.splitlines():
        if line.startswith(f"{field_name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{field_name} not in /proc/self/status")


def assert_nested_subvolumes_denied(security_opt: str) -> None:
    """The option is a whole seccomp profile that denies the four subvolume ioctls."""
    assert security_opt.startswith("seccomp=")
    profile = json.loads(security_opt.removeprefix("seccomp="))
    denied = {
        rule["args"][0]["valueTwo"]
        for rule in profile["syscalls"]
        if rule["names"] == ["ioctl"] and rule["action"] == "SCMP_ACT_ERRNO"
    }
    assert denied == set(DENIED_BTRFS_IOCTLS.values())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"


def assert_common_hardening(
    info: dict[str, Any], volume: Path, spec: dict[str, Any], *, installer: bool = False
) -> None:
    """Every rule of DESIGN "Containers (agent)"; an installer's stdin is closed and its /tmp
    allows programs, up to the server's memory (docs/templates-installers.md says why)."""
    host = info["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    no_new_privileges, seccomp = host["SecurityOpt"]
    assert no_new_privileges == "no-new-privileges:true"
    assert_nested_subvolumes_denied(seccomp)
    assert host["Privileged"] is False
    assert host["ReadonlyRootfs"] is True
    tmp = (
        f"rw,nosuid,nodev,size={spec['memory_mib']}m" if installer else "rw,noexec,nosuid,size=64m"
    )
    assert host["Tmpfs"] == {"/tmp": tmp}
    assert host["Memory"] == spec["memory_mib"] * MIB
    assert host["MemorySwap"] == (spec["memory_mib"] + spec["swap_mib"]) * MIB
    assert host["NanoCpus"] == spec["cpu_percent"] * 10_000_000
    assert host["PidsLimit"] == spec["pids_limit"]
    assert host["Ulimits"] == [{"Name": "core", "Soft": 0, "Hard": 0}]
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "10m", "max-file": "3"},
    }
    assert host["NetworkMode"] == AGENT_NETWORK
    assert host["PidMode"] == ""
    assert host["UTSMode"] == ""
    assert host["UsernsMode"] == ""
    assert host["IpcMode"] == "private"
    assert not host["Devices"]
    assert host["Binds"] == [f"{volume}:/home/container:rw"]
    assert [(m["Type"], m["Source"], m["Destination"]) for m in info["Mounts"]] == [
        ("bind", str(volume), "/home/container")
    ]
    assert set(info["NetworkSettings"]["Networks"]) == {AGENT_NETWORK}
    assert info["Config"]["Labels"][MANAGED_LABEL] == "true"
    assert info["Config"]["Labels"][SERVER_LABEL] == spec["uuid"]
    assert info["Config"]["OpenStdin"] is not installer
    assert info["Config"]["AttachStdin"] is not installer
    assert info["Config"]["Tty"] is False


async def test_game_container_is_created_with_every_hardening_field(
    servers: LiveServers, docker: aiodocker.Docker
) -> None:
    server_id = await servers.create()
    spec = servers.specs[server_id]
    info = await docker.containers.container(game_container_name(server_id)).show()

    assert_common_hardening(info, servers.volume(server_id), spec)
    assert info["Config"]["User"] == "1000:1000"
    assert not info["HostConfig"]["CapAdd"]
    port = spec["allocations"][0]["port"]
    binding = [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    assert info["HostConfig"]["PortBindings"] == {f"{port}/tcp": binding, f"{port}/udp": binding}
    assert info["HostConfig"]["PublishAllPorts"] is False
    assert f"SERVER_PORT={port}" in info["Config"]["Env"]
    network = await (await docker.networks.get(AGENT_NETWORK)).show()
    assert network["Driver"] == "bridge"
    assert network["Options"][ICC_OPTION] == "false"
    volume_stat = servers.volume(server_id).stat()
    assert (volume_stat.st_uid, volume_stat.st_gid) == (1000, 1000)


async def test_game_runs_as_uid_1000_without_capabilities_on_a_read_only_root(
    servers: LiveServers, agent_api: SignedAgentClient, docker: aiodocker.Docker
) -> None:
    server_id = await servers.create()
    await start(agent_api, server_id)
    name = game_container_name(server_id)

    assert await exec_in(docker, name, "id", "-u") == (0, "1000\n")
    code, status_text = await exec_in(docker, name, "cat", "/proc/1/status")
    assert code == 0
    assert status_line(status_text, "Uid").split()[:2] == ["1000", "1000"]
    assert status_line(status_text, "CapEff") == NO_CAPABILITIES
    assert status_line(status_text, "CapBnd") == NO_CAPABILITIES
    assert status_line(status_text, "NoNewPrivs") == "1"
    root_write, _ = await exec_in(docker, name, "touch", "/probe")
    assert root_write != 0
    etc_write, _ = await exec_in(docker, name, "sh", "-c", "echo x >> /etc/passwd")
    assert etc_write != 0
    assert (await exec_in(docker, name, "touch", "/home/container/probe"))[0] == 0
    assert (await exec_in(docker, name, "cp", "/bin/busybox", "/tmp/busybox"))[0] == 0
    tmp_exec, _ = await exec_in(docker, name, "/tmp/busybox", "true")
    assert tmp_exec != 0, "/tmp must be noexec"


async def test_published_port_answers_on_the_allocation_ip(
    servers: LiveServers, agent_api: SignedAgentClient
) -> None:
    server_id = await servers.create()
    spec = servers.specs[server_id]
    await start(agent_api, server_id)
    port = spec["allocations"][0]["port"]

    deadline = time.monotonic() + 10
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            line = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            await writer.wait_closed()
            if line:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the game's port never answered"
        await asyncio.sleep(0.1)
    assert line == b"fake-game here\n"


async def test_stop_types_the_stop_command_and_the_game_exits_cleanly(
    servers: LiveServers, agent_api: SignedAgentClient, docker: aiodocker.Docker
) -> None:
    server_id = await servers.create()
    await start(agent_api, server_id)

    answer = await agent_api.power(server_id, "stop")
    assert answer.status == 202
    body = await wait_until(lambda: agent_api.read(server_id), has_exited)
    assert body["container"]["exit_code"] == 0
    assert "stopping" in await logs(docker, game_container_name(server_id))


async def test_game_that_ignores_stop_is_killed_after_the_grace_period(
    servers: LiveServers, agent_api: SignedAgentClient
) -> None:
    server_id = await servers.create(environment={"IGNORE_STOP": "1"}, stop_timeout_seconds=1)
    await start(agent_api, server_id)

    started = time.monotonic()
    assert (await agent_api.power(server_id, "stop")).status == 202
    body = await wait_until(lambda: agent_api.read(server_id), has_exited)
    assert body["container"]["exit_code"] == 137
    assert time.monotonic() - started >= 1.0


async def test_fork_bomb_stays_under_the_pids_limit_and_the_host_stays_responsive(
    servers: LiveServers,
    agent: AgentProcess,
    agent_api: SignedAgentClient,
    docker: aiodocker.Docker,
) -> None:
    server_id = await servers.create()
    spec = servers.specs[server_id]
    await start(agent_api, server_id)
    name = game_container_name(server_id)
    container_id = (await docker.containers.container(name).show())["Id"]

    await console(docker, name, "forkbomb")
    highest = 0
    deadline = time.monotonic() + 3
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            highest = max(highest, cgroup_pids(container_id).current)
            asked = time.monotonic()
            async with http.get(f"{agent.base_url}/healthz") as response:
                assert response.status == 200
            assert time.monotonic() - asked < 2.0, "the agent stopped answering"
            await asyncio.sleep(0.1)
    reading = cgroup_pids(container_id)

    assert reading.limit == spec["pids_limit"]
    assert reading.times_limit_hit > 0, "the bomb never reached the limit"
    assert highest <= spec["pids_limit"]
    answer = await agent_api.power(server_id, "kill")
    assert answer.status == 200
    assert answer.body["container"]["running"] is False


async def test_out_of_memory_game_is_reported_as_oom_killed(
    servers: LiveServers, agent_api: SignedAgentClient, docker: aiodocker.Docker
) -> None:
    server_id = await servers.create(memory_mib=32, swap_mib=0)
    await start(agent_api, server_id)

    await console(docker, game_container_name(server_id), "oom")
    body = await wait_until(lambda: agent_api.read(server_id), has_exited)
    assert body["container"]["oom_killed"] is True


async def test_root_installer_has_exactly_the_five_file_capabilities(
    servers: LiveServers, agent_api: SignedAgentClient, docker: aiodocker.Docker
) -> None:
    script = (
        "id -u > /home/container/installer-uid; "
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status > /home/container/installer-status; "
        "touch /home/container/made-by-root; "
        "while [ ! -e /home/container/release ]; do sleep 0.1; done"
    )
    server_id = await servers.create(
        install={"image": FAKE_GAME_IMAGE, "script": script, "needs_root": True}
    )
    spec = servers.specs[server_id]
    volume = servers.volume(server_id)
    deadline = time.monotonic() + 10
    while not (volume / "made-by-root").exists():
        assert time.monotonic() < deadline, "the installer never ran"
        await asyncio.sleep(0.1)
    info = await docker.containers.container(install_container_name(server_id)).show()
    assert (await agent_api.power(server_id, "start")).status == 409

    assert_common_hardening(info, volume, spec, installer=True)
    assert info["Config"]["User"] == "0:0"
    assert sorted(info["HostConfig"]["CapAdd"]) == sorted(INSTALL_ROOT_CAPABILITIES)
    assert not info["HostConfig"]["PortBindings"]
    assert info["Config"]["Entrypoint"] == ["/bin/sh"]
    assert (volume / "installer-uid").read_text() == "0\n"
    installer_status = (volume / "installer-status").read_text()
    assert status_line(installer_status, "CapEff") == INSTALL_ROOT_CAPABILITY_MASK
    assert status_line(installer_status, "NoNewPrivs") == "1"

    (volume / "release").touch()
    body = await wait_until(
        lambda: agent_api.read(server_id), lambda b: b["install"] != "installing"
    )
    assert (body["install"], body["install_exit_code"]) == ("installed", 0)
    made = (volume / "made-by-root").stat()
    assert (made.st_uid, made.st_gid) == (1000, 1000), "root's files are handed to the game"
    assert (
        await docker.containers.list(
            all=True, filters={"name": [install_container_name(server_id)]}
        )
        == []
    )


async def test_unprivileged_installer_runs_as_the_game_user(
    servers: LiveServers, agent_api: SignedAgentClient, docker: aiodocker.Docker
) -> None:
    script = "grep -E '^(Uid|CapEff)' /proc/self/status > /home/container/installer-status"
    server_id = await servers.create(install={"image": FAKE_GAME_IMAGE, "script": script})

    body = await wait_until(
        lambda: agent_api.read(server_id), lambda b: b["install"] != "installing"
    )
    assert body["install"] == "installed"
    installer_status = (servers.volume(server_id) / "installer-status").read_text()
    assert status_line(installer_status, "Uid").split()[:2] == ["1000", "1000"]
    assert status_line(installer_status, "CapEff") == NO_CAPABILITIES
    await start(agent_api, server_id)


async def test_create_with_an_image_that_cannot_be_pulled_leaves_nothing_behind(
    servers: LiveServers, agent_api: SignedAgentClient, docker: aiodocker.Docker
) -> None:
    spec = servers.spec(image="stellar-test/does-not-exist:1")
    server_id = uuid.UUID(spec["uuid"])

    answer = await agent_api.create(spec)

    assert answer.status == 400
    assert answer.body["error"]["code"] == "invalid_request"
    assert "stellar-test/does-not-exist:1" in answer.body["error"]["message"]
    assert (await agent_api.read(server_id)).status == 404
    assert not servers.volume(server_id).exists()
    assert (
        await docker.containers.list(all=True, filters={"label": [f"{SERVER_LABEL}={server_id}"]})
        == []
    )


async def test_create_refuses_a_body_for_another_server(
    servers: LiveServers, agent_api: SignedAgentClient
) -> None:
    spec = servers.spec()
    other = uuid.uuid4()

    answer = await agent_api.send(
        "PUT", other, "server.create", body=SignedAgentClient.encode(spec)
    )

    assert answer.status == 400
    assert (await agent_api.read(other)).status == 404


async def test_creating_the_same_server_twice_is_a_conflict(
    servers: LiveServers, agent_api: SignedAgentClient
) -> None:
    spec = servers.specs[await servers.create()]

    answer = await agent_api.create(spec)

    assert answer.status == 409


async def test_delete_removes_the_running_container_and_the_volume(
    servers: LiveServers, agent_api: SignedAgentClient, docker: aiodocker.Docker
) -> None:
    server_id = await servers.create()
    await start(agent_api, server_id)

    assert (await agent_api.delete(server_id)).status == 204

    assert not servers.volume(server_id).exists()
    assert (
        await docker.containers.list(all=True, filters={"label": [f"{SERVER_LABEL}={server_id}"]})
        == []
    )
    assert (await agent_api.read(server_id)).status == 404


async def test_deleted_twice_at_once_with_a_start_meanwhile_one_deletes_the_rest_get_404(
    servers: LiveServers, agent_api: SignedAgentClient, docker: aiodocker.Docker
) -> None:
    """Everything that waited for the server's lock while it was deleted is told it is gone
    (a second deletion used to fail with a 500 ``KeyError``; a start would act on a server
    with no container and no volume)."""
    server_id = await servers.create()
    await start(agent_api, server_id)
    answers = await asyncio.gather(
        agent_api.delete(server_id),
        agent_api.delete(server_id),
        agent_api.power(server_id, "start"),
    )
    deletions = sorted(answer.status for answer in answers[:2])
    assert deletions == [204, 404], answers
    # The start came before the deletion (its status: running) or after it (404).
    assert answers[2].status in (200, 404), answers[2]
    assert not servers.volume(server_id).exists()
    assert (
        await docker.containers.list(all=True, filters={"label": [f"{SERVER_LABEL}={server_id}"]})
        == []
    )
    assert (await agent_api.read(server_id)).status == 404


async def test_restart_stops_the_game_and_starts_it_again(
    servers: LiveServers, agent_api: SignedAgentClient
) -> None:
    server_id = await servers.create()
    await start(agent_api, server_id)
    first = (await agent_api.read(server_id)).body["container"]["started_at"]

    assert (await agent_api.power(server_id, "restart")).status == 202

    body = await wait_until(
        lambda: agent_api.read(server_id),
        lambda b: is_running(b) and b["container"]["started_at"] != first and not b["stopping"],
    )
    assert body["container"]["exit_code"] is None


async def test_crashed_game_reports_its_exit_code(
    servers: LiveServers, agent_api: SignedAgentClient, docker: aiodocker.Docker
) -> None:
    server_id = await servers.create()
    await start(agent_api, server_id)

    await console(docker, game_container_name(server_id), "crash")

    body = await wait_until(lambda: agent_api.read(server_id), has_exited)
    assert (body["container"]["exit_code"], body["container"]["oom_killed"]) == (1, False)


async def test_token_for_another_server_cannot_act_on_this_one(
    servers: LiveServers, agent_api: SignedAgentClient
) -> None:
    server_id = await servers.create()

    answer = await agent_api.send(
        "DELETE", server_id, "server.delete", subject=f"server:{uuid.uuid4()}"
    )

    assert answer.status == 401
    assert (await agent_api.read(server_id)).status == 200


async def test_agent_killed_and_started_again_still_knows_its_servers(
    agent_factory: AgentFactory, signing_key: SigningKey, docker: aiodocker.Docker
) -> None:
    agent = agent_factory()
    async with aiohttp.ClientSession() as http:
        api = SignedAgentClient(agent, signing_key, http)
        handed_out = LiveServers(agent, api, docker, defaults=SPEC_DEFAULTS)
        try:
            server_id = await handed_out.create()
            await start(api, server_id)
            agent.kill()
            agent.start()

            body = (await api.read(server_id)).body
            assert body["container"]["running"] is True
            assert (await api.delete(server_id)).status == 204
        finally:
            await handed_out.remove_servers()


async def test_a_weaker_container_under_the_servers_name_is_rebuilt_before_it_starts(
    servers: LiveServers, agent_api: SignedAgentClient, docker: aiodocker.Docker
) -> None:
    # What an older agent with weaker hardening (or someone with access to dockerd) might
    # have left: the server's container, its labels, but capabilities, no limits, no seccomp.
    server_id = await servers.create()
    spec = servers.specs[server_id]
    name = game_container_name(server_id)
    built = await docker.containers.container(name).show()
    await docker.containers.container(name).delete(force=True)
    weaker = await docker.containers.create(
        {
            "Image": FAKE_GAME_IMAGE,
            "User": "0:0",
            "Labels": {k: v for k, v in built["Config"]["Labels"].items() if k != CONFIG_LABEL},
            "HostConfig": {
                "CapAdd": ["NET_ADMIN", "SYS_PTRACE"],
                "SecurityOpt": ["seccomp=unconfined"],
                "Binds": [f"{servers.volume(server_id)}:/home/container"],
            },
        },
        name=name,
    )
    planted = (await weaker.show())["Id"]

    await start(agent_api, server_id)

    info = await docker.containers.container(name).show()
    assert info["Id"] != planted
    assert_common_hardening(info, servers.volume(server_id), spec)
    assert info["Config"]["User"] == "1000:1000"
    assert not info["HostConfig"]["CapAdd"]
    assert info["Config"]["Labels"][CONFIG_LABEL] == built["Config"]["Labels"][CONFIG_LABEL]


async def test_the_agents_own_container_is_started_as_it_is(
    servers: LiveServers, agent_api: SignedAgentClient, docker: aiodocker.Docker
) -> None:
    server_id = await servers.create()
    name = game_container_name(server_id)
    created = (await docker.containers.container(name).show())["Id"]
    await start(agent_api, server_id)
    assert (await docker.containers.container(name).show())["Id"] == created


# A crashing process of the game must leave no core dump: with a piped core_pattern
# (systemd-coredump, apport) the host's helper runs as root outside the container's limits
# and stores the dump (up to the game's memory) on the host's disk; with a plain one it is
# written into the volume. The game's user could raise its soft limit up to Docker's hard
# limit (unlimited under containerd's LimitCORE=infinity) and crash processes at will.
CRASH_WITH_CORE = "ulimit -c unlimited; sh -c 'kill -SEGV $$'; echo hard=$(ulimit -Hc)"


async def test_neither_the_game_nor_its_installer_can_dump_core(
    servers: LiveServers, agent_api: SignedAgentClient, docker: aiodocker.Docker
) -> None:
    script = f"({CRASH_WITH_CORE}) > /home/container/installer-core 2>&1"
    server_id = await servers.create(
        install={"image": FAKE_GAME_IMAGE, "script": script, "needs_root": True}
    )
    body = await wait_until(
        lambda: agent_api.read(server_id), lambda b: b["install"] != "installing"
    )
    assert body["install"] == "installed"
    await start(agent_api, server_id)
    name = game_container_name(server_id)

    _, game = await exec_in(docker, name, "sh", "-c", CRASH_WITH_CORE)
    installer = (servers.volume(server_id) / "installer-core").read_text()

    assert "hard=0" in game
    assert "hard=0" in installer
    assert not (servers.volume(server_id) / "core").exists(), "a core dump was written"


# An image may declare VOLUMEs (community game images do: /data owned by the game's user).
# Docker gives each such path an anonymous volume on the host's own disk, writable despite
# the read-only root and outside the server's disk limit: a game filled the node's disk
# through it, and its installer too.
VOLUME_IMAGE = "stellar-test/declares-volume:latest"


@pytest.fixture(scope="module")
def volume_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The busybox image plus ``VOLUME /data`` (owned by the game user), built locally."""
    context = tmp_path_factory.mktemp("volume-image")
    (context / "data").mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {BUSYBOX_IMAGE}\nCOPY --chown=1000:1000 data /data\nVOLUME /data\n",
        encoding="utf-8",
    )
    built = docker_cli("build", "-q", "-t", VOLUME_IMAGE, str(context))
    assert built.returncode == 0, built.stderr
    return VOLUME_IMAGE


FILL_DATA = "dd if=/dev/zero of=/data/fill bs=1M count=100 2>&1; echo exit=$?"


async def test_an_images_declared_volumes_give_no_disk_outside_the_servers_volume(
    servers: LiveServers,
    agent_api: SignedAgentClient,
    docker: aiodocker.Docker,
    volume_image: str,
) -> None:
    script = f"({FILL_DATA}) > /home/container/installer-fill"
    server_id = await servers.create(
        image=volume_image,
        memory_mib=96,
        startup=["sh", "-c", "echo fake-game started; exec sleep 600"],
        stop={"type": "signal", "value": "SIGKILL"},
        install={"image": volume_image, "script": script, "needs_root": True},
    )
    body = await wait_until(
        lambda: agent_api.read(server_id), lambda b: b["install"] != "installing"
    )
    assert body["install"] == "installed", body
    await start(agent_api, server_id)
    name = game_container_name(server_id)

    _, game_fill = await exec_in(docker, name, "sh", "-c", FILL_DATA)
    installer_fill = (servers.volume(server_id) / "installer-fill").read_text()
    info = await docker.containers.container(name).show()

    # /data is a tmpfs now: full at 64 MiB (the installer's at its memory limit, if its
    # pages did not end it first), never the node's disk.
    assert "No space left on device" in game_fill
    assert "exit=0" not in installer_fill, f"the installer wrote 100 MiB: {installer_fill}"
    assert [m["Type"] for m in info["Mounts"]] == ["bind"]
    assert "/data" in info["HostConfig"]["Tmpfs"]
