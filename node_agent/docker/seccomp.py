"""The seccomp profile of game and install containers: Docker's default, minus nested
subvolumes and io_uring.

A game without capabilities may still create a btrfs subvolume (or snapshot) inside its own
volume, and a new subvolume gets a qgroup with no limit: one server could fill the pool. This
profile is Docker's default profile (:data:`DOCKER_DEFAULT_PROFILE`, the copy shipped in
``data/``, or the file named by setting ``seccomp_base_profile``) in which ``ioctl`` is allowed
for every request except the four that create subvolumes.

``io_uring_setup``, ``io_uring_enter`` and ``io_uring_register`` are taken out of the allow
list as Docker 25's default profile does (the copy shipped here is older and allows them, and so
does the engine Debian 12 packages): io_uring is the source of a long run of kernel privilege
escalations, and no game needs it (a program that tries it gets EPERM, as under Docker 25).

Why the rules look the way they do (both checked against runc 1.1 and libseccomp 2.5):

- libseccomp lets an unconditional rule win over any conditional rule for the same syscall,
  so a deny rule next to the default profile's plain ``ioctl`` allow would be ignored.
  ``ioctl`` is taken out of that rule and allowed again by :func:`allowed_request_patterns`:
  masked-equality patterns that together match every request but the denied ones.
- The kernel reads the request as a 32-bit ``unsigned int``; every pattern masks the low 32
  bits only, so setting high bits cannot slip a denied request past the filter.
- The denied requests then meet the profile's default action, ``SCMP_ACT_ERRNO`` (EPERM). The
  explicit ``ERRNO(EPERM)`` rules added as well say so in the profile; runc skips a rule whose
  action is the default action, and they keep the answer EPERM under any other default.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

# linux/btrfs.h: _IOW(0x94, n, struct btrfs_ioctl_vol_args[_v2]).
DENIED_BTRFS_IOCTLS: Final[Mapping[str, int]] = {
    "BTRFS_IOC_SNAP_CREATE": 0x50009401,
    "BTRFS_IOC_SUBVOL_CREATE": 0x5000940E,
    "BTRFS_IOC_SNAP_CREATE_V2": 0x50009417,
    "BTRFS_IOC_SUBVOL_CREATE_V2": 0x50009418,
}
EPERM: Final = 1
REQUEST_BITS: Final = 32
REQUEST_ARGUMENT: Final = 1  # ioctl(fd, request, argp)
RULE_COMMENT: Final = "stellarstack: no nested btrfs subvolumes (their qgroup has no limit)"
# Named by no allow rule and refused (EPERM) by a rule of their own, as in Docker 25.
DENIED_SYSCALLS: Final = frozenset({"io_uring_setup", "io_uring_enter", "io_uring_register"})
# moby v20.10.24's profiles/seccomp/default.json, unmodified; data/NOTICE says where from.
DOCKER_DEFAULT_PROFILE: Final = Path(__file__).resolve().parent / "data" / "seccomp-default.json"


class SeccompProfileError(Exception):
    """The base profile is missing, not JSON, or not shaped like Docker's default profile."""


def allowed_request_patterns(
    denied: frozenset[int], width: int = REQUEST_BITS
) -> list[tuple[int, int]]:
    """``(mask, value)`` pairs: a request is allowed iff ``request & mask == value`` for one.

    Exactly the ``width``-bit numbers not in ``denied`` match (bits above ``width`` are never
    looked at). Built by splitting on the highest bit first: a branch that holds no denied
    number becomes one pattern, so the list stays short (under ``len(denied) * width``).
    """
    if not denied:
        raise ValueError("nothing to deny: the plain allow rule is the right one")
    if any(not 0 <= number < 1 << width for number in denied):
        raise ValueError(f"denied requests must be {width}-bit numbers")

    def cover(prefix: int, fixed_bits: int, left: list[int]) -> Iterator[tuple[int, int]]:
        if not left:
            mask = ((1 << fixed_bits) - 1) << (width - fixed_bits)
            yield mask, prefix
            return
        if fixed_bits == width:
            return  # exactly a denied number
        bit = width - 1 - fixed_bits
        for value in (0, 1):
            branch = [number for number in left if (number >> bit) & 1 == value]
            yield from cover(prefix | value << bit, fixed_bits + 1, branch)

    return list(cover(0, 0, sorted(denied)))


def _check_shape(profile: object) -> dict[str, Any]:
    if not isinstance(profile, dict):
        raise SeccompProfileError("the profile is not a JSON object")
    if not isinstance(profile.get("defaultAction"), str):
        raise SeccompProfileError("the profile has no defaultAction")
    rules = profile.get("syscalls")
    if not isinstance(rules, list) or not rules:
        raise SeccompProfileError("the profile has no syscalls list")
    for rule in rules:
        if not isinstance(rule, dict) or not isinstance(rule.get("action"), str):
            raise SeccompProfileError("a syscalls entry has no action")
        names = rule.get("names")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise SeccompProfileError("a syscalls entry has no list of names")
    return profile


def _is_plain_allow(rule: Mapping[str, Any]) -> bool:
    return (
        rule["action"] == "SCMP_ACT_ALLOW"
        and not rule.get("args")
        and not rule.get("includes")
        and not rule.get("excludes")
    )


def _ioctl_rule(action: str, mask: int, value: int) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "names": ["ioctl"],
        "action": action,
        "args": [
            {
                "index": REQUEST_ARGUMENT,
                "value": mask,
                "valueTwo": value,
                "op": "SCMP_CMP_MASKED_EQ",
            }
        ],
        "comment": RULE_COMMENT,
        "includes": {},
        "excludes": {},
    }
    if action == "SCMP_ACT_ERRNO":
        rule["errnoRet"] = EPERM
    return rule


def without_denied_syscalls(profile: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``profile`` in which no rule names a syscall of :data:`DENIED_SYSCALLS` (a
    rule left with no name is dropped) but one that answers them EPERM (as the default action
    of Docker's profile does; said explicitly so that it holds under any other default)."""
    profile = copy.deepcopy(profile)
    rules: list[dict[str, Any]] = []
    for rule in profile["syscalls"]:
        names = [name for name in rule["names"] if name not in DENIED_SYSCALLS]
        if names:
            rules.append({**rule, "names": names})
    rules.append(
        {
            "names": sorted(DENIED_SYSCALLS),
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": EPERM,
            "comment": "stellarstack: no io_uring (as Docker 25's default profile)",
            "includes": {},
            "excludes": {},
        }
    )
    profile["syscalls"] = rules
    return profile


def without_nested_subvolumes(base: object) -> dict[str, Any]:
    """A copy of the profile ``base`` in which ``ioctl`` cannot create a btrfs subvolume.

    ``base`` must allow ``ioctl`` in exactly one plain rule (no argument, capability or
    architecture condition), as Docker's default profile does; anything else is refused.
    """
    profile = copy.deepcopy(_check_shape(base))
    rules: list[dict[str, Any]] = profile["syscalls"]
    naming_ioctl = [rule for rule in rules if "ioctl" in rule["names"]]
    if len(naming_ioctl) != 1 or not _is_plain_allow(naming_ioctl[0]):
        raise SeccompProfileError(
            "the profile does not allow ioctl in exactly one unconditional rule, unlike "
            "Docker's default profile"
        )
    plain_allow = naming_ioctl[0]
    plain_allow["names"] = [name for name in plain_allow["names"] if name != "ioctl"]
    if not plain_allow["names"]:
        rules.remove(plain_allow)
    denied = frozenset(DENIED_BTRFS_IOCTLS.values())
    rules.extend(
        _ioctl_rule("SCMP_ACT_ALLOW", mask, value)
        for mask, value in allowed_request_patterns(denied)
    )
    full_mask = (1 << REQUEST_BITS) - 1
    rules.extend(_ioctl_rule("SCMP_ACT_ERRNO", full_mask, request) for request in sorted(denied))
    return profile


@dataclass(frozen=True)
class SeccompProfile:
    """A whole seccomp profile as the JSON text Docker takes in ``SecurityOpt``."""

    text: str
    source: Path

    @property
    def security_opt(self) -> str:
        """The ``SecurityOpt`` entry that applies this profile to a container."""
        return f"seccomp={self.text}"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class GameSeccomp:
    """What the agent applies to game and install containers: the profile, or Docker's default."""

    profile: SeccompProfile | None
    problem: str | None = None

    @property
    def blocks_nested_subvolumes(self) -> bool:
        """Whether a game is kept from creating a subvolume (no profile: Docker's default)."""
        return self.profile is not None


def load_game_profile(base_path: Path) -> SeccompProfile:
    """Read Docker's default profile at ``base_path``, add the subvolume rules and take out
    io_uring (blocking I/O).

    Raises SeccompProfileError if the file cannot be read or is not the expected shape.
    """
    try:
        base = json.loads(base_path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SeccompProfileError(f"cannot read {base_path}: {err.strerror or err}") from err
    except ValueError as err:
        raise SeccompProfileError(f"{base_path} is not JSON: {err}") from err
    try:
        merged = without_denied_syscalls(without_nested_subvolumes(base))
    except SeccompProfileError as err:
        raise SeccompProfileError(f"{base_path}: {err}") from err
    return SeccompProfile(json.dumps(merged, separators=(",", ":")), base_path)
