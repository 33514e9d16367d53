"""Start-up validation: each missing or weak setting is named, and nothing listens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.command_keys import write_private_key
from tests.support.ports import free_port

GOOD_SECRET = "q8Vw3nZr7TxK2mPb5LcY9dHs4JfG6aNe1uRiOo0"
GOOD_KEY = "k1:" + "3f9a1c7e5b2d8046" * 4


def serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("STELLAR_") and k != "DATABASE_URL"
    }
    return subprocess.run(
        [sys.executable, "-m", "control_plane", "serve"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def signing_key(tmp_path: Path) -> Path:
    path = tmp_path / "signing.key"
    write_private_key(path, Ed25519PrivateKey.generate())
    return path


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ["STELLAR_DATABASE_URL: missing", "STELLAR_AUTH_SECRET: missing"]),
        ({"STELLAR_AUTH_SECRET": GOOD_SECRET}, ["STELLAR_DATABASE_URL: missing"]),
        ({"DATABASE_URL": "sqlite:///x.db"}, ["STELLAR_AUTH_SECRET: missing"]),
        (
            {"DATABASE_URL": "sqlite:///x.db", "STELLAR_AUTH_SECRET": "short"},
            ["STELLAR_AUTH_SECRET: too short"],
        ),
        (
            {
                "DATABASE_URL": "sqlite:///x.db",
                "STELLAR_AUTH_SECRET": "changeme-changeme-changeme-changeme!",
            },
            ["STELLAR_AUTH_SECRET: looks like a placeholder"],
        ),
        (
            {"DATABASE_URL": "sqlite:///x.db", "STELLAR_AUTH_SECRET": "ab" * 20},
            ["STELLAR_AUTH_SECRET: too little variety"],
        ),
        (
            {"DATABASE_URL": "mysql://x", "STELLAR_AUTH_SECRET": GOOD_SECRET},
            ["STELLAR_DATABASE_URL: only sqlite:// and postgresql://"],
        ),
        (
            {
                "DATABASE_URL": "sqlite:///x.db",
                "STELLAR_AUTH_SECRET": GOOD_SECRET,
                "STELLAR_ENV": "production",
            },
            [
                "STELLAR_PUBLIC_URL: required in production",
                "STELLAR_ENCRYPTION_KEYS: required in production",
                "STELLAR_SIGNING_KEY_FILE: required in production",
            ],
        ),
        (
            {
                "DATABASE_URL": "sqlite:///x.db",
                "STELLAR_AUTH_SECRET": GOOD_SECRET,
                "STELLAR_ENV": "production",
                "STELLAR_PUBLIC_URL": "http://panel.example.com",
                "STELLAR_ENCRYPTION_KEYS": "k1:" + "00" * 32,
                "STELLAR_SIGNING_KEY_FILE": "/nonexistent/key",
            },
            [
                "STELLAR_PUBLIC_URL: must be https:// in production",
                "STELLAR_ENCRYPTION_KEYS: encryption key 'k1' is not random",
                "STELLAR_SIGNING_KEY_FILE: cannot read /nonexistent/key",
            ],
        ),
        (
            {
                "DATABASE_URL": "sqlite:///x.db",
                "STELLAR_AUTH_SECRET": GOOD_SECRET,
                "STELLAR_PORT": "eighty",
            },
            ["STELLAR_PORT: Input should be a valid integer"],
        ),
    ],
)
def test_control_plane_refuses_to_start_and_names_every_problem(
    env: dict[str, str], expected: list[str]
) -> None:
    port = free_port()
    result = serve({**env, "STELLAR_PORT": env.get("STELLAR_PORT", str(port))})
    assert result.returncode == 2
    assert "the configuration is not usable" in result.stderr
    for message in expected:
        assert message in result.stderr
    assert GOOD_SECRET not in result.stderr + result.stdout
    assert port_is_closed(port)


def test_signing_key_readable_by_others_is_refused(signing_key: Path) -> None:
    signing_key.chmod(0o644)
    result = serve(
        {
            "DATABASE_URL": "sqlite:///x.db",
            "STELLAR_AUTH_SECRET": GOOD_SECRET,
            "STELLAR_SIGNING_KEY_FILE": str(signing_key),
        }
    )
    assert result.returncode == 2
    assert "must not be readable by group or others" in result.stderr


def test_unmigrated_database_is_refused_before_listening(tmp_path: Path) -> None:
    port = free_port()
    result = serve(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
            "STELLAR_AUTH_SECRET": GOOD_SECRET,
            "STELLAR_PORT": str(port),
        }
    )
    assert result.returncode == 2
    assert "run `stellar-cp migrate`" in result.stdout
    assert port_is_closed(port)


def test_production_settings_that_are_complete_pass_validation(signing_key: Path) -> None:
    from control_plane.settings import load_settings

    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://u:p@db/stellar",
            "STELLAR_AUTH_SECRET": GOOD_SECRET,
            "STELLAR_ENV": "production",
            "STELLAR_PUBLIC_URL": "https://panel.example.com/",
            "STELLAR_ENCRYPTION_KEYS": GOOD_KEY,
            "STELLAR_SIGNING_KEY_FILE": str(signing_key),
        }
    )
    assert settings.is_production
    assert settings.public_url == "https://panel.example.com"
    assert list(settings.encryption_key_map) == ["k1"]


def agent_check(config: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "agent.toml"
    path.write_text(config)
    return subprocess.run(
        [sys.executable, "-m", "node_agent", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "",
            ["node_id: Field required", "data_dir: Field required", "trusted_keys: Field required"],
        ),
        ("node_id = 'x'\ndata_dir = '/tmp/x'\n[trusted_keys]\n", ["node_id:", "trusted_keys:"]),
        (
            "node_id = '0b5c6f9e-2b1a-4c53-9d7e-3a2f1e0d9c8b'\ndata_dir = '/tmp/x'\n"
            "[trusted_keys]\n'../etc' = 'AAAA'\n",
            [
                "must be 1-64 characters",
            ],
        ),
        (
            "node_id = '0b5c6f9e-2b1a-4c53-9d7e-3a2f1e0d9c8b'\ndata_dir = '/tmp/x'\n"
            "listen_port = 70000\nsurprise = 1\n[trusted_keys]\nk = 'AAAA'\n",
            ["listen_port:", "surprise: Extra inputs are not permitted", "32 bytes"],
        ),
        ("node_id = [", ["is not valid TOML"]),
    ],
)
def test_agent_refuses_a_bad_config_and_names_every_problem(
    config: str, expected: list[str], tmp_path: Path
) -> None:
    result = agent_check(config, tmp_path)
    assert result.returncode == 2
    for message in expected:
        assert message in result.stderr


def test_agent_refuses_a_missing_config(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "node_agent", "serve", "--config", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def stellar_cp(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``stellar-cp ARGS`` with only ``env``'s STELLAR_ settings."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("STELLAR_") and k != "DATABASE_URL"
    }
    return subprocess.run(
        [sys.executable, "-m", "control_plane", *args],
        env={**base, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def production_env_file(database_url: str) -> dict[str, str]:
    """What deploy/README.md §1 puts in /etc/stellarstack/control-plane.env: no signing key."""
    return {
        "STELLAR_ENV": "production",
        "STELLAR_DATABASE_URL": database_url,
        "STELLAR_AUTH_SECRET": GOOD_SECRET,
        "STELLAR_ENCRYPTION_KEYS": GOOD_KEY,
        "STELLAR_PUBLIC_URL": "https://panel.example.com",
        "STELLAR_TRUSTED_PROXIES": "127.0.0.1",
        "STELLAR_BCRYPT_COST": "10",
    }


async def test_commands_that_sign_nothing_run_in_production_without_the_signing_key(
    database_url: str,
) -> None:
    env = production_env_file(database_url)
    migrated = stellar_cp("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "database is at revision" in migrated.stdout
    created = stellar_cp(
        "user", "create", "--email", "admin@example.com", "--admin", "--password-stdin",
        env=env, stdin="a long enough password\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    verified = stellar_cp("audit", "verify", env=env)
    assert verified.returncode == 0, verified.stderr
    assert "audit trail intact" in verified.stdout
    listed = stellar_cp("node", "list", env=env)
    assert listed.returncode == 0, listed.stderr


async def test_serving_and_commanding_nodes_in_production_still_need_the_signing_key(
    database_url: str,
) -> None:
    env = production_env_file(database_url)
    assert stellar_cp("migrate", env=env).returncode == 0
    port = free_port()
    for command in (
        ["serve"],
        ["node", "add", "--name", "node1", "--url", "https://203.0.113.10:8443"],
        ["node", "ping", "node1"],
    ):
        result = stellar_cp(*command, env={**env, "STELLAR_PORT": str(port)})
        assert result.returncode == 2, (command, result.stderr)
        assert "STELLAR_SIGNING_KEY_FILE: required in production" in result.stderr
    assert port_is_closed(port)


def test_a_command_without_the_signing_key_still_names_every_other_problem() -> None:
    env = {
        **production_env_file("sqlite:///unused.db"),
        "STELLAR_PUBLIC_URL": "http://panel.example.com",
        "STELLAR_ENCRYPTION_KEYS": "k1:" + "00" * 32,
    }
    result = stellar_cp("migrate", env=env)
    assert result.returncode == 2
    assert "STELLAR_PUBLIC_URL: must be https:// in production" in result.stderr
    assert "STELLAR_ENCRYPTION_KEYS: encryption key 'k1' is not random" in result.stderr
    assert "STELLAR_SIGNING_KEY_FILE" not in result.stderr
