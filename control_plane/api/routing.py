"""Declarative routes: each endpoint states who may call it and what it takes and returns.

The same declarations drive access checks, request parsing, the transaction per request,
audit of failures, the OpenAPI document and the tests that walk the route table.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from typing import Any, Final, Generic, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.list_cache import json_bytes
from control_plane.api.strict_input import parse_json_body
from control_plane.db.models import Node, Server
from control_plane.db.reader import StatementReader
from control_plane.db.session import transaction
from control_plane.errors import (
    ApiError,
    InvalidRequest,
    NotFound,
    RateLimited,
    RequestTimeout,
    Unauthenticated,
)
from control_plane.keys import (
    CALLER,
    CLIENT_IP,
    METRICS,
    NODES,
    RATE_DECISION,
    RATE_LIMITER,
    READ_SESSIONS,
    SESSIONS,
    SETTINGS,
    STATEMENT_READER,
)
from control_plane.nodes.client import NodeClient
from control_plane.security.api_keys import Scope
from control_plane.security.authn import identify
from control_plane.security.authorization import (
    SAFE_METHODS,
    Requirement,
    refusal,
    scope_for,
)
from control_plane.security.caller import Caller, anonymous_actor
from control_plane.security.permissions import PERMISSIONS, VIEW, ServerAccess
from control_plane.security.rate_limit import SERVER_KEYED
from control_plane.services import audit
from control_plane.services.audit import Actor, AuditEvent
from control_plane.services.infrastructure import get_node
from control_plane.services.servers.access import access_for, standing
from control_plane.settings import ControlPlaneSettings

B = TypeVar("B")
Q = TypeVar("Q")
# Path parameters are ids, spelled one way only: a lower-case hyphenated UUID.
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")
ACCOUNT_PREFIX = "/api/v1/account/"
_CANONICAL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Where nothing is: a path id that names no row resolves to it, so the route's own look-up
# answers 404 exactly as for a UUID that names nothing.
NOWHERE = uuid.UUID(int=0)
COMPAT_APIS = {"/api/application": "application", "/api/client": "client"}


def api_of(path: str) -> str:
    """The API a path belongs to: "application", "client" (Pterodactyl's) or "native"."""
    for root, api in COMPAT_APIS.items():
        if path == root or path.startswith(root + "/"):
            return api
    return "native"


@dataclass(frozen=True)
class PathId:
    """How a path parameter is spelled and, for ids other than our UUIDs, how it is turned
    into the UUID of the row it names (None when it names none), before any check runs."""

    pattern: re.Pattern[str]
    resolve: Callable[[AsyncSession, str], Awaitable[uuid.UUID | None]] | None = None


UUID_ID = PathId(_CANONICAL_ID)


class Access(StrEnum):
    PUBLIC = "public"
    USER = "user"
    ADMIN = "admin"


class Empty(BaseModel):
    """No body or no query parameters."""

    model_config = ConfigDict(frozen=True)


# What a request's body and query are until parsed: one instance, it has nothing to change.
_EMPTY: Final = Empty()


@dataclass(frozen=True)
class RawBody:
    """A body the handler reads itself as bytes (a file), not JSON: what the OpenAPI document
    says of it. The handler enforces ``max_bytes``; ``limit`` describes a limit set elsewhere."""

    description: str = "The raw bytes of the file, not JSON."
    media_type: str = "application/octet-stream"
    max_bytes: int | None = None
    limit: str | None = None

    def describe(self) -> str:
        """The request body's description in the OpenAPI document."""
        text = self.description
        if self.max_bytes is not None:
            text += f" At most {self.max_bytes} bytes (a bigger body is refused with 413)."
        if self.limit is not None:
            text += f" {self.limit}"
        return text


@dataclass
class ApiRequest(Generic[B, Q]):
    """What a handler gets: the parsed input, the caller and the request's transaction."""

    http: web.Request
    endpoint: Endpoint
    body: B
    query: Q
    caller: Caller | None
    _db: AsyncSession | None
    failures: list[AuditEvent] = field(default_factory=list)
    cookies: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)
    # Server routes: the server in the path and what the caller may do on it.
    found: tuple[Server, ServerAccess] | None = None
    # Path ids of another spelling (Pterodactyl's numbers), as the UUIDs they name.
    path_uuids: dict[str, uuid.UUID] = field(default_factory=dict)
    # Run once the request's transaction has committed (e.g. close consoles of a revoked user).
    committed_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Server routes: the requirement the caller was admitted under, and how to read their
    # credential again (the request's headers, unless a signed link stood for it): for
    # ``authorized_again``.
    admitted_under: Requirement | None = None
    reidentify: Callable[[], Awaitable[Caller | None]] | None = None

    def after_commit(self, hook: Callable[[], Awaitable[None]]) -> None:
        self.committed_hooks.append(hook)

    @property
    def server(self) -> Server:
        if self.found is None:
            raise RuntimeError("this route declares no server permission")
        return self.found[0]

    @property
    def access(self) -> ServerAccess:
        if self.found is None:
            raise RuntimeError("this route declares no server permission")
        return self.found[1]

    async def authorized_again(self, *also: str) -> None:
        """For a request that lasts (a body arriving, a download going out, for minutes):
        raise what the route would answer if it came now, when the caller's credential (a
        session ended, a key revoked, the user disabled) or their access to the server (a
        sub-user removed, a permission taken away, the server suspended) has changed since
        it began; ``also``: permissions the request needs besides the route's (replacing a
        file). Refusals are audited; the access read is the request's from then on. A
        transfer under way is the session's activity: it keeps it from its idle end."""
        if self.found is None or self.admitted_under is None:
            raise RuntimeError("this request was not admitted to a server")
        server_id = self.found[0].id
        if self.reidentify is not None:
            caller = await self.reidentify()
        else:
            identified = await identify(self.http, self.http[CLIENT_IP])
            caller = identified if isinstance(identified, Caller) else None
        found = await standing(
            self.http.app[READ_SESSIONS],
            caller,
            server_id,
            self.admitted_under,
            *(replace(self.admitted_under, permission=p) for p in also),
        )
        if isinstance(found, ApiError):
            raise self.deny(found, target="server", server=str(server_id))
        assert caller is not None  # standing refuses a credential that no longer works
        self.caller, self.found = caller, found

    @property
    def db(self) -> AsyncSession:
        if self._db is None:
            raise RuntimeError("this route runs without a transaction")
        return self._db

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """For routes declared ``transactional=False``: a transaction that ``db`` (and so
        ``audit``) uses while the block runs; slow work (bcrypt, the network) goes between."""
        if self._db is not None:
            raise RuntimeError("a transaction is open already")
        factory = self.http.app[SESSIONS if write else READ_SESSIONS]
        async with transaction(factory) as db:
            self._db = db
            try:
                yield db
            finally:
                self._db = None

    @property
    def nodes(self) -> NodeClient:
        """The node client, for a route that declares ``calls_node`` (and so runs without a
        transaction of its own: read, call the node, then write)."""
        if not self.endpoint.calls_node:
            raise RuntimeError(f"{self.endpoint.name} calls a node without declaring calls_node")
        return self.http.app[NODES]

    async def server_node(self) -> Node:
        """The node of the route's server, read in a transaction of its own (then the route
        calls it with no transaction open)."""
        async with self.transaction(write=False) as db:
            return await get_node(db, self.server.node_id)

    @property
    def reader(self) -> StatementReader:
        """Reads of one statement each, outside any transaction (``transactional=False``)."""
        return self.http.app[STATEMENT_READER]

    @property
    def settings(self) -> ControlPlaneSettings:
        return self.http.app[SETTINGS]

    @property
    def ip(self) -> str:
        return self.http[CLIENT_IP]

    @property
    def user_agent(self) -> str:
        return self.http.headers.get("User-Agent", "")[:255]

    @property
    def me(self) -> Caller:
        if self.caller is None:
            raise Unauthenticated("authentication required")
        return self.caller

    @property
    def actor(self) -> Actor:
        return self.caller.actor if self.caller else anonymous_actor(self.ip, self.user_agent)

    def uuid_param(self, name: str) -> uuid.UUID:
        """An id from the path (its one spelling was checked before the handler ran)."""
        resolved = self.path_uuids.get(name)
        if resolved is not None:
            return resolved
        return uuid.UUID(self.http.match_info[name])

    async def audit(self, action: str, *, actor: Actor | None = None, **kwargs: Any) -> None:
        """Record a successful action in this request's transaction."""
        await self.record(AuditEvent(action, **kwargs), actor=actor)

    async def record(self, event: AuditEvent, *, actor: Actor | None = None) -> None:
        """Record ``event`` in this request's transaction."""
        await audit.append(self.db, actor or self.actor, event)

    async def audit_now(self, action: str, **kwargs: Any) -> None:
        """Record an action in a transaction of its own (routes without one)."""
        await _audit_now(self.http, AuditEvent(action, **kwargs))

    def audit_failure(self, action: str, **kwargs: Any) -> None:
        """Record a failed attempt; written after the request's transaction rolls back."""
        self.failures.append(AuditEvent(action, **kwargs))

    def require(self, permission: str) -> None:
        """Refuse (audited 403) unless the caller may also use ``permission`` on this route's
        server (for a permission the body decides, such as a power action's)."""
        need = replace(self.endpoint.requirement, permission=permission)
        error = refusal(self.me, need, self.access)
        if error is not None:
            raise self.deny(error, target="server", server=str(self.server.id))

    def deny(self, error: ApiError, action: str = "auth.denied", **kwargs: Any) -> ApiError:
        """Audit an authorisation failure and return the error to raise."""
        self.audit_failure(action, details={"path": self.http.path, **kwargs})
        return error

    def set_cookie(self, name: str, value: str, **options: Any) -> None:
        self.cookies.append((name, value, options))

    def delete_cookie(self, name: str, **options: Any) -> None:
        self.cookies.append((name, None, options))


@dataclass(frozen=True)
class JsonBytes:
    """The endpoint's response model already written as JSON (a kept list's)."""

    body: bytes


# A dict is the endpoint's response model as plain data, for hot routes that skip building
# models (its shape is the model's: tests compare the two); it is serialised by orjson.
Result = BaseModel | dict[str, Any] | JsonBytes | web.StreamResponse | None
Handler = Callable[[ApiRequest[Any, Any]], Awaitable[Result]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    name: str
    access: Access
    summary: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    tags: tuple[str, ...]
    transactional: bool
    allow_mfa_pending: bool
    rate_limit: str | None
    # For routes on one server ({server_id} in the path): the permission node they need.
    permission: str | None
    # Open to a caller who must still enrol a second factor (STELLAR_REQUIRE_2FA).
    allow_enrolment: bool = False
    # A GET that writes (the OAuth callback a provider redirects to): a writing transaction.
    writes: bool = False
    # Account security: managed from a browser session, never with an API key.
    session_only: bool = False
    # A body of raw bytes (a file) that the handler reads itself, instead of a JSON ``body``.
    raw_body: RawBody | None = None
    # Waits on a node: never inside a database transaction (so never ``transactional``).
    calls_node: bool = False
    # The one scope a key needs here instead of read/write by method (``metrics``); such a
    # scope is kept only by administrators' keys, so it alone stands for administration.
    scope: Scope | None = None
    # Also open without a credential to clients in STELLAR_METRICS_SCRAPERS (Prometheus).
    scrapers: bool = False
    # Open to a user who must still verify their e-mail address (STELLAR_REQUIRE_EMAIL_…).
    allow_unverified: bool = False
    # Answers kept server lists (api/list_cache.py): its authentication read brings the
    # lists' versions (``LISTING_ROUTES``).
    kept_lists: bool = False
    # Path parameters spelled otherwise than as our UUIDs (the table's), by name.
    path_ids: Mapping[str, PathId] = field(default_factory=dict, hash=False, compare=False)

    @cached_property
    def api(self) -> str:
        return api_of(self.path)

    @cached_property
    def resolves(self) -> bool:
        """Whether a path id must be looked up to find the UUID it names."""
        return any(spelling.resolve is not None for spelling in self.path_ids.values())

    @cached_property
    def requirement(self) -> Requirement:
        """What the caller needs (the one authorization decision reads it); the same for
        every request, so built once."""
        return Requirement(
            scope=self.scope or scope_for(self.method),
            admin=self.access is Access.ADMIN and self.scope is None,
            session_only=self.session_only,
            permission=self.permission,
            allow_mfa_pending=self.allow_mfa_pending,
            allow_enrolment=self.allow_enrolment,
            allow_unverified=self.allow_unverified,
            api=self.api,
        )


def _parse(model: type[BaseModel], data: Any, what: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise InvalidRequest.from_validation(err, f"invalid {what}") from err


def _from_scraper(endpoint: Endpoint, request: web.Request) -> bool:
    """Whether the route is open to scrapers and the client is one of the configured ones."""
    if not endpoint.scrapers:
        return False
    networks = request.app[SETTINGS].metrics_scraper_networks
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(request[CLIENT_IP])
    except ValueError:
        return False
    return any(address in network for network in networks)


def _authorize(endpoint: Endpoint, api: ApiRequest[Any, Any]) -> None:
    """The route's requirement, on its server if it has one; refusals are audited."""
    caller = api.caller
    if endpoint.access is Access.PUBLIC or caller is None:
        return
    if _from_scraper(endpoint, api.http):
        return  # an allow-listed scraper: its address is its credential
    error = refusal(caller, endpoint.requirement, api.found[1] if api.found else None)
    if error is None:
        api.admitted_under = endpoint.requirement
        return
    if api.found is not None:
        raise api.deny(error, target="server", server=str(api.found[0].id))
    raise api.deny(error, "auth.forbidden")


# Queries of frozen models as parsed, by (model, raw query text): a list asks with the same
# query on every page view, and pydantic's validation of it was ~12 µs a request. A parse
# depends on the text alone, and a frozen model cannot be changed by one handler under
# another. Bounded: a client that sends ever new queries only evicts the oldest.
_PARSED_QUERIES: dict[tuple[type[BaseModel], str], BaseModel] = {}
PARSED_QUERIES_KEPT: Final = 1024


def _parsed_query(model: type[BaseModel], request: web.Request) -> BaseModel:
    # The raw text: the decoded one is the same for different queries (a%2Bb, a%%32Bb).
    key = (model, request.rel_url.raw_query_string)
    parsed = _PARSED_QUERIES.get(key)
    if parsed is not None:
        return parsed
    parsed = _parse(model, _query_values(request), "query")
    if model.model_config.get("frozen"):
        if len(_PARSED_QUERIES) >= PARSED_QUERIES_KEPT:
            del _PARSED_QUERIES[next(iter(_PARSED_QUERIES))]
        _PARSED_QUERIES[key] = parsed
    return parsed


def _parse_input(endpoint: Endpoint, api: ApiRequest[Any, Any], raw: bytes) -> None:
    request = api.http
    if endpoint.query is not None:
        api.query = _parsed_query(endpoint.query, request)
    if endpoint.body is None:
        return
    if not raw:
        api.body = _parse(endpoint.body, {}, "request body")
        return
    if request.content_type != "application/json":
        raise InvalidRequest("send the body as application/json")
    api.body = _parse(endpoint.body, parse_json_body(raw), "request body")


def _query_values(request: web.Request) -> dict[str, Any]:
    """The query as a dict; a name ending in ``[]`` (``location_ids[]=1&location_ids[]=2``)
    gathers all its values in a list, any other takes its first."""
    values: dict[str, Any] = {}
    for name, value in request.query.items():
        if name.endswith("[]"):
            values.setdefault(name, []).append(value)
        else:
            values.setdefault(name, value)
    return values


def _respond(endpoint: Endpoint, result: Result, api: ApiRequest[Any, Any]) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if result is None:
        response = web.Response(status=204 if endpoint.status == 200 else endpoint.status)
    elif isinstance(result, dict | JsonBytes):
        response = web.Response(
            body=result.body if isinstance(result, JsonBytes) else json_bytes(result),
            status=endpoint.status,
            content_type="application/json",
            charset="utf-8",
        )
    else:
        response = web.json_response(
            text=result.model_dump_json(by_alias=True), status=endpoint.status
        )
    for name, value, options in api.cookies:
        if value is None:
            response.del_cookie(name, **options)
        else:
            response.set_cookie(name, value, **options)
    return response


class ApiRoutes:
    """A route table of :class:`Endpoint` declarations."""

    def __init__(
        self,
        *tags: str,
        access: Access = Access.USER,
        path_ids: Mapping[str, PathId] | None = None,
    ) -> None:
        """``access`` is every route's unless the route says otherwise; ``path_ids`` says how
        the table's path parameters are spelled when they are not our UUIDs."""
        self.tags = tags
        self.access = access
        self.path_ids = dict(path_ids or {})
        self.endpoints: list[Endpoint] = []
        self._routes: list[web.RouteDef] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        access: Access | None = None,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        transactional: bool = True,
        allow_mfa_pending: bool = False,
        rate_limit: str | None = None,
        permission: str | None = None,
        allow_enrolment: bool = False,
        writes: bool = False,
        session_only: bool = False,
        raw_body: RawBody | None = None,
        calls_node: bool = False,
        scope: Scope | None = None,
        scrapers: bool = False,
        allow_unverified: bool = False,
        kept_lists: bool = False,
    ) -> Callable[[Handler], Handler]:
        access = self.access if access is None else access
        if calls_node and transactional:
            raise ValueError(
                f"{method} {path}: a route that calls a node holds no transaction while it "
                "waits (transactional=False: read, call, then write)"
            )
        if body is not None and raw_body is not None:
            raise ValueError(f"{method} {path}: a JSON body or a raw body, not both")
        if raw_body is not None and method in SAFE_METHODS:
            raise ValueError(f"{method} {path}: a raw body needs an unsafe method")
        if "{server_id}" in path and permission is None and access is not Access.ADMIN:
            raise ValueError(f"{method} {path}: a server route must declare its permission")
        for name in _PATH_PARAMETER.findall(path):
            if not name.endswith("_id"):
                raise ValueError(f"{method} {path}: path parameters are ids ({name!r})")
        # Changes to an account's own security (keys, second factors, passkeys, linked
        # accounts) come from a signed-in session: a leaked key cannot entrench itself.
        session_only = session_only or (
            path.startswith(ACCOUNT_PREFIX) and method not in SAFE_METHODS
        )
        if permission is not None and permission not in PERMISSIONS | {VIEW}:
            raise ValueError(f"{method} {path}: unknown permission {permission!r}")

        def register(handler: Handler) -> Handler:
            endpoint = Endpoint(
                method=method,
                path=path,
                name=handler.__name__,
                access=access,
                summary=summary,
                body=body,
                query=query,
                response=response,
                status=status,
                tags=self.tags,
                transactional=transactional,
                allow_mfa_pending=allow_mfa_pending,
                rate_limit=rate_limit,
                permission=permission,
                allow_enrolment=allow_enrolment,
                writes=writes,
                session_only=session_only,
                raw_body=raw_body,
                calls_node=calls_node,
                scope=scope,
                scrapers=scrapers,
                allow_unverified=allow_unverified,
                kept_lists=kept_lists,
                path_ids={
                    name: self.path_ids[name]
                    for name in _PATH_PARAMETER.findall(path)
                    if name in self.path_ids
                },
            )
            self.endpoints.append(endpoint)
            self._routes.append(web.route(method, path, _wrap(endpoint, handler)))
            return handler

        return register

    def get(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kwargs)

    def routes(self) -> list[web.RouteDef]:
        return list(self._routes)


async def _server_for(api: ApiRequest[Any, Any], db: AsyncSession) -> tuple[Server, ServerAccess]:
    """The server in the path, if the caller may see it (whether they may act on it is the
    route's requirement)."""
    server_id = api.uuid_param("server_id")
    found = await access_for(db, api.me, server_id)
    if found is None:
        raise api.deny(NotFound("no such server"), target="server", server=str(server_id))
    return found


async def act_as(
    api: ApiRequest[Any, Any], caller: Caller, server_id: uuid.UUID, need: Requirement
) -> None:
    """Make ``caller`` the request's caller on ``server_id`` (a route whose credential is in
    a signed link, not in its headers), deciding as for any server route: someone else's
    server is 404, then ``need`` on it; refusals are audited."""
    api.caller = caller
    api.http[CALLER] = caller
    found = await standing(api.http.app[READ_SESSIONS], caller, server_id, need)
    if isinstance(found, ApiError):
        raise api.deny(found, target="server", server=str(server_id))
    api.found = found
    api.admitted_under = need


async def _take_server_bucket(endpoint: Endpoint, api: ApiRequest[Any, Any]) -> None:
    """A per-server preset's token, once the caller is known to see the server and is
    authorised for the route: nobody spends another's tokens by being refused."""
    if api.found is not None and endpoint.rate_limit in SERVER_KEYED:
        await _take(api.http, str(endpoint.rate_limit), str(api.found[0].id))


async def _audit_now(request: web.Request, *events: AuditEvent) -> None:
    caller = request.get(CALLER)
    actor = (
        caller.actor
        if caller
        else anonymous_actor(request[CLIENT_IP], request.headers.get("User-Agent", "")[:255])
    )
    async with transaction(request.app[SESSIONS]) as db:
        for event in events:
            await audit.append(db, actor, event)


async def _read_raw(request: web.Request) -> bytes:
    """The body, within the size limit and the time limit (slow clients get 408)."""
    try:
        async with asyncio.timeout(request.app[SETTINGS].body_timeout_seconds):
            return await request.read()
    except TimeoutError as err:
        raise RequestTimeout("the request body took too long to arrive") from err


async def _take(request: web.Request, preset: str, *scope: str) -> None:
    """One token from a preset's bucket for this client (and ``scope``), or 429."""
    decision = await request.app[RATE_LIMITER].check(preset, request[CLIENT_IP], *scope)
    request[RATE_DECISION] = decision
    if not decision.allowed:
        request.app[METRICS].rate_limited.labels(preset).inc()
        raise RateLimited(
            f"too many requests; try again in {decision.headers(0)['Retry-After']} s",
            headers=decision.headers(time.time()),
        )


def _per_client_preset(endpoint: Endpoint) -> str:
    """The bucket every request takes first, keyed by the client's address alone: anonymous
    traffic never reaches a bucket keyed by anything it chooses (such as a server id)."""
    preset = endpoint.rate_limit or "api"
    return "api" if preset in SERVER_KEYED else preset


def _canonical_ids(endpoint: Endpoint, request: web.Request) -> None:
    """Every id in the path in its one spelling; any other spelling is simply not found."""
    for name, value in request.match_info.items():
        if not endpoint.path_ids.get(name, UUID_ID).pattern.fullmatch(value):
            raise NotFound("not found")


async def _resolve_ids(endpoint: Endpoint, api: ApiRequest[Any, Any], db: AsyncSession) -> None:
    """The UUIDs that the path's other ids name (``NOWHERE`` for none)."""
    for name, spelling in endpoint.path_ids.items():
        if spelling.resolve is not None:
            found = await spelling.resolve(db, api.http.match_info[name])
            api.path_uuids[name] = found or NOWHERE


def _wrap(
    endpoint: Endpoint, handler: Handler
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def run(request: web.Request) -> web.StreamResponse:
        api: ApiRequest[Any, Any] = ApiRequest(
            request, endpoint, _EMPTY, _EMPTY, request.get(CALLER), None
        )
        await _take(request, _per_client_preset(endpoint))
        _canonical_ids(endpoint, request)
        try:
            if (
                endpoint.access is not Access.PUBLIC
                and api.caller is None
                and not _from_scraper(endpoint, request)
            ):
                raise Unauthenticated("authentication required")
            # The body is read before any transaction: a slow client never holds a lock.
            raw = await _read_raw(request) if endpoint.body is not None else b""
            if not endpoint.transactional:
                if endpoint.permission or endpoint.resolves:
                    async with transaction(request.app[READ_SESSIONS]) as db:
                        await _resolve_ids(endpoint, api, db)
                        if endpoint.permission:
                            api.found = await _server_for(api, db)
                _authorize(endpoint, api)
                await _take_server_bucket(endpoint, api)
                _parse_input(endpoint, api, raw)
                result = await handler(api)
                # The handler's own transactions have committed by now.
                for hook in api.committed_hooks:
                    await hook()
                return _respond(endpoint, result, api)
            # Reads on a read-only transaction: on SQLite it never waits for writers.
            reads_only = endpoint.method in SAFE_METHODS and not endpoint.writes
            factory = request.app[READ_SESSIONS if reads_only else SESSIONS]
            async with transaction(factory) as db:
                api._db = db
                if endpoint.resolves:
                    await _resolve_ids(endpoint, api, db)
                # Visibility first: someone else's server is 404 on every route, whatever
                # else would be wrong with the request.
                if endpoint.permission:
                    api.found = await _server_for(api, db)
                _authorize(endpoint, api)
                await _take_server_bucket(endpoint, api)
                _parse_input(endpoint, api, raw)
                result = await handler(api)
            for hook in api.committed_hooks:
                await hook()
            return _respond(endpoint, result, api)
        finally:
            if api.failures:
                await _audit_now(request, *api.failures)

    run.__name__ = handler.__name__
    return run
