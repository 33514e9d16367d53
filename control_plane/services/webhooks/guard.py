"""The SSRF policy for webhook URLs: shared.ssrf's, with the resolver the app was given.

A URL is checked when it is saved and again at every attempt (the dispatcher's
OutboundClient connects only to the addresses that attempt's check approved), so a name that
resolved to a public address at save time and to a private one later is refused then.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import ClassVar

from shared.errors import ApiError
from shared.outbound import OutboundClient
from shared.ssrf import (
    HostResolver,
    IPNetwork,
    OutboundFetchFailed,
    check_url,
    resolve_with_system_dns,
)

# Saving waits at most this long for the name to resolve.
SAVE_CHECK_SECONDS = 5.0


class UnresolvableWebhookUrl(ApiError):
    """The URL's host name does not resolve (at save time)."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "unresolvable_url"


@dataclass(frozen=True)
class WebhookUrlGuard:
    """How webhook URLs are checked: the resolver, and (tests only) networks a name may
    resolve into (``STELLAR_WEBHOOK_TEST_ALLOW_NETWORKS``, refused in production)."""

    resolver: HostResolver = resolve_with_system_dns
    allow_for_tests: frozenset[IPNetwork] = field(default_factory=frozenset)

    async def check(self, url: str) -> None:
        """Raise UnsafeURL (400) for a refused URL, UnresolvableWebhookUrl for a dead name."""
        try:
            async with asyncio.timeout(SAVE_CHECK_SECONDS):
                await check_url(url, resolver=self.resolver, allow_for_tests=self.allow_for_tests)
        except (OutboundFetchFailed, TimeoutError) as err:
            raise UnresolvableWebhookUrl(
                "the URL's host name could not be resolved; check it and try again"
            ) from err

    def client(self) -> OutboundClient:
        """An HTTP client bound to this policy (open it with ``async with``)."""
        return OutboundClient(
            resolver=self.resolver,
            allow_for_tests=self.allow_for_tests,
            user_agent="StellarStack-Webhooks",
        )
