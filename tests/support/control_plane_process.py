"""Run real ``stellar-cp serve`` processes (replicas) for tests, and talk to them over HTTP.

:class:`ControlPlaneProcess` starts ``python -m control_plane serve`` with the environment a
test gives (its own port, the shared database, keys and Redis), its output captured to a
file, and waits for ``/healthz``; it can be killed (SIGKILL), frozen (SIGSTOP) and stopped.
:class:`RemoteBrowser` is a cookie jar on one replica with the interface of
:class:`tests.support.panel.Browser`.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from tests.support.agent_process import free_port
from tests.support.panel import PASSWORD, UNSAFE
from tests.support.service_process import ServiceProcess

START_TIMEOUT_SECONDS = 30.0


@dataclass
class ControlPlaneProcess(ServiceProcess):
    """One control-plane replica as a subprocess."""

    STOP_SECONDS: ClassVar[float] = 15.0

    root: Path
    environment: dict[str, str]
    name: str = "replica"
    port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.name}.log"

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Launch the replica (on a fresh port the first time) and wait for ``/healthz``."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            **self.environment,
            "STELLAR_HOST": "127.0.0.1",
            "STELLAR_PORT": str(self.port),
        }
        self.launch(["control_plane", "serve"], env, self.root)
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.kill()
            raise

    def metric(self, text: str, name: str, **labels: str) -> float | None:
        """One sample's value in a Prometheus text exposition, None when absent."""
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "")
        found = re.search(rf"^{pattern} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else None


def _session(base_url: str) -> aiohttp.ClientSession:
    # unsafe: cookies of an IP address (127.0.0.1) are kept, as a browser would.
    return aiohttp.ClientSession(base_url=base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))


@dataclass
class RemoteBrowser:
    """A cookie jar on one replica; the CSRF token of its session sent on unsafe requests."""

    base_url: str
    session: aiohttp.ClientSession
    csrf: str | None = None
    api_key: str | None = None

    @classmethod
    def on(cls, replica: ControlPlaneProcess) -> RemoteBrowser:
        return cls(replica.base_url, _session(replica.base_url))

    def moved_to(self, replica: ControlPlaneProcess) -> RemoteBrowser:
        """The same credential (cookies, CSRF token, key) sent to another replica."""
        session = _session(replica.base_url)
        cookies = self.session.cookie_jar.filter_cookies(URL(self.base_url))
        session.cookie_jar.update_cookies(cookies, URL(replica.base_url))
        return RemoteBrowser(replica.base_url, session, self.csrf, self.api_key)

    async def close(self) -> None:
        await self.session.close()

    def headers_for(self, method: str, given: dict[str, str]) -> dict[str, str]:
        headers = dict(given)
        if self.api_key:
            headers.setdefault("Authorization", f"Bearer {self.api_key}")
        if method in UNSAFE and self.csrf:
            headers.setdefault("X-CSRF-Token", self.csrf)
        return headers

    async def status_and_body(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = self.headers_for(method, kwargs.pop("headers", {}))
        async with self.session.request(method, path, headers=headers, **kwargs) as answer:
            body = await answer.json() if answer.status != 204 else None
            return answer.status, body

    async def json(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        got, body = await self.status_and_body(method, path, **kwargs)
        assert got == status, f"{self.base_url} {method} {path}: {got} {body}"
        return body

    async def login(self, email: str, password: str = PASSWORD) -> None:
        body = await self.json(
            "POST", "/api/v1/auth/login", json={"email": email, "password": password}
        )
        self.csrf = body["csrf_token"]

    def ws_connect(self, path: str) -> Any:
        return self.session.ws_connect(path, headers=self.headers_for("GET", {}))
