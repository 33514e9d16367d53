"""``stellar-agent``: the node agent's command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import structlog

from node_agent import firewall
from node_agent.app import create_app
from node_agent.provision import cli as provision_cli
from node_agent.settings import ConfigError, load_settings
from node_agent.tls import TlsSetupError, generate_identity, server_context
from shared.http_server import run_app
from shared.logging import configure_logging
from shared.node_endpoints import openapi_document


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stellar-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the agent")
    serve.add_argument("--config", type=Path, required=True, help="path to the agent's TOML config")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("--config", type=Path, required=True)
    tls = sub.add_parser("tls", help="the agent's TLS certificate").add_subparsers(
        dest="what", required=True
    )
    generate = tls.add_parser(
        "generate", help="create a key and self-signed certificate; print the fingerprint to pin"
    )
    generate.add_argument("--host", required=True, help="the node's address or DNS name (SAN)")
    generate.add_argument("--out-dir", type=Path, required=True, help="where agent.key/.crt go")
    generate.add_argument("--force", action="store_true", help="replace an existing pair")
    sub.add_parser(
        "api-doc", help="print the node API (OpenAPI 3.1, made from shared/node_endpoints.py)"
    )
    firewall.add_parser(sub)
    provision_cli.add_parsers(sub)
    return parser


def _tls_generate(args: argparse.Namespace) -> int:
    try:
        identity = generate_identity(args.host, args.out_dir, replace=args.force)
    except TlsSetupError as err:
        print(f"stellar-agent: {err}", file=sys.stderr)
        return 1
    print(f"certificate: {identity.cert_file}")
    print(f"key:         {identity.key_file} (mode 0600)")
    print(f"fingerprint: {identity.fingerprint}")
    print("(SHA-256 of the certificate, colon hex: store it as the node's TLS fingerprint)")
    return 0


def _refuse(err: ConfigError) -> int:
    print("stellar-agent: the configuration is not usable:", file=sys.stderr)
    for problem in err.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "tls":
        return _tls_generate(args)
    if args.command == "api-doc":
        print(json.dumps(openapi_document(), indent=2))
        return 0
    if args.command in {"firewall", "install", "uninstall"}:
        code: int = args.handler(args)
        return code
    try:
        settings = load_settings(args.config)
    except ConfigError as err:
        return _refuse(err)
    if args.command == "check-config":
        print(f"{args.config}: ok (node {settings.node_id})")
        return 0
    configure_logging(level=settings.log_level)
    structlog.get_logger("agent").info(
        "starting",
        node_id=str(settings.node_id),
        host=settings.listen_host,
        port=settings.listen_port,
        tls=settings.serves_tls,
    )
    try:
        ssl_context = (
            server_context(settings.tls_cert_file, settings.tls_key_file)
            if settings.tls_cert_file is not None and settings.tls_key_file is not None
            else None
        )
    except TlsSetupError as err:
        return _refuse(ConfigError([str(err)]))
    try:
        run_app(
            create_app(settings),
            ssl_context=ssl_context,
            host=settings.listen_host,
            port=settings.listen_port,
            shutdown_timeout=10,
        )
    except ConfigError as err:
        # Found while starting, before listening: e.g. no disk backend usable in production.
        return _refuse(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
