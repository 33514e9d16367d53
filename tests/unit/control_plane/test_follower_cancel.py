"""A node follower asked to stop stops, even when its stream failed in the same turn of the
event loop. The stream's error, re-raised while the follower cleaned up, used to replace the
cancellation: the follower treated it as a failed stream, slept its backoff and followed the
node again, and the app's stop waited for it for ever (seen as a CI run hung in a test's
teardown)."""

from __future__ import annotations

import asyncio
import types
import uuid

import pytest
from aiohttp import web

from control_plane.nodes.events import NodeEventListener
from shared.errors import UpstreamUnavailable


async def test_a_follower_cancelled_as_its_stream_fails_is_cancelled() -> None:
    listener = NodeEventListener(web.Application())
    failing = asyncio.Event()

    async def stream_that_fails(_node_id: uuid.UUID, _lease: object) -> None:
        await failing.wait()
        raise UpstreamUnavailable("node 'n' cannot be reached")

    listener._listen = stream_that_fails  # type: ignore[method-assign,assignment]
    lease = types.SimpleNamespace(lost=asyncio.Event())
    follower = asyncio.create_task(listener._follow_under(uuid.uuid4(), lease))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # listening
    failing.set()
    await asyncio.sleep(0)  # the stream has failed; its follower has not heard yet
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower
