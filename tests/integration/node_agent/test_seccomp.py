"""No nested btrfs subvolumes in a game: the agent's seccomp profile, checked in real containers.

A game (uid 1000, no capabilities) may create a btrfs subvolume in its own volume, and that
subvolume's qgroup has no limit. The probe is a tiny C program compiled here with the host's
``gcc -static`` and copied into the server's volume; run with ``docker exec`` as the game
user, it makes one system call and prints ``<operation>: ok`` or ``<operation>: <ERRNO>``.
Control containers with Docker's default profile (and with none) show that the probe would
succeed without the agent's rules, so each EPERM below comes from them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Final

import aiodocker
import pytest

from node_agent.docker.hardening import game_container_name
from node_agent.docker.seccomp import DENIED_BTRFS_IOCTLS, DOCKER_DEFAULT_PROFILE
from node_agent.docker.seccomp_context import INSPECTION_FILE
from node_agent.storage.btrfs import parse_qgroups
from tests.conftest import require_tool
from tests.integration.node_agent.quota_nodes import (
    MIB,
    NodeFactory,
    QuotaNode,
    start,
    write_mib,
)
from tests.support.agent_process import AgentProcess, SigningKey, mint_for
from tests.support.containers import BUSYBOX_IMAGE, exec_in
from tests.support.storage import btrfs, needs_root_to_mount, release_everything_under

pytestmark = [pytest.mark.docker, needs_root_to_mount, pytest.mark.timeout(180)]

PROBE_SOURCE: Final = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int report(const char *op, long rc) {
    if (rc < 0) { printf("%s: %s\n", op, strerrorname_np(errno)); return 1; }
    printf("%s: ok\n", op);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *op = argv[1];
    if (!strcmp(op, "fionread")) {
        int fds[2], queued = -1;
        if (pipe(fds) || write(fds[1], "hello", 5) != 5) return 2;
        long rc = ioctl(fds[0], FIONREAD, &queued);
        return report(op, rc == 0 && queued != 5 ? (errno = EINVAL, -1) : rc);
    }
    if (!strcmp(op, "add-key")) {
        return report(op, syscall(SYS_add_key, "user", "stellar-probe", "x", 1,
                                  KEY_SPEC_PROCESS_KEYRING));
    }
    if (!strcmp(op, "io-uring")) {
        struct io_uring_params params;
        memset(&params, 0, sizeof params);
        return report(op, syscall(SYS_io_uring_setup, 4, &params));
    }
    if (argc < 4) return 2;
    int dir = open(argv[2], O_RDONLY | O_DIRECTORY);
    if (dir < 0) return 2;
    if (!strcmp(op, "getflags")) {
        int flags = 0;
        return report(op, ioctl(dir, FS_IOC_GETFLAGS, &flags));
    }
    unsigned long request;
    int v2 = 0, snapshot = 0;
    if (!strcmp(op, "subvol")) request = BTRFS_IOC_SUBVOL_CREATE;
    else if (!strcmp(op, "subvol-v2")) { request = BTRFS_IOC_SUBVOL_CREATE_V2; v2 = 1; }
    else if (!strcmp(op, "snap")) { request = BTRFS_IOC_SNAP_CREATE; snapshot = 1; }
    else if (!strcmp(op, "snap-v2")) { request = BTRFS_IOC_SNAP_CREATE_V2; v2 = snapshot = 1; }
    /* The kernel reads the request as 32 bits: high bits must not fool the filter. */
    else if (!strcmp(op, "subvol-high-bits"))
        request = 0xffffffff00000000UL | BTRFS_IOC_SUBVOL_CREATE;
    else return 2;
    long rc;
    if (v2) {
        struct btrfs_ioctl_vol_args_v2 args;
        memset(&args, 0, sizeof args);
        strncpy(args.name, argv[3], sizeof args.name - 1);
        if (snapshot) args.fd = dir;
        rc = syscall(SYS_ioctl, dir, request, &args);
    } else {
        struct btrfs_ioctl_vol_args args;
        memset(&args, 0, sizeof args);
        strncpy(args.name, argv[3], sizeof args.name - 1);
        if (snapshot) args.fd = dir;
        rc = syscall(SYS_ioctl, dir, request, &args);
    }
    return report(op, rc);
}
"""
SUBVOLUME_OPERATIONS: Final = ("subvol", "subvol-v2", "snap", "snap-v2", "subvol-high-bits")
GAME_HOME: Final = "/home/container"


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The probe, built once for the module (removed with pytest's tmp directories)."""
    require_tool("gcc", "gcc libc6-dev")
    build = tmp_path_factory.mktemp("probe")
    (build / "probe.c").write_text(PROBE_SOURCE, encoding="utf-8")
    compiled = subprocess.run(
        ["gcc", "-static", "-O2", "-o", str(build / "probe"), str(build / "probe.c")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert compiled.returncode == 0, compiled.stderr
    return build / "probe"


@pytest.fixture
def node(node_factory: NodeFactory) -> QuotaNode:
    """An agent on the btrfs backend only (the rules are about btrfs subvolumes)."""
    return node_factory("btrfs")


def place_probe(probe: Path, directory: Path) -> None:
    """Copy the probe where the game user can run it."""
    target = directory / "probe"
    shutil.copy(probe, target)
    os.chown(target, 1000, 1000)


async def run_probe(
    docker: aiodocker.Docker, server_id: uuid.UUID, operation: str, name: str = "nested"
) -> str:
    """The probe's one line, run in the game container as the game user."""
    _code, output = await exec_in(
        docker, game_container_name(server_id), f"{GAME_HOME}/probe", operation, GAME_HOME, name
    )
    return output.strip()


def run_probe_in_control_container(
    directory: Path, operation: str, name: str, *security: str
) -> str:
    """The probe's line from a throwaway container hardened like a game but for seccomp."""
    result = subprocess.run(
        [
            "docker", "run", "--rm", "--user", "1000:1000", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges:true", *security,
            "-v", f"{directory}:{GAME_HOME}", BUSYBOX_IMAGE,
            f"{GAME_HOME}/probe", operation, GAME_HOME, name,
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return result.stdout.strip() or result.stderr.strip()


def nested_subvolumes(pool: Path, volume: Path) -> list[str]:
    """Paths of the subvolumes below ``volume`` in the pool."""
    listing = btrfs("subvolume", "list", "-o", str(volume))
    return [line.split(" path ")[-1] for line in listing.splitlines() if " path " in line]


async def running_server_with_probe(node: QuotaNode, probe: Path, disk_mib: int = 64) -> uuid.UUID:
    server_id = await node.create(disk_mib=disk_mib)
    place_probe(probe, node.volume(server_id))
    await start(node, server_id)
    return server_id


# --- the escape is closed ----------------------------------------------------------------------


async def test_a_game_cannot_create_a_nested_subvolume_or_snapshot(
    node: QuotaNode, probe: Path, docker: aiodocker.Docker
) -> None:
    server_id = await running_server_with_probe(node, probe)

    answers = [await run_probe(docker, server_id, op, f"n-{op}") for op in SUBVOLUME_OPERATIONS]

    assert answers == [f"{op}: EPERM" for op in SUBVOLUME_OPERATIONS]
    assert nested_subvolumes(node.pool, node.volume(server_id)) == []


async def test_without_the_agents_rules_the_same_probe_creates_a_subvolume(
    node: QuotaNode, probe: Path
) -> None:
    # The control: Docker's default profile lets a capability-less user make subvolumes.
    scratch = node.pool / f"scratch-{uuid.uuid4()}"
    btrfs("subvolume", "create", str(scratch))
    try:
        os.chown(scratch, 1000, 1000)
        place_probe(probe, scratch)

        answers = [
            run_probe_in_control_container(scratch, op, f"n-{op}") for op in SUBVOLUME_OPERATIONS
        ]

        assert answers == [f"{op}: ok" for op in SUBVOLUME_OPERATIONS]
        assert len(nested_subvolumes(node.pool, scratch)) == len(SUBVOLUME_OPERATIONS)
    finally:
        for nested in nested_subvolumes(node.pool, scratch):
            btrfs("subvolume", "delete", str(node.pool / nested))
        btrfs("subvolume", "delete", str(scratch))


async def test_a_nested_subvolume_cannot_carry_a_game_past_its_disk_limit(
    node: QuotaNode, probe: Path, docker: aiodocker.Docker
) -> None:
    server_id = await running_server_with_probe(node, probe, disk_mib=64)
    volume = node.volume(server_id)

    refused = await run_probe(docker, server_id, "subvol", "escape")
    code, _ = await exec_in(docker, game_container_name(server_id), "mkdir", "-p", "escape")
    error = await write_mib(docker, server_id, "escape/fill.bin", 100)

    assert refused == "subvol: EPERM"
    assert code == 0
    assert "Disk quota exceeded" in error
    assert nested_subvolumes(node.pool, volume) == []
    qgroup = f"0/{btrfs('inspect-internal', 'rootid', str(volume)).strip()}"
    groups = parse_qgroups(btrfs("qgroup", "show", "--raw", "-re", "--sync", str(node.pool)))
    assert groups[qgroup].referenced <= 64 * MIB
    assert sum(group.referenced for group in groups.values()) < 100 * MIB


# --- io_uring: the kernel's largest attack surface a game could reach, as Docker 25 has it ---


async def test_a_game_cannot_set_up_io_uring(
    node: QuotaNode, probe: Path, docker: aiodocker.Docker
) -> None:
    server_id = await running_server_with_probe(node, probe)

    in_game = await run_probe(docker, server_id, "io-uring")
    # The control: this engine's default profile (Docker before 25) lets any container in.
    engine_default = run_probe_in_control_container(node.volume(server_id), "io-uring", "-")

    assert in_game == "io-uring: EPERM"
    assert engine_default == "io-uring: ok"


# --- everything else stays as Docker's default profile has it --------------------------------


async def test_ordinary_ioctls_still_work_in_the_game(
    node: QuotaNode, probe: Path, docker: aiodocker.Docker
) -> None:
    server_id = await running_server_with_probe(node, probe)

    assert await run_probe(docker, server_id, "fionread") == "fionread: ok"
    assert await run_probe(docker, server_id, "getflags") == "getflags: ok"


async def test_dockers_default_protections_remain_in_the_game(
    node: QuotaNode, probe: Path, docker: aiodocker.Docker
) -> None:
    server_id = await running_server_with_probe(node, probe)
    scratch = node.volume(server_id)

    in_game = await run_probe(docker, server_id, "add-key")
    unconfined = run_probe_in_control_container(
        scratch, "add-key", "-", "--security-opt", "seccomp=unconfined"
    )
    _code, status = await exec_in(
        docker, game_container_name(server_id), "grep", "^Seccomp:", "/proc/self/status"
    )

    # add_key is outside Docker's default allow list: EPERM, unlike without any profile.
    assert in_game == "add-key: EPERM"
    assert unconfined == "add-key: ok"
    assert status.split() == ["Seccomp:", "2"]


async def test_docker_inspect_shows_the_profile_next_to_no_new_privileges(
    node: QuotaNode, docker: aiodocker.Docker
) -> None:
    server_id = await node.create()

    info = await docker.containers.container(game_container_name(server_id)).show()

    no_new_privileges, seccomp = info["HostConfig"]["SecurityOpt"]
    written = (node.agent.data_dir / INSPECTION_FILE).read_text(encoding="utf-8").strip()
    assert no_new_privileges == "no-new-privileges:true"
    assert seccomp == f"seccomp={written}"
    profile = json.loads(written)
    assert {
        rule["args"][0]["valueTwo"]
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ERRNO" and rule["names"] == ["ioctl"]
    } == set(DENIED_BTRFS_IOCTLS.values())


# --- the shipped copy of Docker's default profile ------------------------------------------------


def test_the_shipped_profile_answers_as_the_engines_own_default(
    probe: Path, tmp_path: Path
) -> None:
    # The engine does not export its profile; compare what a container may do under each.
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 1000, 1000)
    place_probe(probe, home)
    shipped = ("--security-opt", f"seccomp={DOCKER_DEFAULT_PROFILE}")

    answers = {
        operation: (
            run_probe_in_control_container(home, operation, "-", *shipped),
            run_probe_in_control_container(home, operation, "-"),
        )
        for operation in ("fionread", "add-key")
    }

    assert answers == {
        "fionread": ("fionread: ok", "fionread: ok"),
        "add-key": ("add-key: EPERM", "add-key: EPERM"),
    }


# --- without the base profile ------------------------------------------------------------------


async def system_facts(agent: AgentProcess, node: QuotaNode) -> dict[str, object]:
    token = mint_for(agent, node.api.key)
    async with node.api.http.get(
        f"{agent.base_url}/api/v1/system", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 200
        facts: dict[str, object] = (await response.json())["facts"]
        return facts


async def test_facts_say_whether_nested_subvolumes_are_blocked(
    node_factory: NodeFactory, tmp_path: Path, docker: aiodocker.Docker
) -> None:
    guarded = node_factory("btrfs")
    unguarded = node_factory("btrfs", seccomp_base_profile=str(tmp_path / "missing.json"))
    server_id = await unguarded.create()

    guarded_facts = await system_facts(guarded.agent, guarded)
    unguarded_facts = await system_facts(unguarded.agent, unguarded)
    info = await docker.containers.container(game_container_name(server_id)).show()

    assert guarded_facts["nested_subvolumes_blocked"] is True
    assert unguarded_facts["nested_subvolumes_blocked"] is False
    assert "NESTED BTRFS SUBVOLUMES ARE NOT BLOCKED" in unguarded.agent.log_text()
    assert info["HostConfig"]["SecurityOpt"] == ["no-new-privileges:true"]


def test_production_btrfs_agent_without_the_base_profile_exits_before_listening(
    tmp_path: Path, signing_key: SigningKey
) -> None:
    agent = AgentProcess(
        tmp_path / "agent",
        {signing_key.kid: signing_key.public_text},
        settings={
            "environment": "production",
            "storage_backend": "btrfs",
            "storage_pool_size_mib": 256,
            "seccomp_base_profile": str(tmp_path / "missing.json"),
        },
    )
    agent.write_config()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "node_agent", "serve", "--config", str(agent.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        release_everything_under(tmp_path)  # a production agent leaves its pool mounted

    assert result.returncode == 2, result.stderr
    assert "seccomp_base_profile: cannot read" in result.stderr
    assert "nested btrfs subvolume" in result.stderr
