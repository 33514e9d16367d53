"""Control-plane settings from the environment, validated before anything listens.

Every problem is collected into one :class:`ConfigError` (missing critical settings, weak or
placeholder secrets, what production additionally requires), so an operator fixes them all in
one go. See the README's configuration reference for each variable.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

MIN_SECRET_LENGTH = 32
_PLACEHOLDERS = (
    "changeme", "change-me", "change_me", "placeholder", "your-secret", "your_secret",
    "yoursecret", "secret_here", "secret-here", "example", "replace-me", "replace_me", "todo",
    "xxxxxxxx", "12345678", "password", "new_secret",
)  # fmt: skip
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")


class ConfigError(Exception):
    """The environment cannot be used; ``problems`` lists every reason at once."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


Optional = Annotated[str | None, BeforeValidator(_blank_to_none)]


def _is_production(info: ValidationInfo) -> bool:
    # An unreadable STELLAR_ENV counts as production: the stricter rules apply.
    return bool(info.data.get("environment", "production") == "production")


def _needs_signing_key(info: ValidationInfo) -> bool:
    # Only serve, node add and node ping need the key: see ``load_settings``.
    return bool((info.context or {}).get("needs_signing_key", True))


def parse_encryption_keys(text: str) -> dict[str, bytes]:
    """``[kid:]<64 hex>`` items separated by commas; the first one encrypts."""
    keys: dict[str, bytes] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        kid, _, material = item.rpartition(":")
        if kid and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", kid):
            raise ValueError(f"encryption key id {kid!r} must be 1-32 of A-Z a-z 0-9 _ -")
        if not _HEX_KEY.fullmatch(material):
            raise ValueError(
                f"encryption key {kid or 'without id'!r} must be 64 hex characters (32 bytes)"
            )
        raw = bytes.fromhex(material)
        # A bare key is named after itself, so its name stays the same whatever its position
        # in the list (rotating "<new>,<old>" must not rename the old key).
        kid = kid or "h" + hashlib.sha256(raw).hexdigest()[:12]
        if len(set(raw)) < 8:
            raise ValueError(f"encryption key {kid!r} is not random")
        if kid in keys:
            raise ValueError(f"encryption key id {kid!r} is used twice")
        keys[kid] = raw
    if not keys:
        raise ValueError("no encryption key given")
    return keys


def parse_range(text: str) -> tuple[int, int]:
    """``"512-32768"`` → (512, 32768)."""
    low, sep, high = text.partition("-")
    if not (sep and low.strip().isdigit() and high.strip().isdigit()):
        raise ValueError(f"{text!r} must be LOW-HIGH, e.g. 512-32768")
    bounds = (int(low), int(high))
    if bounds[0] > bounds[1]:
        raise ValueError(f"{text!r}: LOW must not exceed HIGH")
    return bounds


class ControlPlaneSettings(BaseModel):
    """Field aliases are the environment variable names."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    environment: Literal["development", "production"] = Field("development", alias="STELLAR_ENV")
    database_url: Optional = Field(None, alias="STELLAR_DATABASE_URL", validate_default=True)
    auth_secret: Optional = Field(
        None, alias="STELLAR_AUTH_SECRET", validate_default=True, repr=False
    )
    public_url: Optional = Field(None, alias="STELLAR_PUBLIC_URL", validate_default=True)
    encryption_keys: Optional = Field(
        None, alias="STELLAR_ENCRYPTION_KEYS", validate_default=True, repr=False
    )
    signing_key_file: Optional = Field(
        None, alias="STELLAR_SIGNING_KEY_FILE", validate_default=True
    )
    issuer: str = Field("stellar-cp", alias="STELLAR_ISSUER", min_length=1, max_length=128)
    host: str = Field("127.0.0.1", alias="STELLAR_HOST")
    port: int = Field(8000, alias="STELLAR_PORT", ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", alias="STELLAR_LOG_LEVEL"
    )
    bcrypt_cost: int = Field(12, alias="STELLAR_BCRYPT_COST", ge=10, le=16)
    allow_registration: bool = Field(False, alias="STELLAR_ALLOW_REGISTRATION")
    # Who may create an account: anyone, nobody but administrators, or invited people only.
    # Unset: STELLAR_ALLOW_REGISTRATION decides (true = open, false = closed).
    registration: Literal["open", "closed", "invite_only"] | None = Field(
        None, alias="STELLAR_REGISTRATION"
    )
    require_email_verification: bool = Field(False, alias="STELLAR_REQUIRE_EMAIL_VERIFICATION")
    # Outgoing mail (docs/email.md); no host = no mail, and what needs mail says so.
    smtp_host: Optional = Field(None, alias="STELLAR_SMTP_HOST")
    smtp_port: int | None = Field(None, alias="STELLAR_SMTP_PORT", ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls", alias="STELLAR_SMTP_SECURITY"
    )
    smtp_username: Optional = Field(None, alias="STELLAR_SMTP_USERNAME")
    smtp_password: Optional = Field(None, alias="STELLAR_SMTP_PASSWORD", repr=False)
    smtp_timeout_seconds: float = Field(15.0, alias="STELLAR_SMTP_TIMEOUT_SECONDS", gt=0, le=300)
    # A CA bundle to trust instead of the system's (a private relay's certificate).
    smtp_ca_file: Optional = Field(None, alias="STELLAR_SMTP_CA_FILE")
    mail_from: Optional = Field(None, alias="STELLAR_MAIL_FROM")
    # The sender looks for due mail this often (and at once after a request queued one).
    mail_poll_seconds: float = Field(5.0, alias="STELLAR_MAIL_POLL_SECONDS", gt=0, le=300)
    # The first retry's delay; each next one doubles it (with jitter), up to an hour.
    mail_retry_seconds: float = Field(30.0, alias="STELLAR_MAIL_RETRY_SECONDS", gt=0, le=3600)
    node_timeout_seconds: float = Field(10.0, alias="STELLAR_NODE_TIMEOUT_SECONDS", gt=0, le=120)
    node_health_interval_seconds: float = Field(
        30.0, alias="STELLAR_NODE_HEALTH_INTERVAL_SECONDS", gt=0, le=3600
    )
    redis_url: Optional = Field(None, alias="REDIS_URL")
    trusted_proxies: str = Field("", alias="STELLAR_TRUSTED_PROXIES")
    # Prometheus servers that may read /metrics without an API key (comma-separated CIDRs).
    metrics_scrapers: str = Field("", alias="STELLAR_METRICS_SCRAPERS")
    session_idle_minutes: int = Field(120, alias="STELLAR_SESSION_IDLE_MINUTES", ge=5, le=10080)
    session_max_hours: int = Field(168, alias="STELLAR_SESSION_MAX_HOURS", ge=1, le=2160)
    # How long a console token (the Pterodactyl-style console socket) lasts.
    console_token_seconds: int = Field(600, alias="STELLAR_CONSOLE_TOKEN_SECONDS", ge=10, le=3600)

    cors_origins: str = Field("", alias="STELLAR_CORS_ORIGINS")
    body_timeout_seconds: float = Field(30.0, alias="STELLAR_BODY_TIMEOUT_SECONDS", gt=0, le=600)
    # Schedules (docs/schedules.md): how often a replica looks for due ones, how long a run
    # is presumed alive without its control plane renewing the lease, runs at once.
    schedule_tick_seconds: float = Field(5.0, alias="STELLAR_SCHEDULE_TICK_SECONDS", gt=0, le=60)
    schedule_lease_seconds: float = Field(
        60.0, alias="STELLAR_SCHEDULE_LEASE_SECONDS", ge=10, le=3600
    )
    schedule_concurrency: int = Field(8, alias="STELLAR_SCHEDULE_CONCURRENCY", ge=1, le=1000)
    backup_limit: int = Field(5, alias="STELLAR_BACKUP_LIMIT", ge=1, le=1000)
    rate_limits: str = Field("", alias="STELLAR_RATE_LIMITS")
    rate_limit_max_keys: int = Field(100_000, alias="STELLAR_RATE_LIMIT_MAX_KEYS", ge=100)
    limit_memory_mib: str = Field("512-32768", alias="STELLAR_LIMIT_MEMORY_MIB")
    limit_cpu_percent: str = Field("50-400", alias="STELLAR_LIMIT_CPU_PERCENT")
    limit_disk_mib: str = Field("1024-102400", alias="STELLAR_LIMIT_DISK_MIB")
    # Sign-in beyond passwords: who must enrol a second factor, and the authenticator label.
    require_2fa: Literal["none", "admins", "everyone"] = Field("none", alias="STELLAR_REQUIRE_2FA")
    totp_issuer: str = Field(
        "StellarStack", alias="STELLAR_TOTP_ISSUER", min_length=1, max_length=64
    )
    # OAuth2 / OpenID Connect sign-in; a provider is offered when its client id and secret are set.
    google_client_id: Optional = Field(None, alias="GOOGLE_CLIENT_ID")
    google_client_secret: Optional = Field(None, alias="GOOGLE_CLIENT_SECRET", repr=False)
    github_client_id: Optional = Field(None, alias="GITHUB_CLIENT_ID")
    github_client_secret: Optional = Field(None, alias="GITHUB_CLIENT_SECRET", repr=False)
    discord_client_id: Optional = Field(None, alias="DISCORD_CLIENT_ID")
    discord_client_secret: Optional = Field(None, alias="DISCORD_CLIENT_SECRET", repr=False)
    google_authorize_url: str = Field(
        "https://accounts.google.com/o/oauth2/v2/auth", alias="STELLAR_GOOGLE_AUTHORIZE_URL"
    )
    google_token_url: str = Field(
        "https://oauth2.googleapis.com/token", alias="STELLAR_GOOGLE_TOKEN_URL"
    )
    google_jwks_url: str = Field(
        "https://www.googleapis.com/oauth2/v3/certs", alias="STELLAR_GOOGLE_JWKS_URL"
    )
    google_issuer: str = Field("https://accounts.google.com", alias="STELLAR_GOOGLE_ISSUER")
    github_authorize_url: str = Field(
        "https://github.com/login/oauth/authorize", alias="STELLAR_GITHUB_AUTHORIZE_URL"
    )
    github_token_url: str = Field(
        "https://github.com/login/oauth/access_token", alias="STELLAR_GITHUB_TOKEN_URL"
    )
    github_user_url: str = Field("https://api.github.com/user", alias="STELLAR_GITHUB_USER_URL")
    discord_authorize_url: str = Field(
        "https://discord.com/oauth2/authorize", alias="STELLAR_DISCORD_AUTHORIZE_URL"
    )
    discord_token_url: str = Field(
        "https://discord.com/api/oauth2/token", alias="STELLAR_DISCORD_TOKEN_URL"
    )
    discord_user_url: str = Field(
        "https://discord.com/api/users/@me", alias="STELLAR_DISCORD_USER_URL"
    )
    # Whether an OAuth sign-in counts as complete for a user with 2FA (default: the code is owed).
    oauth_skips_2fa: bool = Field(False, alias="STELLAR_OAUTH_SKIPS_2FA")
    # Passkeys (WebAuthn): the relying party's id (a domain) and the origin browsers report;
    # both default to STELLAR_PUBLIC_URL's.
    webauthn_rp_id: Optional = Field(None, alias="STELLAR_WEBAUTHN_RP_ID")
    webauthn_origin: Optional = Field(None, alias="STELLAR_WEBAUTHN_ORIGIN")
    webauthn_rp_name: str = Field(
        "StellarStack", alias="STELLAR_WEBAUTHN_RP_NAME", min_length=1, max_length=64
    )

    # Webhooks (docs/webhooks.md): each attempt's time limit, attempts in flight per process,
    # the first retry's delay (doubling, with jitter) and how long retries go on before the
    # webhook is disabled, how often the outbox is read, and how long finished rows are kept.
    webhook_timeout_seconds: float = Field(
        10.0, alias="STELLAR_WEBHOOK_TIMEOUT_SECONDS", gt=0, le=60
    )
    webhook_concurrency: int = Field(16, alias="STELLAR_WEBHOOK_CONCURRENCY", ge=1, le=256)
    webhook_retry_base_seconds: float = Field(
        30.0, alias="STELLAR_WEBHOOK_RETRY_BASE_SECONDS", gt=0, le=3600
    )
    webhook_retry_window_seconds: float = Field(
        86400.0, alias="STELLAR_WEBHOOK_RETRY_WINDOW_SECONDS", gt=0, le=7 * 86400
    )
    webhook_poll_seconds: float = Field(1.0, alias="STELLAR_WEBHOOK_POLL_SECONDS", gt=0, le=60)
    webhook_log_days: int = Field(14, alias="STELLAR_WEBHOOK_LOG_DAYS", ge=1, le=365)
    # For tests only: networks a webhook's host *name* may resolve into (a receiver on
    # loopback). Refused in production; IP literals in URLs are never exempt.
    webhook_test_allow_networks: str = Field("", alias="STELLAR_WEBHOOK_TEST_ALLOW_NETWORKS")

    @field_validator("webhook_test_allow_networks")
    @classmethod
    def _webhook_test_networks(cls, value: str, info: ValidationInfo) -> str:
        if value.strip() and _is_production(info):
            raise ValueError("is for tests only and refused in production")
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as err:
                raise ValueError(f"{item!r} is not a CIDR network") from err
        return value

    @field_validator(
        "google_authorize_url",
        "google_token_url",
        "google_jwks_url",
        "github_authorize_url",
        "github_token_url",
        "github_user_url",
        "discord_authorize_url",
        "discord_token_url",
        "discord_user_url",
    )
    @classmethod
    def _oauth_url(cls, value: str, info: ValidationInfo) -> str:
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s#]*)?", value):
            raise ValueError("must be an http(s) URL")
        if _is_production(info) and not value.startswith("https://"):
            raise ValueError("must be https:// in production")
        return value

    @field_validator("rate_limits")
    @classmethod
    def _rate_limits(cls, value: str) -> str:
        from control_plane.security.rate_limit import parse_presets

        parse_presets(value)
        return value

    @field_validator("limit_memory_mib", "limit_cpu_percent", "limit_disk_mib")
    @classmethod
    def _limit_range(cls, value: str) -> str:
        parse_range(value)
        return value

    def limit(self, name: Literal["memory_mib", "cpu_percent", "disk_mib"]) -> tuple[int, int]:
        """The (lowest, highest) value administrators may give a server."""
        return parse_range(getattr(self, f"limit_{name}"))

    @field_validator("trusted_proxies", "metrics_scrapers")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as err:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from err
        return value

    @field_validator("mail_from")
    @classmethod
    def _mail_from(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(
            r"([^<>\r\n]*<)?[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+>?", value
        ):
            raise ValueError(
                "must be an address, e.g. panel@example.com or Panel <panel@example.com>"
            )
        return value

    @field_validator("smtp_ca_file")
    @classmethod
    def _smtp_ca_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"{value} is not a readable file")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("missing: set it to sqlite:///path/to/stellar.db or postgresql://…")
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("only sqlite:// and postgresql:// URLs are supported")
        return value

    @field_validator("auth_secret")
    @classmethod
    def _auth_secret(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("missing: generate one with `stellar-cp keys secret`")
        check_secret_strength(value)
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if _is_production(info):
                raise ValueError(
                    "required in production: the https:// URL users reach the panel at"
                )
            return None
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("must be an http(s) URL without query or fragment")
        if _is_production(info) and not value.startswith("https://"):
            raise ValueError("must be https:// in production")
        return value.rstrip("/")

    @field_validator("encryption_keys")
    @classmethod
    def _encryption_keys(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if _is_production(info):
                raise ValueError(
                    "required in production: generate one with `stellar-cp keys encryption`"
                )
            return None
        parse_encryption_keys(value)
        return value

    @field_validator("signing_key_file")
    @classmethod
    def _signing_key_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if _is_production(info) and _needs_signing_key(info):
                raise ValueError(
                    "required in production: create one with `stellar-cp keys generate`"
                )
            return None
        path = Path(value)
        try:
            mode = path.stat().st_mode
        except OSError as err:
            raise ValueError(f"cannot read {path}: {err.strerror}") from err
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(f"{path} must not be readable by group or others (chmod 600)")
        return value

    @property
    def registration_mode(self) -> Literal["open", "closed", "invite_only"]:
        """Who may create an account (STELLAR_REGISTRATION, else STELLAR_ALLOW_REGISTRATION)."""
        if self.registration is not None:
            return self.registration
        return "open" if self.allow_registration else "closed"

    @property
    def mail_enabled(self) -> bool:
        return self.smtp_host is not None

    @property
    def smtp_port_number(self) -> int:
        """The port, defaulting to the one the security mode uses (465 for TLS, else 587)."""
        if self.smtp_port is not None:
            return self.smtp_port
        return 465 if self.smtp_security == "tls" else 587

    @property
    def link_base(self) -> str:
        """Where links in mails point: STELLAR_PUBLIC_URL (in development, host and port)."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def encryption_key_map(self) -> dict[str, bytes]:
        return parse_encryption_keys(self.encryption_keys) if self.encryption_keys else {}

    # The parsed forms below are read on every request: parsed once per text (a cache keyed
    # by the setting's text cannot go stale, a cached_property would survive model_copy).
    @property
    def cors_origin_set(self) -> frozenset[str]:
        return _origins(self.cors_origins)

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return _networks(self.trusted_proxies)

    @property
    def metrics_scraper_networks(
        self,
    ) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return _networks(self.metrics_scrapers)

    @property
    def webhook_test_networks(self) -> frozenset[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        parts = (part.strip() for part in self.webhook_test_allow_networks.split(","))
        return frozenset(ipaddress.ip_network(item, strict=False) for item in parts if item)

    @property
    def passkey_origin(self) -> str:
        """The origin browsers report for this panel (``scheme://host[:port]``)."""
        if self.webauthn_origin:
            return self.webauthn_origin.rstrip("/")
        if self.public_url:
            parts = urlsplit(self.public_url)
            return f"{parts.scheme}://{parts.netloc}"
        return "http://localhost:8000"

    @property
    def passkey_rp_id(self) -> str:
        """The WebAuthn relying-party id: a registrable domain of the panel's host."""
        return self.webauthn_rp_id or urlsplit(self.passkey_origin).hostname or "localhost"

    @property
    def secure_cookies(self) -> bool:
        return bool(self.public_url and self.public_url.startswith("https://"))


@functools.lru_cache(maxsize=16)
def _origins(text: str) -> frozenset[str]:
    return frozenset(o.strip().rstrip("/") for o in text.split(",") if o.strip())


@functools.lru_cache(maxsize=16)
def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    parts = (part.strip() for part in text.split(","))
    return tuple(ipaddress.ip_network(item, strict=False) for item in parts if item)


def _flag(values: Mapping[str, str], name: str) -> bool:
    return values.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def mail_problems(values: Mapping[str, str]) -> list[str]:
    """What is wrong with the mail settings taken together, read from the raw environment so
    that these are reported with every other problem, not only once the rest is right."""
    host = values.get("STELLAR_SMTP_HOST", "").strip()
    if not host:
        if _flag(values, "STELLAR_REQUIRE_EMAIL_VERIFICATION"):
            return [
                "STELLAR_REQUIRE_EMAIL_VERIFICATION: needs mail; set STELLAR_SMTP_HOST and "
                "STELLAR_MAIL_FROM"
            ]
        return []
    problems = []
    if not values.get("STELLAR_MAIL_FROM", "").strip():
        problems.append("STELLAR_MAIL_FROM: required when STELLAR_SMTP_HOST is set")
    if bool(values.get("STELLAR_SMTP_USERNAME", "").strip()) != bool(
        values.get("STELLAR_SMTP_PASSWORD", "").strip()
    ):
        problems.append("STELLAR_SMTP_USERNAME and STELLAR_SMTP_PASSWORD: set both or neither")
    production = values.get("STELLAR_ENV", "development") != "development"
    plain = values.get("STELLAR_SMTP_SECURITY", "starttls") == "none"
    if production and plain and host not in ("localhost", "127.0.0.1", "::1"):
        problems.append(
            "STELLAR_SMTP_SECURITY: 'none' sends mail (and the SMTP password) in clear text; "
            "use starttls or tls in production (plain only to a relay on localhost)"
        )
    return problems


def check_secret_strength(value: str) -> None:
    """Refuse short, placeholder or low-variety secrets."""
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"too short: at least {MIN_SECRET_LENGTH} characters")
    lowered = value.lower()
    if any(word in lowered for word in _PLACEHOLDERS):
        raise ValueError("looks like a placeholder, not a secret")
    if len(set(value)) < 10:
        raise ValueError("too little variety to be a random secret")


def load_settings(
    environ: Mapping[str, str] | None = None, *, needs_signing_key: bool = True
) -> ControlPlaneSettings:
    """Read settings from ``environ`` (default: the process environment).

    ``needs_signing_key=False``: for work that commands no node (migrate, audit verify…),
    STELLAR_SIGNING_KEY_FILE is not required in production (a key file given is still checked).
    """
    env = os.environ if environ is None else environ
    names = {f.alias for f in ControlPlaneSettings.model_fields.values() if f.alias}
    names.add("DATABASE_URL")
    values = {k: v for k, v in env.items() if k in names}
    if "STELLAR_DATABASE_URL" not in values and "DATABASE_URL" in values:
        values["STELLAR_DATABASE_URL"] = values["DATABASE_URL"]
    values.pop("DATABASE_URL", None)
    problems = mail_problems(values)
    try:
        settings = ControlPlaneSettings.model_validate(
            values, context={"needs_signing_key": needs_signing_key}
        )
    except ValidationError as err:
        aliases = {name: f.alias for name, f in ControlPlaneSettings.model_fields.items()}
        for error in err.errors(include_url=False, include_input=False):
            name = str(error["loc"][0]) if error["loc"] else "environment"
            name = aliases.get(name) or name
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise ConfigError(problems) from err
    if problems:
        raise ConfigError(problems)
    return settings
