"""``stellar-agent``: the node agent's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import structlog
from aiohttp import web

from node_agent.app import create_app
from node_agent.settings import ConfigError, load_settings
from shared.logging import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stellar-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the agent")
    serve.add_argument("--config", type=Path, required=True, help="path to the agent's TOML config")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("--config", type=Path, required=True)
    return parser


def _refuse(err: ConfigError) -> int:
    print("stellar-agent: the configuration is not usable:", file=sys.stderr)
    for problem in err.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
    )
    try:
        web.run_app(
            create_app(settings),
            host=settings.listen_host,
            port=settings.listen_port,
            print=None,
            access_log=None,
            shutdown_timeout=10,
        )
    except ConfigError as err:
        # Found while starting, before listening: e.g. no disk backend usable in production.
        return _refuse(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
