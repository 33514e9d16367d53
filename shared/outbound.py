"""Requests to user-given URLs that only ever reach the addresses shared.ssrf approved.

``OutboundClient.fetch(url)`` runs :func:`shared.ssrf.check_url`, connects only to the checked
addresses (its resolver does no DNS of its own, so a rebinding name cannot switch addresses
between the check and the connection), follows redirects by hand re-checking every hop, drops
credentials when a redirect leaves the host, and streams the body under a byte cap.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Final, Self

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDictProxy
from yarl import URL

from shared.ssrf import (
    CheckedTarget,
    HostResolver,
    IPNetwork,
    OutboundBodyTooLarge,
    OutboundFetchFailed,
    UnsafeURL,
    check_url,
    resolve_with_system_dns,
)

_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})

_checked_target_for_request: ContextVar[CheckedTarget | None] = ContextVar(
    "checked_target_for_request", default=None
)


class CheckedAddressResolver(AbstractResolver):
    """aiohttp resolver that answers only with the addresses check_url approved for this request.

    It does no DNS at all, so the answer cannot change between the check and the connection
    (DNS rebinding). The approved target travels in a context variable set around each request;
    anything else (no target, another host) fails the connection.
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        target = _checked_target_for_request.get()
        if target is None or host.rstrip(".").lower() != target.host:
            raise OSError(f"no checked address for {host!r}")
        results: list[ResolveResult] = []
        for address in target.addresses:
            address_family = socket.AF_INET if address.version == 4 else socket.AF_INET6
            if family in (socket.AF_UNSPEC, address_family):
                results.append(
                    ResolveResult(
                        hostname=host,
                        host=str(address),
                        port=port,
                        family=address_family,
                        proto=0,
                        flags=socket.AI_NUMERICHOST,
                    )
                )
        if not results:
            raise OSError(f"no checked address of the requested family for {host!r}")
        return results

    async def close(self) -> None:
        """Nothing to release."""


class OutboundResponse:
    """The final (non-redirect) response of a fetch; the body can be read once, capped."""

    def __init__(
        self, response: aiohttp.ClientResponse, target: CheckedTarget, max_bytes: int
    ) -> None:
        self._response = response
        self._max_bytes = max_bytes
        self._consumed = False
        self.target = target
        self.url: URL = target.url
        self.status: int = response.status
        self.headers: CIMultiDictProxy[str] = response.headers

    async def iter_chunks(self, chunk_size: int = 64 * 1024) -> AsyncIterator[bytes]:
        """Yield the body; raise OutboundBodyTooLarge as soon as it passes ``max_bytes``."""
        if self._consumed:
            raise RuntimeError("the body of an outbound response can be read only once")
        self._consumed = True
        declared = self._response.content_length
        if declared is not None and declared > self._max_bytes:
            raise OutboundBodyTooLarge(f"the response is larger than {self._max_bytes} bytes")
        received = 0
        try:
            async for chunk in self._response.content.iter_chunked(chunk_size):
                received += len(chunk)
                if received > self._max_bytes:
                    raise OutboundBodyTooLarge(
                        f"the response is larger than {self._max_bytes} bytes"
                    )
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as err:
            raise OutboundFetchFailed("reading the response failed or timed out") from err

    async def read(self) -> bytes:
        """The whole body, at most ``max_bytes``."""
        return b"".join([chunk async for chunk in self.iter_chunks()])


class OutboundClient:
    """The HTTP client for user-given URLs: one per process, opened in a cleanup context.

    Its session never reads proxy settings from the environment, keeps no cookies between
    fetches, does not decompress (the byte cap counts what arrives) and resolves names only
    through CheckedAddressResolver.
    """

    def __init__(
        self,
        *,
        resolver: HostResolver = resolve_with_system_dns,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = "StellarStack",
        allow_for_tests: frozenset[IPNetwork] = frozenset(),
    ) -> None:
        self._resolver = resolver
        self._ssl_context = ssl_context
        self._user_agent = user_agent
        self._allow_for_tests = allow_for_tests
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(
            resolver=CheckedAddressResolver(),
            use_dns_cache=False,
            ssl=self._ssl_context if self._ssl_context is not None else True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=False,
            headers={"User-Agent": self._user_agent, "Accept-Encoding": "identity"},
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @asynccontextmanager
    async def fetch(
        self,
        url: str,
        *,
        max_bytes: int,
        timeout_seconds: float,
        max_redirects: int = 3,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[OutboundResponse]:
        """Request ``url`` and yield the final response, every hop checked by check_url.

        The body is read from the yielded OutboundResponse and capped at ``max_bytes``; the
        connection is released when the block ends.

        ``timeout_seconds`` covers everything (lookups, redirects, reading the body). A 303, or a
        301/302 to a non-GET request, continues as a bodiless GET; 307/308 repeat the request.
        Credentials headers are dropped when a redirect leaves the origin.
        """
        response, target = await self._follow_redirects(
            url,
            method=method.upper(),
            body=body,
            headers=dict(headers or {}),
            max_redirects=max_redirects,
            deadline=asyncio.get_running_loop().time() + timeout_seconds,
        )
        try:
            yield OutboundResponse(response, target, max_bytes)
        finally:
            response.release()

    async def _follow_redirects(
        self,
        url: str,
        *,
        method: str,
        body: bytes | None,
        headers: dict[str, str],
        max_redirects: int,
        deadline: float,
    ) -> tuple[aiohttp.ClientResponse, CheckedTarget]:
        for _hop in range(max_redirects + 1):
            try:
                async with asyncio.timeout_at(deadline):
                    target = await check_url(
                        url, resolver=self._resolver, allow_for_tests=self._allow_for_tests
                    )
            except TimeoutError as err:
                raise OutboundFetchFailed("resolving the host timed out") from err
            response = await self._send_to_checked_target(target, method, body, headers, deadline)
            location = response.headers.get("Location")
            if response.status not in _REDIRECT_STATUSES or location is None:
                return response, target
            response.release()
            try:
                next_url = target.url.join(URL(location))
            except (ValueError, TypeError) as err:
                raise UnsafeURL("a redirect points to an invalid URL") from err
            if next_url.origin() != target.url.origin():
                headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
            if response.status == 303 or (response.status in (301, 302) and method != "GET"):
                method, body = "GET", None
            url = str(next_url)
        raise OutboundFetchFailed(f"more than {max_redirects} redirects")

    async def _send_to_checked_target(
        self,
        target: CheckedTarget,
        method: str,
        body: bytes | None,
        headers: dict[str, str],
        deadline: float,
    ) -> aiohttp.ClientResponse:
        if self._session is None:
            raise RuntimeError("OutboundClient is not open; use 'async with OutboundClient()'")
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise OutboundFetchFailed("the request timed out")
        pin = _checked_target_for_request.set(target)
        try:
            return await self._session.request(
                method,
                target.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=remaining),
            )
        except aiohttp.ClientSSLError as err:
            raise OutboundFetchFailed("the TLS connection failed or was not trusted") from err
        except (aiohttp.ClientError, TimeoutError) as err:
            raise OutboundFetchFailed("the request failed or timed out") from err
        finally:
            _checked_target_for_request.reset(pin)
