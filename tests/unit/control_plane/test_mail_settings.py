"""Mail settings are checked at start, with every other problem, in one report."""

from __future__ import annotations

import pytest

from control_plane.mail.templates import render
from control_plane.settings import ConfigError, load_settings

BASE = {
    "STELLAR_DATABASE_URL": "sqlite:///tmp/x.db",
    "STELLAR_AUTH_SECRET": "k3Jd9QmX2vLp7RtN4wYb8ZcF6hGs1aEu0iOy5TnM",
}


def _problems(**environment: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_settings(environment)
    return raised.value.problems


def test_every_mail_problem_is_reported_with_the_others() -> None:
    problems = _problems(
        STELLAR_ENV="production",
        STELLAR_AUTH_SECRET="changeme",
        STELLAR_SMTP_HOST="smtp.example.org",
        STELLAR_SMTP_SECURITY="none",
        STELLAR_SMTP_USERNAME="panel",
        STELLAR_SMTP_PORT="0",
    )
    text = "\n".join(problems)
    for expected in (
        "STELLAR_MAIL_FROM: required when STELLAR_SMTP_HOST is set",
        "STELLAR_SMTP_USERNAME and STELLAR_SMTP_PASSWORD: set both or neither",
        "STELLAR_SMTP_SECURITY: 'none' sends mail",
        "STELLAR_SMTP_PORT",
        "STELLAR_AUTH_SECRET",
        "STELLAR_DATABASE_URL",
    ):
        assert expected in text, text


def test_verification_required_without_smtp_is_refused() -> None:
    problems = _problems(**BASE, STELLAR_REQUIRE_EMAIL_VERIFICATION="true")
    assert problems == [
        "STELLAR_REQUIRE_EMAIL_VERIFICATION: needs mail; set STELLAR_SMTP_HOST and "
        "STELLAR_MAIL_FROM"
    ]


def test_bad_sender_address_and_missing_ca_file_are_refused() -> None:
    problems = _problems(
        **BASE,
        STELLAR_SMTP_HOST="smtp.example.org",
        STELLAR_MAIL_FROM="not an address",
        STELLAR_SMTP_CA_FILE="/nonexistent/ca.pem",
    )
    assert any(p.startswith("STELLAR_MAIL_FROM: must be an address") for p in problems)
    assert any(p.startswith("STELLAR_SMTP_CA_FILE") for p in problems)


def test_good_mail_settings_and_the_registration_switch() -> None:
    settings = load_settings(
        {
            **BASE,
            "STELLAR_SMTP_HOST": "smtp.example.org",
            "STELLAR_SMTP_SECURITY": "tls",
            "STELLAR_MAIL_FROM": "Panel <panel@example.org>",
        }
    )
    assert settings.mail_enabled
    assert settings.smtp_port_number == 465
    assert settings.registration_mode == "closed"
    legacy = load_settings({**BASE, "STELLAR_ALLOW_REGISTRATION": "true"})
    assert legacy.registration_mode == "open"
    assert not legacy.mail_enabled
    explicit = load_settings({**BASE, "STELLAR_REGISTRATION": "invite_only"})
    assert explicit.registration_mode == "invite_only"
    assert _problems(**BASE, STELLAR_REGISTRATION="sometimes")[0].startswith("STELLAR_REGISTRATION")


def test_templates_escape_the_html_part_only() -> None:
    mail = render(
        "server_crashed",
        {"server_name": "</strong><img src=x onerror=alert(1)>&", "at": "now", "restarting": 0},
        base_url="https://panel.example.org",
    )
    assert "</strong><img src=x onerror=alert(1)>&" in mail.text
    assert "&lt;/strong&gt;&lt;img src=x onerror=alert(1)&gt;&amp;" in mail.html
    assert "<img" not in mail.html
