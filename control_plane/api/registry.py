"""Every route table of the public API, in one list: the app, OpenAPI and tests read it."""

from __future__ import annotations

from control_plane.api import (
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
    server_limits,
    server_settings,
    servers,
    sftp_passwords,
    ssh_keys,
    subusers,
    users,
)
from control_plane.api.compat import (
    application_infra,
    application_server_changes,
    application_servers,
    application_users,
    client,
    client_backups,
    client_files,
    client_settings,
    client_subusers,
)
from control_plane.api.routing import ApiRoutes, Endpoint

ROUTE_TABLES: list[ApiRoutes] = [
    auth.routes,
    mfa.routes,
    oauth.routes,
    passkeys.routes,
    users.routes,
    api_keys.routes,
    ssh_keys.routes,
    sftp_passwords.routes,
    audit.routes,
    infrastructure.routes,
    blueprints.routes,
    servers.routes,
    server_limits.routes,
    server_settings.routes,
    subusers.routes,
    console.routes,
    files.routes,
    backups.routes,
    # The Pterodactyl-compatible API (docs/pterodactyl-compat.md).
    application_users.routes,
    application_infra.routes,
    application_servers.routes,
    application_server_changes.routes,
    client.routes,
    client_backups.routes,
    client_files.routes,
    client_settings.routes,
    client_subusers.routes,
]


def endpoints() -> list[Endpoint]:
    return [endpoint for table in ROUTE_TABLES for endpoint in table.endpoints]
