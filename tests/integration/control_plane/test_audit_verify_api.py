"""``GET /api/v1/audit/verify``: the hash chain's state for administrators (the admin audit
page shows it), the same verdict as ``stellar-cp audit verify``."""

from __future__ import annotations

from sqlalchemy import update

from control_plane.db.engine import session_factory
from control_plane.db.models import AuditEntry
from control_plane.db.session import transaction
from control_plane.keys import ENGINE
from tests.integration.control_plane.test_audit import make_history
from tests.support.panel import Panel

VERIFY = "/api/v1/audit/verify"


async def test_an_intact_chain_is_reported_intact_with_its_row_count(panel: Panel) -> None:
    await make_history(panel)
    admin = await panel.browser()
    await admin.login("root@example.org")
    verdict = await admin.json("GET", VERIFY)
    # The five rows of the history, and this sign-in.
    assert verdict == {"intact": True, "rows": 6, "problems": []}


async def test_an_edited_row_is_named_as_the_command_line_names_it(panel: Panel) -> None:
    await make_history(panel)
    async with transaction(session_factory(panel.server.app[ENGINE])) as db:
        await db.execute(update(AuditEntry).where(AuditEntry.id == 3).values(actor_email="x@y.z"))
    admin = await panel.browser()
    await admin.login("root@example.org")
    verdict = await admin.json("GET", VERIFY)
    assert verdict["intact"] is False
    assert verdict["problems"] == ["row 3: contents were changed after it was written"]


async def test_only_administrators_may_verify(panel: Panel) -> None:
    user = await panel.signed_in("plain@example.org")
    refused = await user.json("GET", VERIFY, status=403)
    assert refused["error"]["message"] == "administrators only"
    anonymous = await panel.browser()
    await anonymous.json("GET", VERIFY, status=401)
