"""A local OAuth 2.0 / OpenID Connect provider for tests: Google, GitHub and Discord styles.

It checks what a real provider checks (client credentials, redirect URI, single-use codes,
the PKCE S256 verifier) and issues real RS256-signed ID tokens from a JWKS it publishes.
Tests choose who "signs in" at the provider and can bend the ID token's claims or key.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CLIENT_SECRET = "fake-provider-client-secret"
CLIENT_IDS = {"google": "google-client-id", "github": "github-client-id", "discord": "d-client"}


def _private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class ProviderUser:
    subject: str
    email: str


@dataclass
class FakeProvider:
    base_url: str = ""
    user: ProviderUser = field(default_factory=lambda: ProviderUser("1001", "alice@example.org"))
    key: rsa.RSAPrivateKey = field(default_factory=_private_key)
    # An attacker's key with the same kid: a token signed with it must be refused.
    other_key: rsa.RSAPrivateKey = field(default_factory=_private_key)
    sign_with_other_key: bool = False
    claim_overrides: dict[str, Any] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, ProviderUser] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return self.base_url

    def env(self) -> dict[str, str]:
        """Settings that point the panel at this provider."""
        base = self.base_url
        env = {
            "STELLAR_GOOGLE_AUTHORIZE_URL": f"{base}/google/authorize",
            "STELLAR_GOOGLE_TOKEN_URL": f"{base}/google/token",
            "STELLAR_GOOGLE_JWKS_URL": f"{base}/google/jwks",
            "STELLAR_GOOGLE_ISSUER": self.issuer,
            "STELLAR_GITHUB_AUTHORIZE_URL": f"{base}/github/authorize",
            "STELLAR_GITHUB_TOKEN_URL": f"{base}/github/token",
            "STELLAR_GITHUB_USER_URL": f"{base}/github/user",
            "STELLAR_DISCORD_AUTHORIZE_URL": f"{base}/discord/authorize",
            "STELLAR_DISCORD_TOKEN_URL": f"{base}/discord/token",
            "STELLAR_DISCORD_USER_URL": f"{base}/discord/user",
        }
        for name, client_id in CLIENT_IDS.items():
            env[f"{name.upper()}_CLIENT_ID"] = client_id
            env[f"{name.upper()}_CLIENT_SECRET"] = CLIENT_SECRET
        return env

    def authorize(self, authorize_url: str) -> dict[str, str]:
        """The user approves at the provider: the callback query the browser is sent back with."""
        parsed = urllib.parse.urlsplit(authorize_url)
        provider = parsed.path.split("/")[1]
        params = dict(urllib.parse.parse_qsl(parsed.query))
        assert params["client_id"] == CLIENT_IDS[provider]
        assert params["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "provider": provider,
            "redirect_uri": params["redirect_uri"],
            "challenge": params["code_challenge"],
            "nonce": params.get("nonce"),
            "user": self.user,
        }
        return {"code": code, "state": params["state"]}

    def id_token(self, client_id: str, user: ProviderUser, nonce: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": client_id,
            "sub": user.subject,
            "email": user.email,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
            "nonce": nonce,
            **self.claim_overrides,
        }
        key = self.other_key if self.sign_with_other_key else self.key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})

    async def token(self, request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append(form)
        grant = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if (
            grant is None
            or grant["provider"] != provider
            or form.get("client_id") != CLIENT_IDS[provider]
            or form.get("client_secret") != CLIENT_SECRET
            or form.get("redirect_uri") != grant["redirect_uri"]
            or not verifier
            or expected.rstrip(b"=").decode() != grant["challenge"]
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        access = secrets.token_urlsafe(16)
        self.tokens[access] = grant["user"]
        body = {"access_token": access, "token_type": "Bearer"}
        if provider == "google":
            body["id_token"] = self.id_token(CLIENT_IDS[provider], grant["user"], grant["nonce"])
        return web.json_response(body)

    async def user_endpoint(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        user = self.tokens.get(token) if scheme == "Bearer" else None
        if user is None:
            return web.json_response({"message": "Bad credentials"}, status=401)
        if request.match_info["provider"] == "github":
            return web.json_response({"id": int(user.subject), "login": "x", "email": user.email})
        return web.json_response({"id": user.subject, "username": "x", "email": user.email})

    async def authorize_endpoint(self, request: web.Request) -> web.Response:
        """The provider's sign-in page, for a real browser: the user approves at once and is
        sent back to the redirect URI with the code and the state."""
        query = self.authorize(str(request.url))
        redirect_uri = request.query["redirect_uri"]
        raise web.HTTPFound(f"{redirect_uri}?{urllib.parse.urlencode(query)}")

    async def jwks(self, request: web.Request) -> web.Response:
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return web.json_response({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{provider}/authorize", self.authorize_endpoint)
        app.router.add_post("/{provider}/token", self.token)
        app.router.add_get("/{provider}/user", self.user_endpoint)
        app.router.add_get("/google/jwks", self.jwks)
        return app
