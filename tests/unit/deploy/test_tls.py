"""The agent's TLS identity, its settings rules, and the control plane's pin helpers."""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import ValidationError

from control_plane.nodes.tls import (
    CertificateMismatch,
    InsecureNodeUrl,
    NodeNotPinned,
    mismatch_error,
    node_ssl,
    normalize_fingerprint,
)
from node_agent.__main__ import main as agent_main
from node_agent.settings import AgentSettings
from node_agent.tls import generate_identity, server_context
from shared.command_keys import public_key_text

PUBLIC_KEY = public_key_text(Ed25519PrivateKey.generate().public_key())


def settings(tmp_path: Path, **changes: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "node_id": uuid.uuid4(),
        "data_dir": tmp_path,
        "trusted_keys": {"cp-key": PUBLIC_KEY},
        "storage_backend": "directory",
    }
    values.update(changes)
    return AgentSettings.model_validate(values)


def test_generated_identity_is_p256_with_the_host_as_san_and_a_private_key(tmp_path: Path) -> None:
    identity = generate_identity("198.18.0.3", tmp_path / "tls")

    certificate = x509.load_pem_x509_certificate(identity.cert_file.read_bytes())
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("198.18.0.3")]
    assert identity.key_file.stat().st_mode & 0o777 == 0o600
    assert identity.cert_file.stat().st_mode & 0o777 == 0o644
    digest = hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest().upper()
    assert identity.fingerprint.replace(":", "") == digest
    assert len(identity.fingerprint) == 95
    server_context(identity.cert_file, identity.key_file)


def test_a_dns_name_becomes_a_dns_san(tmp_path: Path) -> None:
    identity = generate_identity("node1.example.com", tmp_path)
    certificate = x509.load_pem_x509_certificate(identity.cert_file.read_bytes())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node1.example.com"]


def test_an_existing_identity_is_kept_unless_replaced(tmp_path: Path) -> None:
    first = generate_identity("127.0.0.1", tmp_path)
    assert generate_identity("127.0.0.1", tmp_path).fingerprint == first.fingerprint
    assert generate_identity("127.0.0.1", tmp_path, replace=True).fingerprint != first.fingerprint


def test_tls_generate_prints_the_fingerprint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert agent_main(["tls", "generate", "--host", "127.0.0.1", "--out-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    identity = generate_identity("127.0.0.1", tmp_path)
    assert f"fingerprint: {identity.fingerprint}" in printed


# --- settings ------------------------------------------------------------------------------


def test_plain_http_off_loopback_is_refused_with_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="must serve HTTPS: set tls_cert_file"):
        settings(tmp_path, listen_host="198.18.0.3")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_plain_http_on_loopback_is_allowed(tmp_path: Path, host: str) -> None:
    assert not settings(tmp_path, listen_host=host).serves_tls


def test_tls_files_go_together_and_the_key_must_be_private(tmp_path: Path) -> None:
    identity = generate_identity("198.18.0.3", tmp_path / "tls")
    with pytest.raises(ValidationError, match="set both or neither"):
        settings(tmp_path, listen_host="198.18.0.3", tls_cert_file=identity.cert_file)
    identity.key_file.chmod(0o640)
    with pytest.raises(ValidationError, match="must not be readable by group or others"):
        settings(
            tmp_path,
            listen_host="198.18.0.3",
            tls_cert_file=identity.cert_file,
            tls_key_file=identity.key_file,
        )
    identity.key_file.chmod(0o600)
    assert settings(
        tmp_path,
        environment="production",
        storage_backend="btrfs",
        listen_host="198.18.0.3",
        tls_cert_file=identity.cert_file,
        tls_key_file=identity.key_file,
    ).serves_tls


def test_missing_tls_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"tls_cert_file .*nope\.crt cannot be read"):
        settings(
            tmp_path,
            listen_host="198.18.0.3",
            tls_cert_file=tmp_path / "nope.crt",
            tls_key_file=tmp_path / "nope.key",
        )


# --- the control plane's pin ---------------------------------------------------------------


def test_fingerprints_normalize_to_upper_colon_hex() -> None:
    plain = "ab" * 32
    assert normalize_fingerprint(plain) == ":".join(["AB"] * 32)
    assert normalize_fingerprint(":".join(["ab"] * 32)) == ":".join(["AB"] * 32)
    for wrong in ("AB:CD", "zz" * 32, "ab" * 20):
        with pytest.raises(ValueError, match="SHA-256 as 32 hex pairs"):
            normalize_fingerprint(wrong)


def test_https_node_needs_a_pin_and_gets_aiohttps_fingerprint_check() -> None:
    with pytest.raises(NodeNotPinned):
        node_ssl("n1", "https://198.18.0.3:8443", None)
    pin = node_ssl("n1", "https://198.18.0.3:8443", "AB" * 32)
    assert isinstance(pin, aiohttp.Fingerprint)
    assert pin.fingerprint == bytes.fromhex("AB" * 32)


def test_plain_http_off_loopback_can_be_refused() -> None:
    assert node_ssl("n1", "http://127.0.0.1:8080", None, allow_plain_http=False) is True
    assert node_ssl("n1", "http://198.18.0.3:8080", None) is True
    with pytest.raises(InsecureNodeUrl, match="plain http"):
        node_ssl("n1", "http://198.18.0.3:8080", None, allow_plain_http=False)


def test_a_mismatch_becomes_the_clear_domain_error() -> None:
    err = aiohttp.ServerFingerprintMismatch(b"\x01" * 32, b"\x02" * 32, "198.18.0.3", 8443)
    error = mismatch_error("n1", err)
    assert isinstance(error, CertificateMismatch)
    assert error.status == 502
    assert "node 'n1' presented a certificate that does not match its pinned fingerprint" in str(
        error
    )
    assert error.got == ":".join(["02"] * 32)
