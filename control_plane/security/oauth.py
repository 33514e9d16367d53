"""OAuth 2.0 authorization-code sign-in with PKCE (S256) for Google, GitHub and Discord.

Google is OpenID Connect: its ID token is verified in full (signature against the provider's
JWKS, ``iss``, ``aud`` = our client id, ``exp``/``iat``, and the ``nonce`` we sent). GitHub and
Discord are plain OAuth 2.0: the account comes from their user endpoint with the access token.
Accounts are identified by the provider's subject id, never by e-mail.

    OAuthError        (root; the message is safe to log and to show)

Endpoint URLs come from the settings (tests point them at a local fake provider); they are
operator configuration, so the SSRF guard for user-given URLs does not apply.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import jwt

from control_plane.settings import ControlPlaneSettings

ProviderName = Literal["google", "github", "discord"]
PROVIDERS: tuple[ProviderName, ...] = ("google", "github", "discord")
TIMEOUT = aiohttp.ClientTimeout(total=10)
ID_TOKEN_ALGORITHMS = ["RS256"]
LEEWAY_SECONDS = 30
GOOGLE_ISSUER = "https://accounts.google.com"


class OAuthError(Exception):
    """The provider refused, answered nonsense, or its answer failed verification."""


@dataclass(frozen=True)
class Provider:
    name: ProviderName
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    scope: str
    # OpenID Connect (Google): where the signing keys are and who issues the ID tokens.
    jwks_url: str | None = None
    issuer: str | None = None
    # Plain OAuth 2.0 (GitHub, Discord): the endpoint that names the account.
    user_url: str | None = None

    @property
    def is_oidc(self) -> bool:
        return self.jwks_url is not None


def configured_providers(settings: ControlPlaneSettings) -> dict[str, Provider]:
    """The providers whose client id and secret are both set."""
    found: dict[str, Provider] = {}
    s = settings
    if s.google_client_id and s.google_client_secret:
        found["google"] = Provider(
            "google",
            s.google_client_id,
            s.google_client_secret,
            s.google_authorize_url,
            s.google_token_url,
            "openid email",
            jwks_url=s.google_jwks_url,
            issuer=s.google_issuer,
        )
    if s.github_client_id and s.github_client_secret:
        found["github"] = Provider(
            "github",
            s.github_client_id,
            s.github_client_secret,
            s.github_authorize_url,
            s.github_token_url,
            "read:user user:email",
            user_url=s.github_user_url,
        )
    if s.discord_client_id and s.discord_client_secret:
        found["discord"] = Provider(
            "discord",
            s.discord_client_id,
            s.discord_client_secret,
            s.discord_authorize_url,
            s.discord_token_url,
            "identify email",
            user_url=s.discord_user_url,
        )
    return found


@dataclass(frozen=True)
class Flow:
    """The secrets of one authorization request: state, PKCE verifier and OIDC nonce."""

    state: str
    verifier: str
    nonce: str

    @classmethod
    def new(cls) -> Flow:
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(48), secrets.token_urlsafe(32))


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(provider: Provider, flow: Flow, redirect_uri: str) -> str:
    """Where to send the browser to ask the provider for a code."""
    params = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": redirect_uri,
        "scope": provider.scope,
        "state": flow.state,
        "code_challenge": pkce_challenge(flow.verifier),
        "code_challenge_method": "S256",
    }
    if provider.is_oidc:
        params["nonce"] = flow.nonce
    separator = "&" if "?" in provider.authorize_url else "?"
    return provider.authorize_url + separator + urllib.parse.urlencode(params)


@dataclass(frozen=True)
class ExternalAccount:
    subject: str
    email: str | None


async def _json(response: aiohttp.ClientResponse, what: str) -> dict[str, Any]:
    if response.status != 200:
        raise OAuthError(f"the provider refused the {what} request (HTTP {response.status})")
    try:
        data = await response.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError) as err:
        raise OAuthError(f"the provider's {what} answer is not JSON") from err
    if not isinstance(data, dict):
        raise OAuthError(f"the provider's {what} answer is not an object")
    return data


async def exchange_code(
    http: aiohttp.ClientSession, provider: Provider, *, code: str, verifier: str, redirect_uri: str
) -> dict[str, Any]:
    """Trade the authorization code (and the PKCE verifier) for the provider's tokens."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
        "code_verifier": verifier,
    }
    try:
        async with http.post(
            provider.token_url,
            data=form,
            headers={"Accept": "application/json"},
            timeout=TIMEOUT,
            allow_redirects=False,
        ) as response:
            tokens = await _json(response, "token")
    except (aiohttp.ClientError, TimeoutError) as err:
        raise OAuthError("the provider's token endpoint cannot be reached") from err
    if "error" in tokens or not isinstance(tokens.get("access_token"), str):
        raise OAuthError("the provider did not issue an access token")
    return tokens


async def fetch_jwks(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    try:
        async with http.get(url, timeout=TIMEOUT, allow_redirects=False) as response:
            return await _json(response, "signing keys")
    except (aiohttp.ClientError, TimeoutError) as err:
        raise OAuthError("the provider's signing keys cannot be fetched") from err


def _accepted_issuers(issuer: str) -> list[str]:
    # Google documents both spellings of its issuer.
    if issuer == GOOGLE_ISSUER:
        return [issuer, issuer.removeprefix("https://")]
    return [issuer]


def verify_id_token(
    id_token: str, jwks: dict[str, Any], provider: Provider, *, nonce: str
) -> ExternalAccount:
    """The account an OIDC ID token names, after checking signature and every claim."""
    try:
        header = jwt.get_unverified_header(id_token)
        keys = jwt.PyJWKSet.from_dict(jwks)
        key = next((k for k in keys.keys if k.key_id == header.get("kid")), None)
        if key is None:
            raise OAuthError("the ID token is signed with an unknown key")
        claims = jwt.decode(
            id_token,
            key=key,
            algorithms=ID_TOKEN_ALGORITHMS,
            audience=provider.client_id,
            issuer=_accepted_issuers(provider.issuer or ""),
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "aud", "sub", "exp", "iat"]},
        )
    except (jwt.PyJWTError, ValueError) as err:
        raise OAuthError(f"the ID token is invalid: {err}") from err
    presented = claims.get("nonce")
    if not isinstance(presented, str) or not hmac.compare_digest(presented, nonce):
        raise OAuthError("the ID token's nonce does not match this sign-in")
    # An ID token for several audiences must be meant for us as the authorised party.
    azp = claims.get("azp")
    if isinstance(claims.get("aud"), list) and azp != provider.client_id:
        raise OAuthError("the ID token was issued to another client")
    email = claims.get("email") if claims.get("email_verified", True) is True else None
    return ExternalAccount(str(claims["sub"]), email if isinstance(email, str) else None)


async def fetch_account(
    http: aiohttp.ClientSession, provider: Provider, tokens: dict[str, Any], *, nonce: str
) -> ExternalAccount:
    """The provider account the tokens belong to."""
    if provider.is_oidc:
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise OAuthError("the provider sent no ID token")
        return verify_id_token(
            id_token, await fetch_jwks(http, provider.jwks_url or ""), provider, nonce=nonce
        )
    headers = {"Authorization": f"Bearer {tokens['access_token']}", "Accept": "application/json"}
    try:
        async with http.get(
            provider.user_url or "", headers=headers, timeout=TIMEOUT, allow_redirects=False
        ) as response:
            user = await _json(response, "user")
    except (aiohttp.ClientError, TimeoutError) as err:
        raise OAuthError("the provider's user endpoint cannot be reached") from err
    subject = user.get("id")
    if not isinstance(subject, int | str) or isinstance(subject, bool) or str(subject) == "":
        raise OAuthError("the provider's user answer has no account id")
    email = user.get("email")
    return ExternalAccount(str(subject), email if isinstance(email, str) else None)
