"""SIGTERM (``systemctl stop``, a rolling restart) or SIGINT stops a service in order: it
stops taking connections, lets the requests under way finish (up to the shutdown timeout),
then runs its cleanup with its background tasks still alive, so that they finish their last
work (a node follower's history bucket, a lease given back). Another signal a while later
ends it at once.

Before, ``uvloop.run`` cancelled every task the moment the signal came: the request under
way got no answer and the cleanup found its tasks already cancelled."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.agent_process import free_port
from tests.support.raw_http import RawResponse, read_response, request_bytes

REPOSITORY = Path(__file__).resolve().parents[3]


class Served:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.report = tmp_path / "report.json"
        self.log = tmp_path / "app.log"
        with self.log.open("wb") as log:
            argv = ["-m", "tests.support.graceful_app", str(self.port), str(self.report)]
            self.process = subprocess.Popen(
                [sys.executable, *argv],
                cwd=REPOSITORY,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self) -> None:
        async with asyncio.timeout(20), aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"{self.url}/slow") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)

    def exit_code(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    app = Served(tmp_path)
    try:
        yield app
    finally:
        if app.process.poll() is None:
            app.process.kill()
            app.process.wait()


async def under_way(port: int, seconds: float) -> asyncio.Task[RawResponse]:
    """A request sent (on a connection made before this returns); its answer to come."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("GET", f"/slow?seconds={seconds}", {"Connection": "close"}))
    await writer.drain()

    async def answer() -> RawResponse:
        try:
            return await read_response(reader)
        finally:
            writer.close()

    return asyncio.create_task(answer())


STOPS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]


@pytest.mark.parametrize("signum", STOPS)
@pytest.mark.parametrize("told", [1, 2], ids=["once", "twice-at-once"])
async def test_a_stop_lets_the_request_under_way_finish_then_cleans_up_with_tasks_alive(
    served: Served, signum: signal.Signals, told: int
) -> None:
    """Told twice within a moment (a terminal's Ctrl-C and a wrapper passing it on) is one
    request to stop."""
    await served.ready()
    answer = await under_way(served.port, 1.5)
    await asyncio.sleep(0.3)  # the request is being handled
    for _ in range(told):
        served.process.send_signal(signum)
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.2)
    with pytest.raises(ConnectionRefusedError):  # no new connection is taken
        await asyncio.open_connection("127.0.0.1", served.port)
    response = await answer
    assert (response.status, response.json()) == (200, {"finished": True})
    assert await asyncio.to_thread(served.exit_code, 15) == 0, served.log.read_text()
    assert json.loads(served.report.read_text()) == {
        "alive_at_cleanup": True,
        "outcome": "finished",
    }


@pytest.mark.parametrize("signum", STOPS)
async def test_another_signal_while_stopping_ends_it_at_once(
    served: Served, signum: signal.Signals
) -> None:
    await served.ready()
    answer = await under_way(served.port, 60)
    await asyncio.sleep(0.3)
    served.process.send_signal(signum)  # would wait for the minute-long request
    await asyncio.sleep(1.5)
    assert served.process.poll() is None
    started = time.monotonic()
    served.process.send_signal(signum)
    assert await asyncio.to_thread(served.exit_code, 10) == -signum  # the signal's own end
    assert time.monotonic() - started < 5
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await answer
