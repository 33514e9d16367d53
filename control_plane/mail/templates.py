"""Mail bodies from Jinja2 templates: a plain-text part and an autoescaped HTML part."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from jinja2 import Environment, PackageLoader, StrictUndefined

SUBJECTS: Final = {
    "verify_email": "Confirm your e-mail address",
    "password_reset": "Reset your password",
    "password_changed": "Your password was reset",
    "email_changing": "Your e-mail address is about to change",
    "invitation": "You are invited to a game server",
    "server_crashed": "Your server crashed",
    "backup_failed": "A backup failed",
    "disk_full": "Your server's disk is full",
    "disk_nearly_full": "Your server's disk is nearly full",
    "new_sign_in": "New sign-in to your account",
}
PANEL_NAME: Final = "StellarStack"


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


@cache
def _environment(html: bool) -> Environment:
    # Two environments: escaping is decided by the part, never by a template's file name.
    return Environment(
        loader=PackageLoader("control_plane.mail", "templates"),
        autoescape=html,  # noqa: S701 (the plain-text part is not HTML)
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
    )


def render(kind: str, context: dict[str, Any], *, base_url: str) -> RenderedMail:
    """The mail ``kind`` with ``context``; values are escaped in the HTML part only."""
    subject = SUBJECTS[kind]
    values = {**context, "subject": subject, "panel_name": PANEL_NAME, "base_url": base_url}
    return RenderedMail(
        subject=subject,
        text=_environment(False).get_template(f"{kind}.txt").render(values),
        html=_environment(True).get_template(f"{kind}.html").render(values),
    )
