"""Hostile and broken install scripts against a real agent and real containers.

Each test plays a blueprint author whose script attacks the node (or simply misbehaves),
runs it through the agent's signed API as the control plane would, and reads the outcome
where a user would: the ``InstallEvent`` on the node's event stream (exit code, duration,
reason, last lines: each attack prints its own error there), the console's live ``install
output``, the status route and the files in the volume.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from node_agent.docker.hardening import game_container_name, install_container_name
from node_agent.servers.install_output import MAX_INSTALL_LINE_CHARS, MAX_INSTALL_LINES
from tests.integration.node_agent.live_agent import Frames, LiveClient, LiveServers, read_body
from tests.support.containers import FAKE_GAME_IMAGE, docker_cli

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]


def install_event(server_id: uuid.UUID) -> Any:
    return lambda e: e.get("type") == "install" and e["server"] == str(server_id)


def line_after(lines: list[str], prefix: str) -> str:
    """The one line that starts with ``prefix``, without it."""
    found = [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]
    assert len(found) == 1, (prefix, lines)
    return found[0]


async def finished(events: Frames, server_id: uuid.UUID, timeout: float = 30) -> dict[str, Any]:
    return await events.wait_for(install_event(server_id), timeout=timeout)


# A root installer that tries what it must not: each attempt prints the error it got and
# its exit status, and the script itself exits 0 (so the install succeeds: the refusals
# are read from its output, not inferred from a failure).
ROOT_ATTACKS = """
echo "where: $(pwd) home=$HOME uid=$(id -u)"
mount -t tmpfs none /mnt 2>&1; echo "mount tmpfs: exit $?"
mount -o remount,rw / 2>&1; echo "remount root: exit $?"
chown 4242 / 2>&1; echo "chown /: exit $?"
chown 4242 /etc/passwd 2>&1; echo "chown /etc/passwd: exit $?"
chown 4242 /mnt 2>&1; echo "chown /mnt: exit $?"
mknod /mnt/server/null c 1 3 2>&1; echo "mknod status: exit $?"
ln -s {canary} /mnt/server/canary-link
ln -s / /mnt/server/root-link
ln {canary} /mnt/server/canary-hardlink 2>&1; echo "hardlink status: exit $?"
echo made > /mnt/server/made-by-root
"""


async def test_a_root_installer_cannot_mount_or_chown_anything_outside_its_volume(
    servers: LiveServers, api: LiveClient, tmp_path: Path
) -> None:
    # A host file the installer names through symlinks and a hard link in the volume: the
    # agent hands root's files to the game user after the install and must not follow them.
    canary = tmp_path / "canary"
    canary.write_text("host file\n")
    canary.chmod(0o600)
    script = ROOT_ATTACKS.format(canary=canary)
    async with api.node_events() as events:
        server_id = await servers.create(
            install={
                "image": FAKE_GAME_IMAGE,
                "script": script,
                "needs_root": True,
                "volume_path": "/mnt/server",
            }
        )
        event = await finished(events, server_id)

    lines = event["last_lines"]
    assert (event["success"], event["exit_code"], event["reason"]) == (True, 0, None), lines
    # Root (uid 0), in the volume where egg scripts expect it.
    assert line_after(lines, "where: ") == "/mnt/server home=/mnt/server uid=0"
    # No CAP_SYS_ADMIN: no mount, no remount of the read-only root.
    assert lines.count("mount: permission denied (are you root?)") == 2
    assert line_after(lines, "mount tmpfs: ") == "exit 1"
    assert line_after(lines, "remount root: ") == "exit 1"
    # CAP_CHOWN, but the root is read-only: nothing outside the volume changes owner.
    for path in ("/", "/etc/passwd", "/mnt"):
        assert f"chown: {path}: Read-only file system" in lines
        assert line_after(lines, f"chown {path}: ") == "exit 1"
    # No CAP_MKNOD: no device node to reach the host's memory or disks through.
    assert "mknod: /mnt/server/null: Operation not permitted" in lines
    assert line_after(lines, "mknod status: ") == "exit 1"
    # The host file is not even in the container's filesystem to link to.
    assert f"ln: {canary}: No such file or directory" in lines
    assert line_after(lines, "hardlink status: ") == "exit 1"

    volume = servers.volume(server_id)
    made = (volume / "made-by-root").stat()
    assert (made.st_uid, made.st_gid) == (1000, 1000), "root's files go to the game user"
    assert not (volume / "null").exists()
    host_file = canary.stat()
    assert (host_file.st_uid, host_file.st_gid) == (0, 0), "the agent followed a planted link"
    assert canary.read_text() == "host file\n"
    link = (volume / "canary-link").lstat()
    assert link.st_uid == 1000, "the link itself is handed over, not its target"
    assert (await read_body(api, server_id))["install"] == "installed"


async def test_an_installer_that_loops_forever_is_stopped_at_its_time_limit(
    servers: LiveServers, api: LiveClient, docker: aiodocker.Docker
) -> None:
    script = 'echo "starting"; i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done'
    async with api.node_events() as events:
        server_id = await servers.create(
            install={"image": FAKE_GAME_IMAGE, "script": script, "timeout_seconds": 3}
        )
        # A console viewer sees the installer's lines live, while it runs.
        async with api.console(server_id) as console:
            live = await console.wait_for(
                lambda f: f.get("event") == "install output" and f["args"][0] == "tick 3"
            )
            assert live["args"] == ["tick 3"]
            event = await finished(events, server_id)
            notice = await console.wait_for(
                lambda f: f.get("event") == "install output" and "install failed" in f["args"][0]
            )

    assert event["success"] is False
    assert event["reason"] == "timed out after 3 s: the installer was killed"
    assert event["exit_code"] == 137  # SIGKILL
    assert 3.0 <= event["duration_seconds"] < 20
    lines = event["last_lines"]
    assert lines[0] == "starting"
    last_tick = lines[-1].split()
    assert last_tick[0] == "tick"
    assert int(last_tick[1]) >= 10, lines
    assert notice["args"] == ["[stellar] install failed: " + event["reason"]]
    body = await read_body(api, server_id)
    assert (body["install"], body["state"]) == ("failed", "offline")
    # Not started until reinstalled; and the killed installer is gone.
    assert (await api.power(server_id, "start")).status == 409
    gone = await docker.containers.list(
        all=True, filters={"name": [install_container_name(server_id)]}
    )
    assert gone == []


async def test_a_failing_installer_reports_its_exit_code_and_last_lines_bounded(
    servers: LiveServers, api: LiveClient
) -> None:
    long_line = "x" * 5000
    # stdout and stderr are two pipes: the pauses keep their lines in this order.
    script = (
        'i=0; while [ $i -lt 150 ]; do i=$((i+1)); echo "line $i"; done; sleep 0.3; '
        'echo "fatal: could not download the server" >&2; sleep 0.3; '
        f"echo {long_line}; printf '\\033[31mred\\033[0m and a bell\\a\\n'; exit 3"
    )
    async with api.node_events() as events:
        server_id = await servers.create(install={"image": FAKE_GAME_IMAGE, "script": script})
        event = await finished(events, server_id)

    assert (event["success"], event["exit_code"]) == (False, 3)
    assert event["reason"] == "the install script exited with code 3"
    lines = event["last_lines"]
    assert len(lines) == MAX_INSTALL_LINES
    # The last ones, stderr included, cut and cleaned of terminal codes.
    assert lines[-1] == "red and a bell"
    assert lines[-2] == "x" * MAX_INSTALL_LINE_CHARS
    assert lines[-3] == "fatal: could not download the server"
    assert lines[-4] == "line 150"
    assert lines[0] == f"line {150 - MAX_INSTALL_LINES + 3 + 1}"
    assert (await read_body(api, server_id))["install"] == "failed"


async def test_an_installer_that_waits_for_input_reads_end_of_file(
    servers: LiveServers, api: LiveClient
) -> None:
    # "Continue? [y/N]": with stdin open the script would wait until its time limit.
    script = 'if read answer; then echo "read: $answer"; else echo "stdin: end of file"; fi'
    async with api.node_events() as events:
        server_id = await servers.create(
            install={"image": FAKE_GAME_IMAGE, "script": script, "timeout_seconds": 20}
        )
        event = await finished(events, server_id)

    assert event["last_lines"] == ["stdin: end of file"]
    assert event["success"] is True
    assert event["duration_seconds"] < 10


async def test_an_installer_with_a_writable_root_changes_only_its_own_throwaway_copy(
    servers: LiveServers, api: LiveClient
) -> None:
    # What an egg's script does first (apt-get install …), played with a file in /etc; the
    # rest of the hardening holds all the same.
    script = (
        'echo packages > /etc/installed-package 2>&1; echo "write root: exit $?"\n'
        'mount -t tmpfs none /mnt 2>&1; echo "mount tmpfs: exit $?"\n'
    )
    async with api.node_events() as events:
        server_id = await servers.create(
            install={
                "image": FAKE_GAME_IMAGE,
                "script": script,
                "needs_root": True,
                "volume_path": "/mnt/server",
                "writable_root": True,
            }
        )
        event = await finished(events, server_id)
    lines = event["last_lines"]
    assert line_after(lines, "write root: ") == "exit 0"
    assert line_after(lines, "mount tmpfs: ") == "exit 1"
    # The installer's container, and its copy of the image with it, is gone; the game's
    # root is still read-only.
    assert docker_cli("inspect", install_container_name(server_id)).returncode != 0
    game = docker_cli(
        "inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", game_container_name(server_id)
    )
    assert game.stdout.strip() == "true", game.stderr
