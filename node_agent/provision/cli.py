"""The ``install`` and ``uninstall`` subcommands of ``stellar-agent``."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from node_agent import firewall
from node_agent.provision.bundle import Bundle, read_bundle
from node_agent.provision.errors import InstallError
from node_agent.provision.install import DEFAULT_POOL_SIZE_MIB, InstallOptions, install
from node_agent.provision.layout import Layout
from node_agent.provision.systemd import DEFAULT_AGENT_BIN
from node_agent.provision.uninstall import uninstall


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("install", help="install this node's agent from an enrolment bundle")
    parser.add_argument(
        "--bundle", required=True, help="the TOML `stellar-cp node add` printed (- for stdin)"
    )
    parser.add_argument("--prefix", type=Path, default=Path("/"), help="install under this root")
    parser.add_argument("--deploy-dir", type=Path, default=None, help="unit and firewall templates")
    parser.add_argument(
        "--agent-bin", default=None, help="the stellar-agent executable for the unit"
    )
    parser.add_argument("--pool-size-mib", type=int, default=DEFAULT_POOL_SIZE_MIB)
    parser.add_argument(
        "--pool-device", default=None, help="a btrfs partition to use instead of an image"
    )
    parser.add_argument(
        "--environment", choices=("production", "development"), default="production"
    )
    parser.add_argument("--skip-docker-check", action="store_true")
    parser.add_argument(
        "--tls-host", default=None, help="the certificate's SAN (default: listen_host)"
    )
    firewall.add_policy_arguments(parser, agent_port_required=False, game_ports_default=None)
    parser.set_defaults(handler=_cmd_install)

    remove = sub.add_parser("uninstall", help="remove the agent's units (data kept unless --purge)")
    remove.add_argument("--prefix", type=Path, default=Path("/"))
    remove.add_argument(
        "--purge", action="store_true", help="also delete config, TLS key, server data"
    )
    remove.set_defaults(handler=_cmd_uninstall)


def _default_agent_bin() -> str:
    beside_python = Path(sys.executable).parent / "stellar-agent"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("stellar-agent") or DEFAULT_AGENT_BIN


def _cmd_install(args: argparse.Namespace) -> int:
    try:
        bundle = read_bundle(args.bundle)
        if args.tls_host:
            bundle = Bundle(bundle.settings, bundle.control_plane, bundle.game_ports, args.tls_host)
        options = InstallOptions(
            bundle=bundle,
            layout=Layout(args.prefix.resolve()),
            deploy_dir=args.deploy_dir or firewall.default_deploy_dir(),
            agent_bin=args.agent_bin or _default_agent_bin(),
            pool_size_mib=args.pool_size_mib,
            pool_device=args.pool_device,
            environment=args.environment,
            check_docker=not args.skip_docker_check,
            control_plane=tuple(args.control_plane),
            game_ports=args.game_ports,
            ssh_port=args.ssh_port,
        )
        install(options)
    except (InstallError, firewall.FirewallError) as err:
        print(f"stellar-agent install: {err}", file=sys.stderr)
        return 1
    return 0


def _cmd_uninstall(args: argparse.Namespace) -> int:
    try:
        uninstall(Layout(args.prefix.resolve()), purge=args.purge)
    except InstallError as err:
        print(f"stellar-agent uninstall: {err}", file=sys.stderr)
        return 1
    return 0
