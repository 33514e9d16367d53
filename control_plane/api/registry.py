"""Every route table, in one place: the app, OpenAPI and the route walks read it."""

from __future__ import annotations

from control_plane.api import (
    account_activity,
    account_settings,
    alerts,
    api_keys,
    audit,
    auth,
    backups,
    blueprints,
    console,
    console_socket,
    files,
    infrastructure,
    invitations,
    mail_links,
    mail_status,
    metrics,
    mfa,
    oauth,
    passkeys,
    resource_use,
    schedules,
    server_limits,
    server_settings,
    servers,
    sftp_passwords,
    ssh_keys,
    stats_history,
    subusers,
    users,
    webhooks,
)
from control_plane.api.compat import (
    application_infra,
    application_server_changes,
    application_servers,
    application_users,
    client,
    client_account,
    client_activity,
    client_backups,
    client_file_actions,
    client_files,
    client_schedules,
    client_settings,
    client_ssh_keys,
    client_subusers,
    signed_redeem,
    signed_urls,
)
from control_plane.api.routing import ApiRoutes, Endpoint
from control_plane.web import (
    account_pages,
    admin_catalog_pages,
    admin_node_pages,
    admin_pages,
    auth_pages,
    console_page,
    files_page,
    invitation_page,
    pages,
    server_config_pages,
    server_pages,
)

ROUTE_TABLES: list[ApiRoutes] = [
    auth.routes,
    mail_links.routes,
    alerts.routes,
    mail_status.routes,
    mfa.routes,
    oauth.routes,
    passkeys.routes,
    users.routes,
    account_settings.routes,
    account_activity.routes,
    api_keys.routes,
    ssh_keys.routes,
    sftp_passwords.routes,
    audit.routes,
    infrastructure.routes,
    blueprints.routes,
    servers.routes,
    stats_history.routes,
    resource_use.routes,
    server_limits.routes,
    server_settings.routes,
    subusers.routes,
    invitations.routes,
    console.routes,
    console_socket.routes,
    files.routes,
    backups.routes,
    metrics.routes,
    webhooks.routes,
    # The Pterodactyl-compatible API (docs/pterodactyl-compat.md).
    application_users.routes,
    application_infra.routes,
    application_servers.routes,
    application_server_changes.routes,
    client.routes,
    client_backups.routes,
    client_files.routes,
    client_file_actions.routes,
    client_settings.routes,
    client_subusers.routes,
    client_schedules.routes,
    client_account.routes,
    client_activity.routes,
    client_ssh_keys.routes,
    signed_urls.routes,
    signed_redeem.routes,
    schedules.routes,
]


# The web panel's pages: the same declarations (the walks cover them), not in the OpenAPI.
PAGE_TABLES: list[ApiRoutes] = [
    pages.routes,
    auth_pages.routes,
    invitation_page.routes,
    account_pages.routes,
    console_page.routes,
    files_page.routes,
    server_pages.routes,
    server_config_pages.routes,
    admin_pages.routes,
    admin_node_pages.routes,
    admin_catalog_pages.routes,
]


def api_endpoints() -> list[Endpoint]:
    """The JSON API's routes (what OpenAPI documents)."""
    return [endpoint for table in ROUTE_TABLES for endpoint in table.endpoints]


def endpoints() -> list[Endpoint]:
    """Every route: the JSON API's and the panel's pages."""
    return api_endpoints() + [endpoint for table in PAGE_TABLES for endpoint in table.endpoints]
