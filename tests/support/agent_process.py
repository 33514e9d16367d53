"""Run a real ``stellar-agent`` process for integration tests, and sign tokens for it.

:class:`AgentProcess` writes a TOML config (free port, data directory under a test's tmp
path, trusted keys), starts ``python -m node_agent serve`` with stdout and stderr captured to
a file, and waits for ``/healthz``; with ``fake_clock`` it runs under libfaketime, its wall
clock shifted by :meth:`AgentProcess.shift_clock` while it runs. :class:`SigningKey` and
:func:`mint_for` build command tokens by hand (base64url header and payload, signature over
them), so tests can forge anything an attacker could: other algorithms, odd headers, missing
or ill-typed claims.
"""

from __future__ import annotations

import base64
import enum
import glob
import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.command_keys import key_id, public_key_text
from shared.protocol import ALGORITHM, TOKEN_TYPE, body_hash, node_audience
from tests.support.ports import free_port as free_port
from tests.support.service_process import ServiceProcess

SYSTEM_PATH: Final = "/api/v1/system"
SYSTEM_ACTION: Final = "node.system"
DEFAULT_ISSUER: Final = "stellar-cp"
START_TIMEOUT_SECONDS: Final = 15.0
# Debian's libfaketime (package faketime; deploy/dev/ensure-services.sh test-tools).
FAKETIME_LIBRARY_GLOB: Final = "/usr/lib/*/faketime/libfaketime.so.1"


class _Drop(enum.Enum):
    DROP = "drop"


DROP: Final = _Drop.DROP
"""Pass as a claim or header override to leave that member out of the token."""


def b64url(data: bytes) -> str:
    """base64url without padding, as in a JWT."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json_segment(value: Mapping[str, object]) -> str:
    return b64url(json.dumps(dict(value), separators=(",", ":")).encode("utf-8"))


def signing_input(header: Mapping[str, object], payload: Mapping[str, object]) -> bytes:
    """The ``header.payload`` part of a JWT, which its signature covers."""
    return f"{_json_segment(header)}.{_json_segment(payload)}".encode("ascii")


def assemble(signed_part: bytes, signature: bytes) -> str:
    """Join ``header.payload`` and a (possibly forged, possibly empty) signature."""
    return f"{signed_part.decode('ascii')}.{b64url(signature)}"


def token_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Decode a compact JWT without verifying it: header, payload, signature segment."""
    header, payload, signature = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload)), signature


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 key pair with its ``kid`` and the public key text an agent config lists."""

    private_key: Ed25519PrivateKey
    kid: str
    public_text: str

    @classmethod
    def generate(cls) -> SigningKey:
        private_key = Ed25519PrivateKey.generate()
        public_key = private_key.public_key()
        return cls(private_key, key_id(public_key), public_key_text(public_key))

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    def sign_token(self, header: Mapping[str, object], payload: Mapping[str, object]) -> str:
        """An EdDSA signature over exactly this header and payload, whatever they say."""
        signed = signing_input(header, payload)
        return assemble(signed, self.sign(signed))


@dataclass
class AgentProcess(ServiceProcess):
    """One ``stellar-agent serve`` subprocess with its own config, port, data dir and log."""

    name = "agent"

    root: Path
    trusted_keys: dict[str, str]
    issuer: str | None = None
    node_id: uuid.UUID = field(default_factory=uuid.uuid4)
    port: int = 0
    # More top-level settings (str, int, float or bool). Plain directories unless a test asks
    # for a kernel-enforced disk backend: those mount filesystems the test must clean up.
    settings: dict[str, object] = field(default_factory=lambda: {"storage_backend": "directory"})
    # Run under libfaketime, its wall clock offset by the file :meth:`shift_clock` writes
    # (read again on every clock read; the monotonic clock is left alone).
    fake_clock: bool = False
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def config_path(self) -> Path:
        return self.root / "agent.toml"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "agent.log"

    @property
    def clock_file(self) -> Path:
        return self.root / "faketime.rc"

    def shift_clock(self, seconds: int) -> None:
        """Set the agent's wall clock ``seconds`` off the real one (0: right), at once."""
        if not self.fake_clock:
            raise RuntimeError("the agent does not run under a fake clock")
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.clock_file.with_suffix(".tmp")
        temporary.write_text(f"{seconds:+d}s\n", encoding="ascii")
        # Replaced whole: the agent never reads a half-written offset.
        temporary.replace(self.clock_file)

    def _clock_environment(self) -> dict[str, str]:
        if not self.fake_clock:
            return {}
        libraries = sorted(glob.glob(FAKETIME_LIBRARY_GLOB))
        if not libraries:
            raise RuntimeError("libfaketime is not installed (apt-get install faketime)")
        if not self.clock_file.exists():
            self.shift_clock(0)
        return {
            "LD_PRELOAD": libraries[0],
            "FAKETIME_TIMESTAMP_FILE": str(self.clock_file),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("the agent has no port yet: call write_config() or start()")
        return f"http://127.0.0.1:{self.port}"

    @property
    def expected_issuer(self) -> str:
        return self.issuer if self.issuer is not None else DEFAULT_ISSUER

    @property
    def audience(self) -> str:
        return node_audience(self.node_id)

    def write_config(self) -> Path:
        """Write the TOML config with a port that was free a moment ago."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        lines = [
            f"node_id = {json.dumps(str(self.node_id))}",
            f"listen_host = {json.dumps('127.0.0.1')}",
            f"listen_port = {self.port}",
            f"data_dir = {json.dumps(str(self.data_dir))}",
        ]
        if self.issuer is not None:
            lines.append(f"issuer = {json.dumps(self.issuer)}")
        lines.extend(f"{name} = {_toml_value(value)}" for name, value in self.settings.items())
        lines.append("")
        lines.append("[trusted_keys]")
        lines.extend(
            f"{json.dumps(kid)} = {json.dumps(text)}" for kid, text in self.trusted_keys.items()
        )
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self.config_path

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Launch the agent (same config and data dir on a restart) and wait for /healthz."""
        if self.running:
            raise RuntimeError("the agent is already running")
        if not self.config_path.exists():
            self.write_config()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self._clock_environment()}
        self.launch(["node_agent", "serve", "--config", str(self.config_path)], env, self.root)
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.kill()
            raise

    def log_events(self) -> list[dict[str, Any]]:
        """The JSON log lines (anything else the agent printed is skipped)."""
        events: list[dict[str, Any]] = []
        for line in self.log_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


AgentFactory = Callable[[], AgentProcess]
"""Starts one more agent for a test (see the ``agent_factory`` fixture)."""


def system_claims(
    agent: AgentProcess,
    *,
    method: str = "GET",
    path: str = SYSTEM_PATH,
    body: bytes = b"",
    now: float | None = None,
    lifetime: int = 30,
) -> dict[str, object]:
    """The claims of a genuine ``node.system`` command for ``agent``."""
    issued = int(time.time() if now is None else now)
    return {
        "iss": agent.expected_issuer,
        "aud": agent.audience,
        "sub": "node",
        "act": SYSTEM_ACTION,
        "htm": method,
        "htu": path,
        "bdh": body_hash(body),
        "usr": "user-1",
        "iat": issued,
        "exp": issued + lifetime,
        "jti": secrets.token_urlsafe(18),
    }


def mint_for(
    agent: AgentProcess,
    key: SigningKey,
    *,
    header: Mapping[str, object] | None = None,
    method: str = "GET",
    path: str = SYSTEM_PATH,
    body: bytes = b"",
    now: float | None = None,
    lifetime: int = 30,
    claims: Mapping[str, object] | None = None,
    **overrides: object,
) -> str:
    """A token for ``GET /api/v1/system`` on ``agent``, EdDSA-signed by ``key``.

    ``overrides`` (or ``claims``, for names chosen at run time) replace claims and ``header``
    replaces header members; ``DROP`` removes one. The result is signed as is, so it may
    break any rule of the contract.
    """
    payload = system_claims(agent, method=method, path=path, body=body, now=now, lifetime=lifetime)
    payload = _apply(_apply(payload, claims or {}), overrides)
    head: dict[str, object] = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": key.kid}
    return key.sign_token(_apply(head, header or {}), payload)


def _apply(base: dict[str, object], changes: Mapping[str, object]) -> dict[str, object]:
    result = dict(base)
    for name, value in changes.items():
        if value is DROP:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def _toml_value(value: object) -> str:
    """A setting as TOML: JSON for scalars and lists, an inline table for a dict."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)
