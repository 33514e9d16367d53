"""The Pterodactyl-compatible API (docs/pterodactyl-compat.md): ``/api/application`` for
billing systems, ``/api/client`` for bots and client libraries.

A thin adapter: each route is declared in a route table like ours (same access, scopes,
permission nodes, rate limits, audit), translates Pterodactyl's input into our models and
runs our handlers and services; nothing here decides who may do what.

- ``errors``: Pterodactyl's error envelope, drawn for these paths by the one error middleware;
- ``envelope``: ``{object, attributes}``, lists with pagination, ``include`` and query models;
- ``ids``: the integer ids and server identifiers in paths, resolved to our UUIDs;
- ``transform``: our rows as Pterodactyl's objects;
- ``application_users``, ``application_infra``, ``application_servers``: ``/api/application``;
- ``client``: ``/api/client``.
"""
