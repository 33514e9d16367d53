"""Drive the real control-plane app: users in the database, browsers with cookie jars, API keys."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.engine import session_factory
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from control_plane.services import users

PASSWORD = "correct horse battery staple"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Browser:
    """One cookie jar; remembers the CSRF token of its session and sends it on unsafe requests."""

    client: TestClient[Any, Any]
    csrf: str | None = None
    api_key: str | None = None
    send_csrf: bool = True
    last: dict[str, Any] = field(default_factory=dict)

    async def request(self, method: str, path: str, **kwargs: Any) -> ClientResponse:
        headers = dict(kwargs.pop("headers", {}))
        if self.api_key:
            headers.setdefault("Authorization", f"Bearer {self.api_key}")
        if method in UNSAFE and self.csrf and self.send_csrf:
            headers.setdefault("X-CSRF-Token", self.csrf)
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def json(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        body = await response.json() if response.status != 204 else None
        assert response.status == status, f"{method} {path}: {response.status} {body}"
        return body

    async def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        body = await self.json(
            "POST", "/api/v1/auth/login", json={"email": email, "password": password}
        )
        self.csrf = body["csrf_token"]
        return dict(body)


@dataclass
class Panel:
    """The control plane under test."""

    server: TestServer
    make_client: AiohttpClient

    async def browser(self) -> Browser:
        return Browser(await self.make_client(self.server))

    def db(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A transaction on the app's own database, for a test to arrange or inspect rows."""
        return transaction(session_factory(self.server.app[ENGINE]))

    async def create_user(
        self, email: str, *, admin: bool = False, password: str = PASSWORD
    ) -> str:
        async with self.db() as db:
            user = await users.create_user(
                db, email=email, password=password, is_admin=admin, bcrypt_cost=10
            )
            return str(user.id)

    async def signed_in(self, email: str, *, admin: bool = False) -> Browser:
        await self.create_user(email, admin=admin)
        browser = await self.browser()
        await browser.login(email)
        return browser
