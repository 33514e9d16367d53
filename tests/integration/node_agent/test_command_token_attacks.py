"""An attacker's view of the command channel: forged and misused tokens against a real agent.

Every request here goes over HTTP to a running ``stellar-agent`` process. A refusal must be a
401 in the common error shape whose one detail names the refusal's category, exactly one
``command rejected`` log line with the reason (found by the request's ``X-Request-Id``), and
never the token text in the agent's output. The categories tell a caller without a trusted
key nothing (``malformed`` or ``untrusted`` only: an unknown kid and a bad signature look
alike), and the agent's time is told only on the answer to a command our key signed.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from yarl import URL

from shared.protocol import (
    MAX_LIFETIME_SECONDS,
    MAX_TOKEN_LENGTH,
    REQUIRED_CLAIMS,
    TOKEN_TYPE,
    mint,
)
from tests.support.agent_process import (
    DROP,
    SYSTEM_ACTION,
    SYSTEM_PATH,
    AgentFactory,
    AgentProcess,
    SigningKey,
    assemble,
    b64url,
    mint_for,
    signing_input,
    system_claims,
    token_parts,
)

pytestmark = pytest.mark.slow

REJECTED = "command rejected"
# BUG (reported): shared/logging.py's redaction pattern ``(?i:bearer)\s+\S+`` rewrites the
# reason "no bearer token" to "no [redacted]". Both are accepted here so that the 401 itself
# stays covered; test_missing_bearer_reason_survives_log_redaction pins the bug.
NO_BEARER = {"no bearer token", "no [redacted]"}


@dataclass(frozen=True)
class Reply:
    method: str
    status: int
    body: Any
    request_id: str
    node_time: str | None = None


async def send(
    http: aiohttp.ClientSession,
    agent: AgentProcess,
    token: str | None,
    *,
    method: str = "GET",
    path: str = SYSTEM_PATH,
    data: bytes | None = None,
    authorization: str | None = None,
) -> Reply:
    """One request with its own request id; ``authorization`` overrides ``Bearer <token>``."""
    request_id = secrets.token_hex(8)
    headers = {"X-Request-Id": request_id}
    if authorization is not None:
        headers["Authorization"] = authorization
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = URL(agent.base_url + path, encoded=True)
    async with http.request(method, url, headers=headers, data=data) as response:
        body = await response.json(content_type=None) if method != "HEAD" else None
        node_time = response.headers.get("Stellar-Node-Time")
        return Reply(method, response.status, body, request_id, node_time)


def rejection_reasons(agent: AgentProcess, request_id: str) -> list[str]:
    return [
        str(event.get("reason"))
        for event in agent.log_events()
        if event.get("event") == REJECTED and event.get("request_id") == request_id
    ]


# What the 401 tells the caller for each logged reason (anything else: "malformed").
CATEGORIES = {
    "unknown kid": "untrusted",
    "bad signature": "untrusted",
    "not yet valid": "not_yet_valid",
    "expired": "expired",
    "replayed jti": "replayed",
    **{
        reason: "mismatch"
        for reason in (
            "wrong iss",
            "wrong aud",
            "wrong htm",
            "wrong htu",
            "wrong bdh",
            "wrong act",
            "wrong sub",
            "route takes no commands",
            "lifetime over maximum",
        )
    },
}
CLOCK_CATEGORIES = {"expired", "not_yet_valid"}


def assert_rejected(
    agent: AgentProcess, reply: Reply, reason: str | set[str], token: str | None = None
) -> None:
    assert reply.status == 401, reply
    reasons = rejection_reasons(agent, reply.request_id)
    expected = {reason} if isinstance(reason, str) else reason
    assert len(reasons) == 1, reasons
    assert reasons[0] in expected, reasons
    category = CATEGORIES.get(reasons[0], "malformed")
    if reply.method != "HEAD":  # a HEAD reply has no body to check
        assert isinstance(reply.body, dict), reply
        error = reply.body["error"]
        assert error["code"] == "unauthenticated"
        assert error["message"] == "command token rejected"
        assert error["details"] == [
            {"loc": ["authorization"], "msg": category, "type": category}
        ], reasons
    # The agent's time only to whoever holds a token our key signed, refused for its time.
    assert (reply.node_time is not None) == (category in CLOCK_CATEGORIES), reply
    if token is not None:
        assert_not_logged(agent, token)


def assert_not_logged(agent: AgentProcess, token: str) -> None:
    text = agent.log_text()
    assert token not in text
    # Nor the claims part alone (unique per token because of the jti).
    parts = token.split(".")
    if len(parts) == 3 and len(parts[1]) >= 16:
        assert parts[1] not in text


def assert_accepted(agent: AgentProcess, reply: Reply, token: str) -> None:
    assert reply.status == 200, (reply, rejection_reasons(agent, reply.request_id))
    assert reply.body["node_id"] == str(agent.node_id)
    assert reply.node_time is not None
    assert abs(float(reply.node_time) - time.time()) < 5
    assert rejection_reasons(agent, reply.request_id) == []
    assert_not_logged(agent, token)


def segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def forge(
    header: dict[str, object], claims: dict[str, object], sign: Callable[[bytes], bytes]
) -> str:
    signed = signing_input(header, claims)
    return assemble(signed, sign(signed))


# --- positive controls: the forgeries below differ from these in one thing only ---


async def test_genuine_token_is_accepted(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    token = mint_for(agent, signing_key)
    assert_accepted(agent, await send(http, agent, token), token)


async def test_token_minted_by_shared_protocol_is_accepted(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    token = mint(
        private_key=signing_key.private_key,
        kid=signing_key.kid,
        issuer=agent.expected_issuer,
        node_id=agent.node_id,
        subject="node",
        action=SYSTEM_ACTION,
        method="GET",
        path=SYSTEM_PATH,
        body=b"",
        user="user-1",
    )
    assert_accepted(agent, await send(http, agent, token), token)


async def test_healthz_needs_no_token(http: aiohttp.ClientSession, agent: AgentProcess) -> None:
    reply = await send(http, agent, None, path="/healthz")
    assert reply.status == 200
    assert rejection_reasons(agent, reply.request_id) == []


# --- algorithm confusion ---


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", [b"", b"garbage"], ids=["empty-sig", "garbage-sig"])
async def test_unsigned_alg_none_token_is_rejected(
    http: aiohttp.ClientSession,
    agent: AgentProcess,
    signing_key: SigningKey,
    alg: str,
    signature: bytes,
) -> None:
    header: dict[str, object] = {"alg": alg, "typ": TOKEN_TYPE, "kid": signing_key.kid}
    token = forge(header, system_claims(agent), lambda _signed: signature)
    assert_rejected(agent, await send(http, agent, token), "algorithm not allowed", token)


def _public_raw(key: SigningKey) -> bytes:
    return key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _public_pem(key: SigningKey) -> bytes:
    return key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    "secret_of",
    [_public_raw, lambda key: key.public_text.encode("ascii"), _public_pem],
    ids=["raw-32-bytes", "base64url-text", "pem"],
)
async def test_hs256_token_keyed_with_the_public_key_is_rejected(
    http: aiohttp.ClientSession,
    agent: AgentProcess,
    signing_key: SigningKey,
    secret_of: Callable[[SigningKey], bytes],
) -> None:
    secret = secret_of(signing_key)
    header: dict[str, object] = {"alg": "HS256", "typ": TOKEN_TYPE, "kid": signing_key.kid}
    token = forge(
        header,
        system_claims(agent),
        lambda signed: hmac.new(secret, signed, hashlib.sha256).digest(),
    )
    assert_rejected(agent, await send(http, agent, token), "algorithm not allowed", token)


@pytest.mark.parametrize("alg", [DROP, "eddsa", "EDDSA", "Ed25519", "ES256"])
async def test_token_with_missing_or_other_alg_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey, alg: object
) -> None:
    # A genuine Ed25519 signature; only the alg header differs.
    token = mint_for(agent, signing_key, header={"alg": alg})
    assert_rejected(agent, await send(http, agent, token), "algorithm not allowed", token)


# --- key ids ---


@pytest.mark.parametrize(
    "kid",
    ["ed25519-0000000000000000", "../../etc/passwd", "' OR 1=1 --", "", "k" * 200],
    ids=["unknown", "path-traversal", "sql", "empty", "huge"],
)
async def test_token_with_unknown_kid_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey, kid: str
) -> None:
    token = mint_for(agent, signing_key, header={"kid": kid})
    assert_rejected(agent, await send(http, agent, token), "unknown kid", token)


async def test_token_with_kid_differing_only_in_case_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    token = mint_for(agent, signing_key, header={"kid": signing_key.kid.upper()})
    assert_rejected(agent, await send(http, agent, token), "unknown kid", token)


@pytest.mark.parametrize(
    "kid", [12345, None, ["k"], {"kid": "k"}], ids=["number", "null", "list", "object"]
)
async def test_token_with_non_string_kid_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey, kid: object
) -> None:
    token = mint_for(agent, signing_key, header={"kid": kid})
    reply = await send(http, agent, token)
    assert_rejected(agent, reply, {"unreadable header", "missing kid"}, token)


async def test_token_without_kid_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    token = mint_for(agent, signing_key, header={"kid": DROP})
    assert_rejected(agent, await send(http, agent, token), "missing kid", token)


async def test_token_signed_by_untrusted_key_under_trusted_kid_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    impostor = SigningKey.generate()
    token = mint_for(agent, impostor, header={"kid": signing_key.kid})
    assert_rejected(agent, await send(http, agent, token), "bad signature", token)


@pytest.mark.parametrize("embedded", ["jwk", "jku", "x5u"])
async def test_key_embedded_in_the_header_is_not_trusted(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey, embedded: str
) -> None:
    impostor = SigningKey.generate()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": impostor.public_text, "kid": signing_key.kid}
    value: object = jwk if embedded == "jwk" else "http://attacker.invalid/keys"
    token = mint_for(agent, impostor, header={"kid": signing_key.kid, embedded: value})
    assert_rejected(agent, await send(http, agent, token), "bad signature", token)


async def test_token_with_unknown_critical_header_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    token = mint_for(agent, signing_key, header={"crit": ["exp-ext"], "exp-ext": 1})
    assert_rejected(
        agent,
        await send(http, agent, token),
        "critical header extensions are not supported",
        token,
    )


# --- header type ---


@pytest.mark.parametrize(
    "typ",
    ["JWT", "stellar-cmd+JWT", "at+jwt", "", DROP],
    ids=["jwt", "case", "other", "empty", "missing"],
)
async def test_token_with_wrong_or_missing_typ_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey, typ: object
) -> None:
    token = mint_for(agent, signing_key, header={"typ": typ})
    assert_rejected(agent, await send(http, agent, token), "wrong typ", token)


# --- audience and issuer ---


async def test_token_for_one_node_is_rejected_by_another_node(
    http: aiohttp.ClientSession,
    agent: AgentProcess,
    other_agent: AgentProcess,
    signing_key: SigningKey,
) -> None:
    token = mint_for(agent, signing_key)
    assert_rejected(other_agent, await send(http, other_agent, token), "wrong aud", token)
    # The refusal on node B did not spend it: node A still takes it.
    assert_accepted(agent, await send(http, agent, token), token)


@pytest.mark.parametrize(
    "issuer", ["evil-cp", "stellar", "stellar-cp-evil", "STELLAR-CP", "stellar-cp "]
)
async def test_token_with_wrong_iss_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey, issuer: str
) -> None:
    token = mint_for(agent, signing_key, iss=issuer)
    assert_rejected(agent, await send(http, agent, token), "wrong iss", token)


# --- time ---


async def test_expired_token_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    token = mint_for(agent, signing_key, now=time.time() - 120, lifetime=30)
    assert_rejected(agent, await send(http, agent, token), "expired", token)


async def test_an_attacker_cannot_tell_an_unknown_kid_from_a_trusted_one(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    impostor = SigningKey.generate()
    under_trusted = await send(
        http, agent, mint_for(agent, impostor, header={"kid": signing_key.kid})
    )
    under_unknown = await send(http, agent, mint_for(agent, impostor))
    assert under_trusted.body == under_unknown.body
    assert under_trusted.node_time is None
    assert under_unknown.node_time is None
    # Even a token of ours, expired, signed by another key: no hint of our key or our time.
    stale = mint_for(agent, impostor, header={"kid": signing_key.kid}, now=time.time() - 120)
    reply = await send(http, agent, stale)
    assert reply.body == under_trusted.body
    assert reply.node_time is None


async def test_token_issued_in_the_future_beyond_leeway_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    token = mint_for(agent, signing_key, now=time.time() + 60, lifetime=30)
    assert_rejected(agent, await send(http, agent, token), "not yet valid", token)


@pytest.mark.parametrize("lifetime", [MAX_LIFETIME_SECONDS + 1, 3600, 0, -10])
async def test_token_with_lifetime_over_maximum_or_not_positive_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey, lifetime: int
) -> None:
    token = mint_for(agent, signing_key, lifetime=lifetime)
    assert_rejected(agent, await send(http, agent, token), "lifetime over maximum", token)


# --- claims ---


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
async def test_token_without_required_claim_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey, claim: str
) -> None:
    token = mint_for(agent, signing_key, claims={claim: DROP})
    assert_rejected(agent, await send(http, agent, token), f"missing claim {claim}", token)


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
async def test_token_with_null_required_claim_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey, claim: str
) -> None:
    token = mint_for(agent, signing_key, claims={claim: None})
    assert_rejected(agent, await send(http, agent, token), f"missing claim {claim}", token)


@pytest.mark.parametrize(
    ("claim", "value_for"),
    [
        ("iat", lambda agent: str(int(time.time()))),
        ("exp", lambda agent: time.time() + 30.0),
        ("aud", lambda agent: [agent.audience]),
        ("jti", lambda agent: "short"),
        ("usr", lambda agent: 42),
    ],
    ids=["iat-string", "exp-float", "aud-list", "jti-short", "usr-number"],
)
async def test_token_with_ill_typed_claim_is_rejected(
    http: aiohttp.ClientSession,
    agent: AgentProcess,
    signing_key: SigningKey,
    claim: str,
    value_for: Callable[[AgentProcess], object],
) -> None:
    token = mint_for(agent, signing_key, claims={claim: value_for(agent)})
    assert_rejected(agent, await send(http, agent, token), f"malformed claims: {claim}", token)


async def test_token_with_extra_claim_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    token = mint_for(agent, signing_key, adm=True)
    assert_rejected(agent, await send(http, agent, token), "malformed claims: adm", token)


@pytest.mark.parametrize(
    ("claim", "tampered_value"),
    [
        ("usr", lambda claims: "admin"),
        ("exp", lambda claims: claims["exp"] + 3600),
        ("htu", lambda claims: "/api/v1/servers"),
        ("jti", lambda claims: secrets.token_urlsafe(18)),
    ],
    ids=["usr", "exp", "htu", "jti"],
)
async def test_token_with_payload_changed_after_signing_is_rejected(
    http: aiohttp.ClientSession,
    agent: AgentProcess,
    signing_key: SigningKey,
    claim: str,
    tampered_value: Callable[[dict[str, Any]], object],
) -> None:
    genuine = mint_for(agent, signing_key)
    header_part, _payload_part, signature_part = genuine.split(".")
    _header, claims, _signature = token_parts(genuine)
    claims[claim] = tampered_value(claims)
    tampered = f"{header_part}.{segment(claims)}.{signature_part}"
    assert_rejected(agent, await send(http, agent, tampered), "bad signature", tampered)
    # The genuine token was never presented, so it is still good.
    assert_accepted(agent, await send(http, agent, genuine), genuine)


async def test_token_with_header_changed_after_signing_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    genuine = mint_for(agent, signing_key)
    _header_part, payload_part, signature_part = genuine.split(".")
    header, _claims, _signature = token_parts(genuine)
    header["x"] = 1
    tampered = f"{segment(header)}.{payload_part}.{signature_part}"
    assert_rejected(agent, await send(http, agent, tampered), "bad signature", tampered)


# --- one token, one meaning: the JSON of header and payload is read strictly ---


def raw_token(key: SigningKey, header: bytes, payload: bytes) -> str:
    """A token over exactly these JSON bytes, EdDSA-signed by ``key``."""
    signed = f"{b64url(header)}.{b64url(payload)}".encode("ascii")
    return assemble(signed, key.sign(signed))


def json_members(members: list[tuple[str, object]]) -> bytes:
    """A JSON object with these members in this order, repeated names included."""
    return ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in members) + "}").encode()


def contract_header(key: SigningKey) -> list[tuple[str, object]]:
    return [("alg", "EdDSA"), ("typ", TOKEN_TYPE), ("kid", key.kid)]


async def test_a_token_spelled_member_by_member_is_accepted(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    claims = list(system_claims(agent).items())
    token = raw_token(signing_key, json_members(contract_header(signing_key)), json_members(claims))
    assert_accepted(agent, await send(http, agent, token), token)


@pytest.mark.parametrize("part", ["header", "payload"])
async def test_token_with_a_byte_order_mark_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey, part: str
) -> None:
    header = json_members(contract_header(signing_key))
    payload = json_members(list(system_claims(agent).items()))
    if part == "header":
        header = codecs.BOM_UTF8 + header
    else:
        payload = codecs.BOM_UTF8 + payload
    token = raw_token(signing_key, header, payload)
    reply = await send(http, agent, token)
    assert_rejected(agent, reply, f"unreadable {part}: byte order mark", token)


async def test_token_whose_payload_is_not_utf8_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    payload = json.dumps(system_claims(agent)).encode("utf-16")
    token = raw_token(signing_key, json_members(contract_header(signing_key)), payload)
    assert_rejected(agent, await send(http, agent, token), "unreadable payload: not UTF-8", token)


@pytest.mark.parametrize("claim", ["aud", "htu", "iss", "exp"])
@pytest.mark.parametrize("genuine_first", [True, False], ids=["genuine-first", "genuine-last"])
async def test_token_with_a_claim_given_twice_is_rejected(
    http: aiohttp.ClientSession,
    agent: AgentProcess,
    signing_key: SigningKey,
    claim: str,
    genuine_first: bool,
) -> None:
    claims = system_claims(agent)
    other: dict[str, object] = {
        "aud": f"node:{'0' * 8}-0000-0000-0000-{'0' * 12}",
        "htu": "/api/v1/servers",
        "iss": "evil-cp",
        "exp": int(time.time()) + 3600,
    }
    pair = [(claim, claims[claim]), (claim, other[claim])]
    members = [item for item in claims.items() if item[0] != claim]
    members += pair if genuine_first else pair[::-1]
    token = raw_token(
        signing_key, json_members(contract_header(signing_key)), json_members(members)
    )
    reply = await send(http, agent, token)
    assert_rejected(agent, reply, "unreadable payload: duplicate member", token)


@pytest.mark.parametrize(
    "repeated",
    [("alg", "none"), ("kid", "ed25519-0000000000000000"), ("typ", "JWT")],
    ids=["alg", "kid", "typ"],
)
async def test_token_with_a_header_member_given_twice_is_rejected(
    http: aiohttp.ClientSession,
    agent: AgentProcess,
    signing_key: SigningKey,
    repeated: tuple[str, object],
) -> None:
    header = [repeated, *contract_header(signing_key)]
    payload = json_members(list(system_claims(agent).items()))
    token = raw_token(signing_key, json_members(header), payload)
    reply = await send(http, agent, token)
    assert_rejected(agent, reply, "unreadable header: duplicate member", token)


@pytest.mark.parametrize(
    ("act", "sub", "reason"),
    [
        ("server.create", "node", "wrong act"),
        (SYSTEM_ACTION, f"server:{'0' * 8}-0000-0000-0000-{'0' * 12}", "wrong sub"),
    ],
    ids=["act", "sub"],
)
async def test_token_for_another_action_or_subject_is_rejected(
    http: aiohttp.ClientSession,
    agent: AgentProcess,
    signing_key: SigningKey,
    act: str,
    sub: str,
    reason: str,
) -> None:
    token = mint_for(agent, signing_key, act=act, sub=sub)
    assert_rejected(agent, await send(http, agent, token), reason, token)


# --- binding to the one request ---


async def test_body_sent_with_token_for_empty_body_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    token = mint_for(agent, signing_key)
    reply = await send(http, agent, token, data=b'{"cmd": "rm -rf /"}')
    assert_rejected(agent, reply, "wrong bdh", token)


async def test_token_bound_to_a_body_accepts_only_that_body(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    token = mint_for(agent, signing_key, body=b"x")
    assert_rejected(agent, await send(http, agent, token), "wrong bdh", token)
    assert_rejected(agent, await send(http, agent, token, data=b"y"), "wrong bdh", token)
    assert_rejected(agent, await send(http, agent, token, data=b"x "), "wrong bdh", token)
    assert_accepted(agent, await send(http, agent, token, data=b"x"), token)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/system?x=1",
        "/api/v1/servers",
        "/api/v1/system/",
        "/api/v1/%73ystem",
        "//api/v1/system",
    ],
)
async def test_token_used_on_another_path_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey, path: str
) -> None:
    token = mint_for(agent, signing_key)
    assert_rejected(agent, await send(http, agent, token, path=path), "wrong htu", token)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD"])
async def test_token_used_with_another_method_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey, method: str
) -> None:
    token = mint_for(agent, signing_key)
    assert_rejected(agent, await send(http, agent, token, method=method), "wrong htm", token)


# --- the Authorization header ---


async def test_request_without_authorization_header_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess
) -> None:
    assert_rejected(agent, await send(http, agent, None), NO_BEARER)


@pytest.mark.parametrize("scheme", ["Basic", "Token", "JWT", "Bearer:", "", "Bearer\t"], ids=repr)
async def test_token_under_non_bearer_scheme_is_rejected_and_not_spent(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey, scheme: str
) -> None:
    token = mint_for(agent, signing_key)
    authorization = f"{scheme} {token}" if scheme else token
    reply = await send(http, agent, token, authorization=authorization)
    assert_rejected(agent, reply, NO_BEARER, token)
    assert_accepted(agent, await send(http, agent, token), token)


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz"])
async def test_authorization_without_a_bearer_token_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, authorization: str
) -> None:
    reply = await send(http, agent, None, authorization=authorization)
    assert_rejected(agent, reply, NO_BEARER)


async def test_missing_bearer_reason_survives_log_redaction(
    http: aiohttp.ClientSession, agent: AgentProcess
) -> None:
    reply = await send(http, agent, None)
    assert rejection_reasons(agent, reply.request_id) == ["no bearer token"]


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-jwt", "malformed token"),
        ("a.b.c", "unreadable header"),
        # The longest token the protocol allows passes the agent's HTTP parser.
        ("eyJ" + "A" * (MAX_TOKEN_LENGTH - 3), "malformed token"),
        ("eyJ" + "A" * (MAX_TOKEN_LENGTH - 2), "token too long"),
    ],
    ids=["garbage", "three-junk-segments", "longest", "too-long"],
)
async def test_malformed_token_is_rejected(
    http: aiohttp.ClientSession, agent: AgentProcess, token: str, reason: str
) -> None:
    assert_rejected(agent, await send(http, agent, token), reason, token)


# --- replay ---


async def test_genuine_token_is_accepted_exactly_once(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    token = mint_for(agent, signing_key)
    assert_accepted(agent, await send(http, agent, token), token)
    assert_rejected(agent, await send(http, agent, token), "replayed jti", token)
    assert_rejected(agent, await send(http, agent, token), "replayed jti", token)


async def test_concurrent_uses_of_one_token_admit_exactly_one(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    token = mint_for(agent, signing_key)
    replies = await asyncio.gather(*(send(http, agent, token) for _ in range(8)))
    assert sorted(r.status for r in replies) == [200] + [401] * 7
    for reply in replies:
        if reply.status == 401:
            assert_rejected(agent, reply, "replayed jti", token)


async def test_refused_uses_do_not_spend_a_token_but_a_success_does(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    token = mint_for(agent, signing_key)
    assert_rejected(
        agent, await send(http, agent, token, path="/api/v1/system?x=1"), "wrong htu", token
    )
    assert_rejected(agent, await send(http, agent, token, method="POST"), "wrong htm", token)
    assert_rejected(agent, await send(http, agent, token, data=b"x"), "wrong bdh", token)
    assert_accepted(agent, await send(http, agent, token), token)
    assert_rejected(agent, await send(http, agent, token), "replayed jti", token)
    assert_rejected(
        agent, await send(http, agent, token, path="/api/v1/servers"), "wrong htu", token
    )


async def test_same_jti_under_a_new_signature_is_a_replay(
    http: aiohttp.ClientSession, agent: AgentProcess, signing_key: SigningKey
) -> None:
    first = mint_for(agent, signing_key)
    jti = token_parts(first)[1]["jti"]
    second = mint_for(agent, signing_key, jti=jti, usr="someone-else")
    assert_accepted(agent, await send(http, agent, first), first)
    assert_rejected(agent, await send(http, agent, second), "replayed jti", second)


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
async def test_replayed_token_is_rejected_after_agent_restart(
    http: aiohttp.ClientSession, agent_factory: AgentFactory, signing_key: SigningKey, how: str
) -> None:
    node = agent_factory()
    used = mint_for(node, signing_key)
    unused = mint_for(node, signing_key)
    assert_accepted(node, await send(http, node, used), used)

    if how == "sigkill":
        node.kill()
    else:
        node.stop()
    node.start()

    loaded = [e for e in node.log_events() if e.get("event") == "replay cache loaded"]
    assert [e["live_ids"] for e in loaded] == [0, 1]
    assert_rejected(node, await send(http, node, used), "replayed jti", used)
    # Minted before the restart but never used: still good, once.
    assert_accepted(node, await send(http, node, unused), unused)
    fresh = mint_for(node, signing_key)
    assert_accepted(node, await send(http, node, fresh), fresh)
    assert_rejected(node, await send(http, node, fresh), "replayed jti", fresh)


@pytest.mark.parametrize(
    ("spelling", "reason"),
    [("repeated", "duplicate member"), ("bom", "byte order mark")],
)
async def test_a_signed_body_with_two_meanings_is_refused(
    http: aiohttp.ClientSession,
    agent: AgentProcess,
    signing_key: SigningKey,
    spelling: str,
    reason: str,
) -> None:
    server_id = uuid.uuid4()
    path = f"/api/v1/servers/{server_id}/power"
    # Signed as sent: the token cannot tell the agent which "action" the control plane meant.
    body = b'{"action":"start","action":"kill"}' if spelling == "repeated" else b""
    if spelling == "bom":
        body = codecs.BOM_UTF8 + b'{"action":"start"}'
    token = mint_for(
        agent,
        signing_key,
        method="POST",
        path=path,
        body=body,
        act="server.power",
        sub=f"server:{server_id}",
    )
    reply = await send(http, agent, token, method="POST", path=path, data=body)
    assert reply.status == 400, reply
    assert reply.body["error"]["code"] == "invalid_request"
    assert reply.body["error"]["message"] == f"the body is not strict JSON: {reason}"


# --- what an unsigned request costs the agent ---


async def _declare_a_body_and_wait(agent: AgentProcess, authorization: str) -> bytes:
    """A PUT that announces a 1 MB body and sends none of it: the agent's first answer."""
    host, port = "127.0.0.1", int(URL(agent.base_url).port or 0)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            (
                "PUT /api/v1/sftp/access HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n"
                f"Authorization: {authorization}\r\n"
                "Content-Type: application/json\r\n"
                "Content-Length: 1000000\r\n\r\n"
            ).encode("ascii")
        )
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.readline(), timeout=5)
        except TimeoutError:
            return b"(no answer: the agent waits for the body)"
    finally:
        writer.close()


async def test_a_request_refused_on_its_token_alone_is_answered_before_its_body_is_read(
    agent: AgentProcess, signing_key: SigningKey
) -> None:
    # Anyone who reaches the port: the agent must not hold a connection and a buffer of up
    # to max_body_bytes for whoever declares a body, before it knows the token is ours.
    other_path = mint_for(agent, signing_key)  # signed, but for GET /api/v1/system
    for authorization in ("Bearer x.y.z", f"Bearer {other_path}"):
        status_line = await _declare_a_body_and_wait(agent, authorization)
        assert status_line.startswith(b"HTTP/1.1 401"), (authorization[:20], status_line)
