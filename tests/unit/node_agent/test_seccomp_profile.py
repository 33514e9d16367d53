"""The game containers' seccomp profile: the ioctl patterns, the merge, and what is refused.

The rules are read the way runc and libseccomp apply them (checked against real containers in
``tests/integration/node_agent/test_seccomp.py``): a plain allow of ``ioctl`` would win over
any condition, so a request is allowed only if some ``ioctl`` allow rule matches it.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import random
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from node_agent.docker.hardening import (
    ContainerPlacement,
    game_container_config,
    install_container_config,
)
from node_agent.docker.seccomp import (
    DENIED_BTRFS_IOCTLS,
    DENIED_SYSCALLS,
    DOCKER_DEFAULT_PROFILE,
    SeccompProfile,
    SeccompProfileError,
    allowed_request_patterns,
    load_game_profile,
    without_denied_syscalls,
    without_nested_subvolumes,
)
from node_agent.settings import AgentSettings
from shared.server_spec import InstallSpec, ServerSpec
from tests.support.factories import server_spec

REPO_ROOT = Path(__file__).resolve().parents[3]
DENIED = frozenset(DENIED_BTRFS_IOCTLS.values())
# Where Debian's golang-github-docker-docker-dev puts the profile the shipped copy came from.
DEBIAN_COPY = Path("/usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json")
LOW_32_BITS = 0xFFFFFFFF
FIONREAD = 0x541B
TCGETS = 0x5401
FS_IOC_GETFLAGS = 0x80086601


def small_profile() -> dict[str, Any]:
    """Shaped like Docker's default profile, with a handful of syscalls."""
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []}],
        "syscalls": [
            {
                "names": ["read", "ioctl", "write"],
                "action": "SCMP_ACT_ALLOW",
                "args": [],
                "comment": "",
                "includes": {},
                "excludes": {},
            },
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}],
                "comment": "",
                "includes": {},
                "excludes": {},
            },
        ],
    }


def ioctl_allowed(profile: dict[str, Any], request: int) -> bool:
    """Whether ``ioctl(fd, request)`` passes the profile (an allow rule matches it)."""
    for rule in profile["syscalls"]:
        if "ioctl" not in rule["names"] or rule["action"] != "SCMP_ACT_ALLOW":
            continue
        if not rule.get("args"):
            return True
        (condition,) = rule["args"]
        assert condition["op"] == "SCMP_CMP_MASKED_EQ"
        assert condition["index"] == 1
        if request & condition["value"] == condition["valueTwo"]:
            return True
    return False


def matches_any(patterns: list[tuple[int, int]], number: int) -> bool:
    return any(number & mask == value for mask, value in patterns)


# --- the patterns ------------------------------------------------------------------------------


def test_patterns_match_every_number_but_the_denied_ones_exhaustively_at_eight_bits() -> None:
    denied = frozenset({0x01, 0x0E, 0x17, 0x18, 0xFF})

    patterns = allowed_request_patterns(denied, width=8)

    assert [n for n in range(256) if not matches_any(patterns, n)] == sorted(denied)


def test_patterns_refuse_the_four_subvolume_requests_and_nothing_near_them() -> None:
    patterns = allowed_request_patterns(DENIED)
    neighbours = {d + step for d in DENIED for step in (-2, -1, 1, 2)} - DENIED
    rng = random.Random(1234)
    samples = {rng.getrandbits(32) for _ in range(20_000)} - DENIED

    assert not any(matches_any(patterns, request) for request in DENIED)
    assert all(matches_any(patterns, n) for n in neighbours | samples)
    assert all(matches_any(patterns, n) for n in (0, LOW_32_BITS, FIONREAD, TCGETS))
    assert len(patterns) < len(DENIED) * 32


def test_patterns_never_look_above_the_32_bits_the_kernel_reads() -> None:
    patterns = allowed_request_patterns(DENIED)

    assert all(mask <= LOW_32_BITS and value <= LOW_32_BITS for mask, value in patterns)


def test_patterns_need_something_to_deny_within_the_width() -> None:
    with pytest.raises(ValueError, match="nothing to deny"):
        allowed_request_patterns(frozenset())
    with pytest.raises(ValueError, match="32-bit"):
        allowed_request_patterns(frozenset({1 << 32}))


# --- the merged profile ----------------------------------------------------------------------


def test_merged_profile_denies_subvolume_ioctls_even_with_high_bits_set() -> None:
    merged = without_nested_subvolumes(small_profile())

    for request in DENIED:
        assert not ioctl_allowed(merged, request)
        assert not ioctl_allowed(merged, request | 0xFFFFFFFF_00000000)
    for request in (FIONREAD, TCGETS, FS_IOC_GETFLAGS, 0x5000940F):
        assert ioctl_allowed(merged, request)


def test_merge_keeps_every_other_rule_and_leaves_the_base_alone() -> None:
    base = small_profile()
    untouched = copy.deepcopy(base)

    merged = without_nested_subvolumes(base)

    assert base == untouched
    assert merged["defaultAction"] == base["defaultAction"]
    assert merged["archMap"] == base["archMap"]
    assert merged["syscalls"][0]["names"] == ["read", "write"]
    assert merged["syscalls"][1] == base["syscalls"][1]
    denials = [rule for rule in merged["syscalls"] if rule["action"] == "SCMP_ACT_ERRNO"]
    assert sorted(rule["args"][0]["valueTwo"] for rule in denials) == sorted(DENIED)
    assert {rule["errnoRet"] for rule in denials} == {1}


def test_merge_drops_the_allow_rule_that_named_only_ioctl() -> None:
    base = small_profile()
    base["syscalls"][0]["names"] = ["ioctl"]

    merged = without_nested_subvolumes(base)

    assert all(rule["names"] == ["ioctl"] for rule in merged["syscalls"][1:])
    assert merged["syscalls"][0]["names"] == ["personality"]


def test_dockers_own_default_profile_merges() -> None:
    base = json.loads(DOCKER_DEFAULT_PROFILE.read_text(encoding="utf-8"))

    merged = without_nested_subvolumes(base)

    names = {name for rule in base["syscalls"] for name in rule["names"]}
    assert names == {name for rule in merged["syscalls"] for name in rule["names"]}
    assert not any(ioctl_allowed(merged, request) for request in DENIED)
    assert ioctl_allowed(merged, TCGETS)


# --- the shipped copy of Docker's profile -----------------------------------------------------


NOTICE = DOCKER_DEFAULT_PROFILE.parent / "NOTICE"


def notice_field(name: str) -> str:
    """The value of a ``Name: value`` line in the NOTICE next to the shipped profile."""
    match = re.search(rf"^{re.escape(name)}:\s+(.+)$", NOTICE.read_text("utf-8"), re.MULTILINE)
    assert match is not None, f"NOTICE has no {name} line"
    return match.group(1).strip()


def pinned_debian_version() -> str:
    match = re.search(r"^\s+version (\S+) ", NOTICE.read_text("utf-8"), re.MULTILINE)
    assert match is not None, "NOTICE names no Debian package version"
    return match.group(1)


def test_the_agent_uses_the_shipped_profile_unless_told_otherwise() -> None:
    default = AgentSettings.model_fields["seccomp_base_profile"].default

    profile = load_game_profile(default)

    assert default == DOCKER_DEFAULT_PROFILE
    assert profile.source == DOCKER_DEFAULT_PROFILE


def test_the_shipped_profile_is_the_copy_its_notice_describes() -> None:
    digest = hashlib.sha256(DOCKER_DEFAULT_PROFILE.read_bytes()).hexdigest()

    assert digest == notice_field("SHA-256")
    assert pinned_debian_version() == "20.10.24+dfsg1-1+deb12u1"
    assert notice_field("Upstream").startswith("moby (Docker Engine) v20.10.24,")
    assert "Apache License" in (DOCKER_DEFAULT_PROFILE.parent / "LICENSE").read_text("utf-8")


def test_the_shipped_profile_and_its_notice_are_package_data() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["node_agent"]
    package_dir = REPO_ROOT / "node_agent"

    for shipped in sorted(DOCKER_DEFAULT_PROFILE.parent.iterdir()):
        relative = shipped.relative_to(package_dir).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


def installed_version(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    query = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
    )
    return query.stdout if query.returncode == 0 else None


def test_the_shipped_profile_equals_debians_file_of_the_pinned_version() -> None:
    pinned = pinned_debian_version()
    if installed_version("golang-github-docker-docker-dev") != pinned:
        # A cross-check only: nothing installs that package any more; the hash pins the copy.
        pytest.skip(f"golang-github-docker-docker-dev {pinned} is not installed")

    assert DOCKER_DEFAULT_PROFILE.read_bytes() == DEBIAN_COPY.read_bytes()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda p: [], "not a JSON object"),
        (lambda p: {**p, "defaultAction": None}, "no defaultAction"),
        (lambda p: {**p, "syscalls": []}, "no syscalls list"),
        (lambda p: {**p, "syscalls": [{"names": "ioctl", "action": "x"}]}, "no list of names"),
        (lambda p: {**p, "syscalls": [{"names": ["ioctl"]}]}, "has no action"),
        (lambda p: {**p, "syscalls": p["syscalls"][1:]}, "exactly one unconditional"),
        (
            lambda p: {**p, "syscalls": [*p["syscalls"], {**p["syscalls"][0], "names": ["ioctl"]}]},
            "exactly one unconditional",
        ),
        (
            lambda p: {
                **p,
                "syscalls": [{**p["syscalls"][0], "includes": {"caps": ["CAP_SYS_ADMIN"]}}],
            },
            "exactly one unconditional",
        ),
    ],
)
def test_a_profile_of_another_shape_is_refused(change: Any, problem: str) -> None:
    with pytest.raises(SeccompProfileError, match=problem):
        without_nested_subvolumes(change(small_profile()))


def test_loading_names_the_file_that_is_missing_or_broken(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")

    with pytest.raises(SeccompProfileError, match=r"cannot read .*missing\.json"):
        load_game_profile(missing)
    with pytest.raises(SeccompProfileError, match=r"broken\.json is not JSON"):
        load_game_profile(broken)


def test_loaded_profile_is_the_merged_json_in_one_security_option(tmp_path: Path) -> None:
    base = tmp_path / "default.json"
    base.write_text(json.dumps(small_profile()), encoding="utf-8")

    profile = load_game_profile(base)

    assert json.loads(profile.text) == without_denied_syscalls(
        without_nested_subvolumes(small_profile())
    )
    assert profile.security_opt == f"seccomp={profile.text}"
    assert "\n" not in profile.text


def test_the_shipped_profile_loses_io_uring_and_nothing_else() -> None:
    base = json.loads(DOCKER_DEFAULT_PROFILE.read_text("utf-8"))
    merged = json.loads(load_game_profile(DOCKER_DEFAULT_PROFILE).text)

    def allowed(profile: dict[str, Any]) -> set[str]:
        return {
            name
            for rule in profile["syscalls"]
            if rule["action"] == "SCMP_ACT_ALLOW"
            for name in rule["names"]
        }

    refusing = [rule for rule in merged["syscalls"] if set(rule["names"]) == DENIED_SYSCALLS]
    assert allowed(base) >= DENIED_SYSCALLS
    assert allowed(base) - allowed(merged) == DENIED_SYSCALLS
    assert [(rule["action"], rule["errnoRet"]) for rule in refusing] == [("SCMP_ACT_ERRNO", 1)]


# --- what the containers get -----------------------------------------------------------------


def test_game_and_install_containers_get_the_profile_after_no_new_privileges() -> None:
    profile = SeccompProfile(text='{"defaultAction":"SCMP_ACT_ERRNO"}', source=Path("/x"))
    placement = ContainerPlacement("stellar-test", Path("/srv/volume"))
    install = InstallSpec(image="stellar-test/busybox:latest", script="true", needs_root=True)
    spec = ServerSpec.model_validate(server_spec())

    game = game_container_config(spec, placement, profile)
    installer = install_container_config(spec, install, placement, profile)
    default = game_container_config(spec, placement)

    expected = ["no-new-privileges:true", 'seccomp={"defaultAction":"SCMP_ACT_ERRNO"}']
    assert game["HostConfig"]["SecurityOpt"] == expected
    assert installer["HostConfig"]["SecurityOpt"] == expected
    assert default["HostConfig"]["SecurityOpt"] == ["no-new-privileges:true"]
