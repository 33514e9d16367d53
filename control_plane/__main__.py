"""``stellar-cp``: the control plane's command line.

serve                      run the HTTP API
migrate                    bring the database schema up to date
keys generate --out PATH   create the Ed25519 command-signing key (mode 0600)
keys secret                print a random auth secret
keys encryption            print a random encryption key (kid:64 hex)
node add/list/ping         register agents and check them
user create                create an account (the first admin, typically)
audit verify               check the audit trail's hash chain (exit 1 if broken)
secrets reencrypt          re-encrypt stored secrets under the newest encryption key
blueprint import FILE|URL  import Pterodactyl/Pelican eggs as blueprints; prints the report
blueprint export ID        print a blueprint as an egg (--format ptdl_v2|plcn_v3)
dev                        run the control plane and a local agent on this machine
demo create                a Freeciv game server on the local node (image, blueprint, port)
server console ID          a game's console in the terminal (stdin lines are its commands)
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import secrets
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control_plane.settings import ConfigError, ControlPlaneSettings, load_settings
from shared.command_keys import key_id, public_key_text, write_private_key
from shared.errors import ApiError


class CommandFailed(Exception):
    """A CLI command could not do what was asked; the message says why."""


def _settings(*, needs_signing_key: bool = False) -> ControlPlaneSettings:
    """The configuration. In production only serve, node add and node ping need the signing
    key: the unit hands it to serve, and the env file an operator sources lacks it."""
    return load_settings(needs_signing_key=needs_signing_key)


def cmd_serve(_args: argparse.Namespace) -> int:
    from control_plane.server import serve

    return serve(_settings(needs_signing_key=True))


def cmd_migrate(_args: argparse.Namespace) -> int:
    from control_plane.cli_ops import migrate

    revision = asyncio.run(migrate(_settings()))
    print(f"database is at revision {revision}")
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    path: Path = args.out
    if path.exists() and not args.force:
        raise CommandFailed(
            f"{path} exists; pass --force to replace it (agents then need the new key)"
        )
    if path.exists():
        path.unlink()
    key = Ed25519PrivateKey.generate()
    write_private_key(path, key)
    public = key.public_key()
    print(f"wrote {path} (mode 0600)")
    print(f"kid        = {key_id(public)}")
    print(f"public key = {public_key_text(public)}")
    return 0


def cmd_keys_secret(_args: argparse.Namespace) -> int:
    print(secrets.token_urlsafe(48))
    return 0


def cmd_keys_encryption(args: argparse.Namespace) -> int:
    print(f"{args.kid}:{secrets.token_hex(32)}")
    return 0


def cmd_node_add(args: argparse.Namespace) -> int:
    from control_plane.cli_ops import add_node

    print(asyncio.run(add_node(_settings(needs_signing_key=True), name=args.name, url=args.url)))
    return 0


def cmd_node_list(_args: argparse.Namespace) -> int:
    from control_plane.cli_ops import list_nodes

    for line in asyncio.run(list_nodes(_settings())):
        print(line)
    return 0


def cmd_node_pin(args: argparse.Namespace) -> int:
    from control_plane.cli_ops import pin_node

    pinned = asyncio.run(pin_node(_settings(), name=args.name, fingerprint=args.fingerprint))
    print(f"node {args.name!r} pinned to {pinned}")
    return 0


def cmd_node_ping(args: argparse.Namespace) -> int:
    from control_plane.cli_ops import ping_node

    print(asyncio.run(ping_node(_settings(needs_signing_key=True), args.name)))
    return 0


def cmd_user_create(args: argparse.Namespace) -> int:
    from control_plane.cli_ops import create_user

    if args.generate_password:
        password = secrets.token_urlsafe(18)
    elif args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise CommandFailed("the passwords differ")
    settings = _settings()
    created = asyncio.run(
        create_user(
            settings,
            email=args.email,
            password=password,
            is_admin=args.admin,
            only_if_no_admin=args.if_no_admin,
        )
    )
    if created is None:
        print("an admin exists already; nothing created")
        return 0
    print(f"created {'admin ' if args.admin else ''}user {created}")
    if args.generate_password:
        print(f"password: {password}")
    return 0


def cmd_audit_verify(_args: argparse.Namespace) -> int:
    from control_plane.cli_ops import verify_audit

    count, problems = asyncio.run(verify_audit(_settings()))
    if problems:
        print(f"audit trail BROKEN ({len(problems)} problem(s) in {count} rows):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"audit trail intact: {count} rows")
    return 0


def cmd_secrets_reencrypt(args: argparse.Namespace) -> int:
    from control_plane.cli_ops import reencrypt_secrets
    from control_plane.security.encryption import EncryptionNotConfigured

    if args.batch < 1:
        raise CommandFailed("--batch must be at least 1")
    try:
        report = asyncio.run(reencrypt_secrets(_settings(), batch=args.batch))
    except EncryptionNotConfigured as err:
        raise CommandFailed(str(err)) from err
    print(
        f"{report.rows_seen} secret(s) checked, {report.rows_updated} re-encrypted "
        f"under key {report.key_id}"
    )
    if report.unreadable:
        print(f"{len(report.unreadable)} secret(s) cannot be decrypted:", file=sys.stderr)
        for item in report.unreadable:
            print(f"  - {item.table}.{item.column} row {item.row_id}", file=sys.stderr)
        return 1
    return 0


def cmd_blueprint_import(args: argparse.Namespace) -> int:
    from control_plane.cli_ops import import_eggs
    from control_plane.services.eggs.importing import EggRefused

    try:
        imported = asyncio.run(
            import_eggs(
                _settings(),
                args.source,
                accept_unknown_rules=args.accept_unknown_rules,
                accept_extension=args.accept_extension,
            )
        )
    except EggRefused as err:
        print(f"stellar-cp: {err.message}", file=sys.stderr)
        for detail in err.details:
            egg, part = detail.loc[1], detail.loc[2]
            outcome = detail.type.removeprefix("egg_")
            print(f"  egg {egg}  {outcome:<8} {part}: {detail.msg}", file=sys.stderr)
        return 1
    for result in imported:
        verb = "created" if result.created else "updated"
        blueprint = result.blueprint
        print(f"{verb} blueprint {blueprint.name!r} ({blueprint.id}) from a {result.version} egg")
        for item in result.report:
            print(f"  {item.outcome:<8} {item.field}: {item.detail}")
    return 0


def cmd_blueprint_export(args: argparse.Namespace) -> int:
    from control_plane.cli_ops import export_egg

    print(asyncio.run(export_egg(_settings(), args.id, args.format)))
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from control_plane.devstack import run_devstack

    return run_devstack(
        args.data_dir, port=args.port, agent_port=args.agent_port, sftp_port=args.sftp_port
    )


def cmd_demo_create(args: argparse.Namespace) -> int:
    from control_plane.demo import DemoUnavailable, create_demo_server

    settings = _settings(needs_signing_key=True)
    try:
        demo = asyncio.run(
            create_demo_server(settings, owner_email=args.owner, node_name=args.node, ip=args.ip)
        )
    except DemoUnavailable as err:
        raise CommandFailed(str(err)) from err
    print(f"Freeciv demo server {demo.id} created on node {demo.node!r} for {demo.owner}")
    print(f"  image    : {demo.image}")
    print(f"  state    : {demo.state} (the game is up when its console says it accepts clients)")
    print(f"  game     : {demo.ip}:{demo.port} (connect a Freeciv 3.0 client)")
    print(f"  console  : stellar-cp server console {demo.id}")
    print("             type `list` for the players, `help` for more; Ctrl-D leaves")
    return 0


def cmd_server_console(args: argparse.Namespace) -> int:
    from control_plane.cli_console import run_console

    return asyncio.run(run_console(_settings(needs_signing_key=True), args.server_id))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stellar-cp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the HTTP API").set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(
        func=cmd_migrate
    )

    keys = sub.add_parser("keys", help="generate keys and secrets").add_subparsers(
        dest="what", required=True
    )
    generate = keys.add_parser("generate", help="create the Ed25519 command-signing key")
    generate.add_argument("--out", type=Path, required=True)
    generate.add_argument("--force", action="store_true", help="replace an existing key")
    generate.set_defaults(func=cmd_keys_generate)
    keys.add_parser("secret", help="print a random auth secret").set_defaults(func=cmd_keys_secret)
    encryption = keys.add_parser("encryption", help="print a random AES-256 key as kid:hex")
    encryption.add_argument("--kid", default="k1")
    encryption.set_defaults(func=cmd_keys_encryption)

    node = sub.add_parser("node", help="manage nodes").add_subparsers(dest="what", required=True)
    add = node.add_parser("add", help="register a node and print its agent config")
    add.add_argument("--name", required=True)
    add.add_argument(
        "--url", required=True, help="the agent's URL, e.g. https://node1.example:8443"
    )
    add.set_defaults(func=cmd_node_add)
    node.add_parser("list", help="list nodes").set_defaults(func=cmd_node_list)
    pin = node.add_parser("pin", help="pin the SHA-256 fingerprint of the agent's certificate")
    pin.add_argument("--name", required=True)
    pin.add_argument("--fingerprint", required=True, help="as `stellar-agent tls generate` prints")
    pin.set_defaults(func=cmd_node_pin)
    ping = node.add_parser("ping", help="call the node's /api/v1/system with a signed command")
    ping.add_argument("name")
    ping.set_defaults(func=cmd_node_ping)

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="what", required=True)
    create = user.add_parser("create", help="create a user")
    create.add_argument("--email", required=True)
    create.add_argument("--admin", action="store_true")
    source = create.add_mutually_exclusive_group()
    source.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    source.add_argument("--generate-password", action="store_true", help="generate and print one")
    create.add_argument("--if-no-admin", action="store_true", help="do nothing if an admin exists")
    create.set_defaults(func=cmd_user_create)

    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="what", required=True
    )
    audit.add_parser(
        "verify", help="check the hash chain; names any edited or removed row"
    ).set_defaults(func=cmd_audit_verify)

    secrets_ = sub.add_parser("secrets", help="secrets stored encrypted").add_subparsers(
        dest="what", required=True
    )
    reencrypt = secrets_.add_parser(
        "reencrypt", help="re-encrypt stored secrets under the first of STELLAR_ENCRYPTION_KEYS"
    )
    reencrypt.add_argument("--batch", type=int, default=500, help="rows per transaction")
    reencrypt.set_defaults(func=cmd_secrets_reencrypt)

    blueprint = sub.add_parser("blueprint", help="blueprints and eggs").add_subparsers(
        dest="what", required=True
    )
    egg_import = blueprint.add_parser(
        "import", help="import eggs (a file, or an http(s) URL fetched through the SSRF guard)"
    )
    egg_import.add_argument("source", help="a JSON or YAML egg file, or its URL")
    egg_import.add_argument(
        "--accept-unknown-rules",
        action="store_true",
        help="enforce a variable whose rules cannot be translated as a plain string",
    )
    egg_import.add_argument(
        "--accept-extension",
        action="store_true",
        help="apply an export's x_stellarstack block even where it loosens what the egg says "
        "(a writable root, another startup or installer …): for a file you trust",
    )
    egg_import.set_defaults(func=cmd_blueprint_import)
    egg_export = blueprint.add_parser("export", help="print a blueprint as an egg (JSON)")
    egg_export.add_argument("id", help="the blueprint's id")
    egg_export.add_argument("--format", choices=["ptdl_v2", "plcn_v3"], default="ptdl_v2")
    egg_export.set_defaults(func=cmd_blueprint_export)

    dev = sub.add_parser("dev", help="run the control plane and a local agent (development)")
    dev.add_argument("--data-dir", type=Path, default=Path(".stellar"))
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--agent-port", type=int, default=8080)
    dev.add_argument(
        "--sftp-port", type=int, default=2022, help="the local agent's SFTP port (0: no SFTP)"
    )
    dev.set_defaults(func=cmd_dev)

    demo = sub.add_parser("demo", help="the Freeciv demo game").add_subparsers(
        dest="what", required=True
    )
    demo_create = demo.add_parser(
        "create", help="build the image, save the blueprint, create and start a Freeciv server"
    )
    demo_create.add_argument("--owner", help="the owner's email (default: the first admin)")
    demo_create.add_argument("--node", default="local", help="the node's name (default: local)")
    demo_create.add_argument(
        "--ip", default="127.0.0.1", help="the address of a new port if one is needed"
    )
    demo_create.set_defaults(func=cmd_demo_create)

    server = sub.add_parser("server", help="game servers").add_subparsers(
        dest="what", required=True
    )
    console = server.add_parser(
        "console", help="print a game's console; lines read from stdin are its commands"
    )
    console.add_argument("server_id", type=uuid.UUID)
    console.set_defaults(func=cmd_server_console)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as err:
        print("stellar-cp: the configuration is not usable:", file=sys.stderr)
        for problem in err.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    except (ApiError, CommandFailed) as err:
        print(f"stellar-cp: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
