"""Which registry an image is pulled from, as Docker reads the reference, and the setting."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from node_agent.docker.registries import registry_of
from node_agent.settings import AgentSettings
from shared.command_keys import public_key_text
from tests.support.agent_process import SigningKey


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("stellar-test/fake-game:latest", "docker.io"),
        ("eclipse-temurin:21", "docker.io"),
        ("ghcr.io/pterodactyl/yolks:java_21", "ghcr.io"),
        ("index.docker.io/library/alpine", "docker.io"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000"),
        ("169.254.169.254/latest:meta", "169.254.169.254"),
        ("localhost/x", "localhost"),
        ("Registry.Example.com:443/a/b@sha256:" + "0" * 64, "registry.example.com:443"),
        # A first component with neither "." nor ":" is a Docker Hub namespace.
        ("metadata/x", "docker.io"),
    ],
)
def test_the_registry_of_an_image_is_docker_s_reading_of_it(image: str, registry: str) -> None:
    assert registry_of(image) == registry


def _settings(tmp_path: Path, **changes: object) -> AgentSettings:
    key = SigningKey.generate()
    return AgentSettings.model_validate(
        {
            "node_id": uuid.uuid4(),
            "data_dir": tmp_path,
            "trusted_keys": {key.kid: public_key_text(key.public_key)},
        }
        | changes
    )


def test_image_registries_are_normalised_and_a_url_is_refused(tmp_path: Path) -> None:
    assert "ghcr.io" in _settings(tmp_path).image_registries
    listed = _settings(tmp_path, image_registries=["Registry.Example.com:5000", "index.docker.io"])
    assert listed.image_registries == ("registry.example.com:5000", "docker.io")
    with pytest.raises(ValidationError) as refused:
        _settings(tmp_path, image_registries=["https://registry.example.com/v2", "a:b"])
    message = str(refused.value)
    assert "'https://registry.example.com/v2' is not a registry" in message
    assert "'a:b' is not a registry" in message
