"""Every route table of the public API, in one list: the app, OpenAPI and tests read it."""

from __future__ import annotations

from control_plane.api import (
    account_settings,
    api_keys,
    audit,
    auth,
    backups,
    blueprints,
    console,
    files,
    infrastructure,
    mfa,
    oauth,
    passkeys,
    schedules,
    server_settings,
    servers,
    sftp_passwords,
    ssh_keys,
    subusers,
    users,
)
from control_plane.api.routing import ApiRoutes, Endpoint

ROUTE_TABLES: list[ApiRoutes] = [
    auth.routes,
    mfa.routes,
    oauth.routes,
    passkeys.routes,
    users.routes,
    account_settings.routes,
    api_keys.routes,
    ssh_keys.routes,
    sftp_passwords.routes,
    audit.routes,
    infrastructure.routes,
    blueprints.routes,
    servers.routes,
    server_settings.routes,
    subusers.routes,
    console.routes,
    files.routes,
    backups.routes,
    schedules.routes,
]


def endpoints() -> list[Endpoint]:
    return [endpoint for table in ROUTE_TABLES for endpoint in table.endpoints]
