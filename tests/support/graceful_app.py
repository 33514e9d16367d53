"""An app for ``tests/integration/shared/test_graceful_stop.py``, served by
``shared.http_server.run_app`` as both services are: ``GET /slow?seconds=`` answers after that
long; a cleanup context runs a background task (as the services' followers, schedulers and
senders are) and, when it exits, writes to the report file whether that task was still running
and how it ended once told to finish.

    python -m tests.support.graceful_app PORT REPORT
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from shared.http_server import run_app


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("seconds", "0")))
    return web.json_response({"finished": True})


def worker(report: Path) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(_app: web.Application) -> AsyncIterator[None]:
        finishing = asyncio.Event()

        async def work() -> str:
            await finishing.wait()
            await asyncio.sleep(0.2)  # its last write, as a follower's history bucket
            return "finished"

        task = asyncio.create_task(work())
        yield
        alive = not task.done()
        finishing.set()
        try:
            outcome = await task
        except asyncio.CancelledError:
            outcome = "cancelled"
        report.write_text(json.dumps({"alive_at_cleanup": alive, "outcome": outcome}))

    return context


def main() -> None:
    port, report = int(sys.argv[1]), Path(sys.argv[2])
    app = web.Application()
    app.router.add_get("/slow", slow)
    app.cleanup_ctx.append(worker(report))
    run_app(app, host="127.0.0.1", port=port, shutdown_timeout=10)


if __name__ == "__main__":
    main()
