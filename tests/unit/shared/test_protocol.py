"""CommandVerifier and mint at their boundaries, with a fake clock and an in-memory replay cache."""

from __future__ import annotations

import codecs
import json
import uuid
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.protocol import (
    ACCEPTED_HEADERS_KEPT,
    ALGORITHM,
    MAX_HTU_LENGTH,
    MAX_ISSUER_LENGTH,
    MAX_LEEWAY_SECONDS,
    MAX_LIFETIME_SECONDS,
    MAX_TOKEN_LENGTH,
    MAX_USER_LENGTH,
    REQUIRED_CLAIMS,
    TOKEN_TYPE,
    CommandClaims,
    CommandRejected,
    CommandVerifier,
    body_hash,
    mint,
    node_audience,
)
from tests.support.agent_process import SigningKey, assemble, b64url

NODE_ID = uuid.UUID("6f1c2a3b-4d5e-4f60-8a9b-0c1d2e3f4a5b")
ISSUER = "stellar-cp"
PATH = "/api/v1/system"
IAT = 1_700_000_000


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class MemoryReplayCache:
    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def remember(self, jti: str, expires_at: int) -> bool:
        if jti in self.seen:
            return False
        self.seen[jti] = expires_at
        return True


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def verifier(
    key: SigningKey,
    clock: FakeClock,
    *,
    leeway: int = 5,
    max_lifetime: int = MAX_LIFETIME_SECONDS,
    cache: MemoryReplayCache | None = None,
) -> CommandVerifier:
    return CommandVerifier(
        trusted_keys={key.kid: key.public_key},
        issuer=ISSUER,
        node_id=NODE_ID,
        replay_cache=cache if cache is not None else MemoryReplayCache(),
        leeway=leeway,
        max_lifetime=max_lifetime,
        clock=clock,
    )


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": node_audience(NODE_ID),
        "sub": "node",
        "act": "node.system",
        "htm": "GET",
        "htu": PATH,
        "bdh": body_hash(b""),
        "usr": "user-1",
        "iat": IAT,
        "exp": IAT + 30,
        "jti": "abcdefghijklmnopqrstuvwx",
    }
    base.update(overrides)
    return base


def sign(key: SigningKey, payload: dict[str, Any]) -> str:
    """Sign any claims with the real key, bypassing mint's own checks."""
    return jwt.encode(
        payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": TOKEN_TYPE}
    )


def check(v: CommandVerifier, token: str, *, path: str = PATH, body: bytes = b"") -> CommandClaims:
    return v.verify(token, method="GET", path=path, body=body)


def minted(key: SigningKey, *, lifetime: int = 30, now: float = IAT) -> str:
    return mint(
        private_key=key.private_key,
        kid=key.kid,
        issuer=ISSUER,
        node_id=NODE_ID,
        subject="node",
        action="node.system",
        method="GET",
        path=PATH,
        body=b"",
        user="user-1",
        lifetime=lifetime,
        now=now,
    )


# --- expiry and leeway ---


@pytest.mark.parametrize("leeway", [0, 5, MAX_LEEWAY_SECONDS])
def test_token_is_accepted_just_before_exp_plus_leeway(key: SigningKey, leeway: int) -> None:
    token = sign(key, claims(exp=IAT + 30))
    check(verifier(key, FakeClock(IAT + 30 + leeway - 0.001), leeway=leeway), token)


@pytest.mark.parametrize("leeway", [0, 5, MAX_LEEWAY_SECONDS])
def test_token_is_refused_exactly_at_exp_plus_leeway(key: SigningKey, leeway: int) -> None:
    token = sign(key, claims(exp=IAT + 30))
    with pytest.raises(CommandRejected) as info:
        check(verifier(key, FakeClock(IAT + 30 + leeway), leeway=leeway), token)
    assert info.value.reason == "expired"


@pytest.mark.parametrize("leeway", [0, 5, MAX_LEEWAY_SECONDS])
def test_token_issued_up_to_leeway_in_the_future_is_accepted(key: SigningKey, leeway: int) -> None:
    token = sign(key, claims())
    check(verifier(key, FakeClock(IAT - leeway), leeway=leeway), token)


@pytest.mark.parametrize("leeway", [0, 5, MAX_LEEWAY_SECONDS])
def test_token_issued_beyond_leeway_in_the_future_is_refused(key: SigningKey, leeway: int) -> None:
    token = sign(key, claims())
    with pytest.raises(CommandRejected) as info:
        check(verifier(key, FakeClock(IAT - leeway - 0.001), leeway=leeway), token)
    assert info.value.reason == "not yet valid"


@pytest.mark.parametrize("leeway", [-1, MAX_LEEWAY_SECONDS + 1])
def test_verifier_refuses_leeway_outside_contract(key: SigningKey, leeway: int) -> None:
    with pytest.raises(ValueError, match="leeway"):
        verifier(key, FakeClock(IAT), leeway=leeway)


# --- lifetime ---


def test_token_living_exactly_the_maximum_is_accepted(key: SigningKey) -> None:
    token = sign(key, claims(exp=IAT + MAX_LIFETIME_SECONDS))
    assert check(verifier(key, FakeClock(IAT)), token).exp == IAT + 60


@pytest.mark.parametrize("lifetime", [MAX_LIFETIME_SECONDS + 1, 3600, 0, -1])
def test_token_living_over_the_maximum_or_not_at_all_is_refused(
    key: SigningKey, lifetime: int
) -> None:
    token = sign(key, claims(exp=IAT + lifetime))
    with pytest.raises(CommandRejected) as info:
        check(verifier(key, FakeClock(IAT)), token)
    assert info.value.reason == "lifetime over maximum"


def test_lower_configured_maximum_lifetime_is_enforced(key: SigningKey) -> None:
    v = verifier(key, FakeClock(IAT), max_lifetime=30)
    check(v, sign(key, claims(exp=IAT + 30, jti="a" * 22)))
    with pytest.raises(CommandRejected, match="lifetime over maximum"):
        check(v, sign(key, claims(exp=IAT + 31, jti="b" * 22)))


@pytest.mark.parametrize("max_lifetime", [0, MAX_LIFETIME_SECONDS + 1])
def test_verifier_refuses_maximum_lifetime_outside_contract(
    key: SigningKey, max_lifetime: int
) -> None:
    with pytest.raises(ValueError, match="max lifetime"):
        verifier(key, FakeClock(IAT), max_lifetime=max_lifetime)


def test_mint_accepts_the_maximum_lifetime(key: SigningKey) -> None:
    token = minted(key, lifetime=MAX_LIFETIME_SECONDS)
    got = check(verifier(key, FakeClock(IAT)), token)
    assert got.exp - got.iat == MAX_LIFETIME_SECONDS


@pytest.mark.parametrize("lifetime", [MAX_LIFETIME_SECONDS + 1, 0, -5])
def test_mint_refuses_lifetime_outside_contract(key: SigningKey, lifetime: int) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        minted(key, lifetime=lifetime)


def test_mint_writes_the_contract_header_and_claims(key: SigningKey) -> None:
    token = minted(key)
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "typ": TOKEN_TYPE, "kid": key.kid}
    got = check(verifier(key, FakeClock(IAT)), token)
    assert got.aud == f"node:{NODE_ID}"
    assert got.bdh == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"  # SHA-256 of b""
    assert len(got.jti) >= 22  # at least 128 random bits in base64url


def test_two_minted_tokens_have_different_jti(key: SigningKey) -> None:
    assert minted(key) != minted(key)


def test_the_longest_genuine_token_fits_the_token_limit(key: SigningKey) -> None:
    # Every claim at its longest, iss and usr in characters JSON escapes as surrogate pairs.
    target = "/" + "%41" * ((MAX_HTU_LENGTH - 1) // 3)
    target += "a" * (MAX_HTU_LENGTH - len(target))
    values = claims(
        iss="\U0001f600" * MAX_ISSUER_LENGTH,
        sub=f"server:{NODE_ID}",
        act="a." + "b" * 62,
        htm="OPTIONS",
        htu=target,
        usr="\U0001f600" * MAX_USER_LENGTH,
        iat=IAT * 10**9,
        exp=IAT * 10**9 + 30,
        jti="j" * 64,
    )
    token = sign(key, values)
    assert len(token) <= MAX_TOKEN_LENGTH
    accepted = CommandVerifier(
        trusted_keys={key.kid: key.public_key},
        issuer=values["iss"],
        node_id=NODE_ID,
        replay_cache=MemoryReplayCache(),
        clock=FakeClock(IAT * 10**9),
    ).verify(token, method="OPTIONS", path=target, body=b"")
    assert accepted.htu == target


def test_mint_refuses_a_target_longer_than_a_token_carries(key: SigningKey) -> None:
    with pytest.raises(ValueError, match="htu"):
        mint(
            private_key=key.private_key,
            kid=key.kid,
            issuer=ISSUER,
            node_id=NODE_ID,
            subject="node",
            action="node.system",
            method="GET",
            path="/" + "a" * MAX_HTU_LENGTH,
            body=b"",
            user="user-1",
        )


# --- strict claim types ---


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("iat", str(IAT)),
        ("iat", float(IAT)),
        ("iat", True),
        ("exp", str(IAT + 30)),
        ("exp", IAT + 30.5),
        ("aud", [f"node:{NODE_ID}"]),
        ("usr", 42),
        ("htm", "get"),
        ("bdh", "not-a-hash"),
        ("sub", "server:../../x"),
        ("htu", "/api/v1/system?path=\u00e9"),
        ("htu", '/api/v1/system?path="'),
        ("htu", "api/v1/system"),
    ],
    ids=[
        "iat-string",
        "iat-float",
        "iat-bool",
        "exp-string",
        "exp-float",
        "aud-list",
        "usr-int",
        "htm-lowercase",
        "bdh-short",
        "sub-traversal",
        "htu-not-percent-encoded",
        "htu-quote",
        "htu-relative",
    ],
)
def test_claim_of_the_wrong_type_or_form_is_refused(
    key: SigningKey, claim: str, value: object
) -> None:
    token = sign(key, claims(**{claim: value}))
    cache = MemoryReplayCache()
    with pytest.raises(CommandRejected) as info:
        check(verifier(key, FakeClock(IAT), cache=cache), token)
    assert info.value.reason == f"malformed claims: {claim}"
    assert cache.seen == {}


def test_unexpected_extra_claim_is_refused(key: SigningKey) -> None:
    token = sign(key, claims(nbf=IAT))
    with pytest.raises(CommandRejected, match="malformed claims: nbf"):
        check(verifier(key, FakeClock(IAT)), token)


def test_non_string_jti_is_refused(key: SigningKey) -> None:
    token = sign(key, claims(jti=12345678901234567890123))
    with pytest.raises(CommandRejected):
        check(verifier(key, FakeClock(IAT)), token)


# --- replay ---


def test_accepted_token_is_remembered_until_exp_plus_the_largest_leeway(key: SigningKey) -> None:
    # Not the configured leeway: raising it after a restart must not reopen a replay window.
    cache = MemoryReplayCache()
    got = check(verifier(key, FakeClock(IAT), leeway=7, cache=cache), sign(key, claims()))
    assert cache.seen == {got.jti: IAT + 30 + MAX_LEEWAY_SECONDS}


def test_token_is_accepted_once(key: SigningKey) -> None:
    v = verifier(key, FakeClock(IAT))
    token = minted(key)
    check(v, token)
    with pytest.raises(CommandRejected) as info:
        check(v, token)
    assert info.value.reason == "replayed jti"


@pytest.mark.parametrize(
    ("path", "body", "now"),
    [("/api/v1/servers", b"", IAT), (PATH, b"x", IAT), (PATH, b"", IAT + 3600)],
    ids=["wrong-htu", "wrong-bdh", "expired"],
)
def test_refused_token_does_not_spend_its_jti(
    key: SigningKey, path: str, body: bytes, now: float
) -> None:
    cache = MemoryReplayCache()
    clock = FakeClock(now)
    v = verifier(key, clock, cache=cache)
    token = sign(key, claims())
    with pytest.raises(CommandRejected):
        check(v, token, path=path, body=body)
    assert cache.seen == {}
    clock.now = IAT
    check(v, token)


def test_rejection_reason_never_contains_the_token(key: SigningKey) -> None:
    v = verifier(key, FakeClock(IAT))
    for token in [
        sign(key, claims(iss="evil")),
        sign(key, claims(aud=f"node:{uuid.uuid4()}")),
        sign(key, claims(usr=42)),
        sign(key, claims(htu="/other")),
        "x" * 5000,
        "garbage",
    ]:
        with pytest.raises(CommandRejected) as info:
            check(v, token)
        assert token not in info.value.reason
        assert token not in str(info.value)


# --- differential: never more lenient than PyJWT ---

_TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \n"


def pyjwt_accepts(key: SigningKey, token: str) -> dict[str, Any] | None:
    """The same contract checked by PyJWT's general JWS/JWT code (times left out)."""
    try:
        if jwt.get_unverified_header(token).get("typ") != TOKEN_TYPE:
            return None
        payload: dict[str, Any] = jwt.decode(
            token,
            key.public_key,
            algorithms=[ALGORITHM],
            audience=node_audience(NODE_ID),
            issuer=ISSUER,
            options={"require": list(REQUIRED_CLAIMS), "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        return None
    return payload


@settings(max_examples=400, deadline=None)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0),
            st.sampled_from(["replace", "insert", "delete"]),
            st.sampled_from(_TOKEN_CHARS),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_a_mangled_token_is_accepted_only_if_pyjwt_accepts_it_too(
    key: SigningKey, edits: list[tuple[int, str, str]]
) -> None:
    # The verifier parses the compact JWS itself (for speed); PyJWT is the reference. Edits
    # land anywhere: in the header, the payload, the signature or the dots between them.
    chars = list(sign(key, claims()))
    for position, edit, char in edits:
        index = position % (len(chars) + 1)
        if edit == "insert":
            chars.insert(index, char)
        elif chars and index < len(chars):
            if edit == "replace":
                chars[index] = char
            else:
                del chars[index]
    token = "".join(chars)
    try:
        got: CommandClaims | None = check(verifier(key, FakeClock(IAT)), token)
    except CommandRejected:
        got = None
    if got is not None:
        assert pyjwt_accepts(key, token) == got.model_dump()


# --- the verifier's memory of accepted headers ---


def test_a_remembered_header_does_not_vouch_for_another_key(key: SigningKey) -> None:
    # Once the genuine header was accepted, a token with that same header signed by another
    # key, and one whose header differs by a single field, are each checked in full.
    v = verifier(key, FakeClock(IAT))
    check(v, sign(key, claims(jti="a" * 24)))
    other = SigningKey.generate()
    forged = jwt.encode(
        claims(jti="b" * 24),
        other.private_key,
        algorithm=ALGORITHM,
        headers={"kid": key.kid, "typ": TOKEN_TYPE},
    )
    with pytest.raises(CommandRejected, match="bad signature"):
        check(v, forged)
    wrong_typ = jwt.encode(
        claims(jti="c" * 24), key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid}
    )
    with pytest.raises(CommandRejected, match="wrong typ"):
        check(v, wrong_typ)


def test_many_distinct_accepted_headers_all_still_verify(key: SigningKey) -> None:
    v = verifier(key, FakeClock(IAT))
    for n in range(3 * ACCEPTED_HEADERS_KEPT):
        token = jwt.encode(
            claims(jti=f"{n:024d}"),
            key.private_key,
            algorithm=ALGORITHM,
            headers={"kid": key.kid, "typ": TOKEN_TYPE, "x-n": n},
        )
        assert check(v, token).jti == f"{n:024d}"
    # Anyone can write well-formed headers: what the verifier remembers of them stays bounded.
    assert len(v._accepted_headers) <= ACCEPTED_HEADERS_KEPT


def test_a_signature_spelled_with_spare_bits_set_is_refused(key: SigningKey) -> None:
    # 64 signature bytes are 86 base64url characters; the last carries 4 spare bits. Setting
    # them decodes to the same signature, so it would be a second spelling of one token.
    token = sign(key, claims())
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    assert last & 0b1111 == 0
    respelled = token[:-1] + alphabet[last | 0b0001]
    with pytest.raises(CommandRejected, match="unreadable signature"):
        check(verifier(key, FakeClock(IAT)), respelled)
    check(verifier(key, FakeClock(IAT)), token)


# --- one token, one meaning: header and payload JSON read strictly ---


def raw_signed(key: SigningKey, header: bytes, payload: bytes) -> str:
    signed = f"{b64url(header)}.{b64url(payload)}".encode("ascii")
    return assemble(signed, key.sign(signed))


def members(pairs: list[tuple[str, object]]) -> bytes:
    return ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}").encode()


def contract_header(key: SigningKey) -> bytes:
    return members([("alg", ALGORITHM), ("typ", TOKEN_TYPE), ("kid", key.kid)])


@pytest.mark.parametrize(
    ("header", "payload", "reason"),
    [
        (codecs.BOM_UTF8, b"", "unreadable header: byte order mark"),
        (b"", codecs.BOM_UTF8, "unreadable payload: byte order mark"),
    ],
    ids=["header", "payload"],
)
def test_json_after_a_byte_order_mark_is_refused(
    key: SigningKey, header: bytes, payload: bytes, reason: str
) -> None:
    token = raw_signed(
        key, header + contract_header(key), payload + members(list(claims().items()))
    )
    with pytest.raises(CommandRejected) as info:
        check(verifier(key, FakeClock(IAT)), token)
    assert info.value.reason == reason


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_a_claim_given_twice_is_refused_even_with_the_same_value(
    key: SigningKey, claim: str
) -> None:
    pairs = list(claims().items())
    token = raw_signed(key, contract_header(key), members([*pairs, (claim, claims()[claim])]))
    cache = MemoryReplayCache()
    with pytest.raises(CommandRejected) as info:
        check(verifier(key, FakeClock(IAT), cache=cache), token)
    assert info.value.reason == "unreadable payload: duplicate member"
    assert cache.seen == {}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (json.dumps(claims()).encode("utf-16"), "unreadable payload: not UTF-8"),
        (members([*claims().items(), ("x", float("nan"))]), "unreadable payload: not JSON"),
        (b"[" * 2000 + b"]" * 2000, "unreadable payload: not JSON"),
    ],
    ids=["utf-16", "nan", "deep"],
)
def test_payload_json_that_python_would_read_leniently_is_refused(
    key: SigningKey, payload: bytes, reason: str
) -> None:
    with pytest.raises(CommandRejected) as info:
        check(verifier(key, FakeClock(IAT)), raw_signed(key, contract_header(key), payload))
    assert info.value.reason == reason


def test_a_deeply_nested_header_is_refused_before_the_signature_is_checked(
    key: SigningKey,
) -> None:
    header = b64url(b"[" * 3000 + b"]" * 3000)
    with pytest.raises(CommandRejected) as info:
        check(verifier(key, FakeClock(IAT)), f"{header}.e30.{'A' * 86}")
    assert info.value.reason == "unreadable header: not JSON"
