#!/usr/bin/env bash
# One-command StellarStack node install (Debian 12 / Ubuntu 22.04+), idempotent:
#
#   sudo deploy/install-agent.sh --bundle node.toml [--control-plane CP_IP] [more options]
#   sudo deploy/install-agent.sh --uninstall [--purge]
#
# node.toml is the text `stellar-cp node add` printed (the enrolment bundle). This script
# installs the system packages the agent needs (Docker if there is none, btrfs-progs,
# nftables, python3-venv), installs StellarStack from the source
# tree it lives in into a virtualenv at /opt/stellar-agent, then hands over to
# `stellar-agent install`, which writes the config, the TLS key and certificate, the storage
# pool and the systemd units, and prints the fingerprint to pin and the firewall rules. All
# options are passed on (see `stellar-agent install --help`).
set -euo pipefail

readonly PROG="${0##*/}"
readonly VENV="${STELLAR_AGENT_VENV:-/opt/stellar-agent}"
SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly SOURCE_DIR
# shellcheck source=lib/apt.sh source-path=SCRIPTDIR
. "$SOURCE_DIR/deploy/lib/apt.sh"

log() { printf '[%s] %s\n' "$PROG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

[[ "$(id -u)" -eq 0 ]] || die "run as root (sudo $0 $*)"
(($# > 0)) || die "usage: $PROG --bundle FILE [stellar-agent install options] | --uninstall [--purge]"

if [[ "$1" == --uninstall ]]; then
    shift
    [[ -x "$VENV/bin/stellar-agent" ]] || die "$VENV/bin/stellar-agent not found: nothing to uninstall"
    exec "$VENV/bin/stellar-agent" uninstall "$@"
fi

have apt-get || die "this installer supports Debian and Ubuntu (apt-get); elsewhere install Docker, btrfs-progs, nftables and Python 3.11+ yourself and run stellar-agent install"

packages=()
if ! have dockerd; then packages+=(docker.io); fi
have mkfs.btrfs || packages+=(btrfs-progs)
have nft || packages+=(nftables)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=(python3-venv)
if ((${#packages[@]} > 0)); then
    log "installing: ${packages[*]}"
    # Both wait for another apt-get or unattended-upgrades to finish (and say so).
    apt_get_update || die "apt-get update failed"
    apt_get_install "${packages[@]}" || die "apt-get install ${packages[*]} failed"
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "Python 3.11 or newer is needed (found $(python3 --version 2>&1))"

if [[ -d /run/systemd/system ]] && ! docker info >/dev/null 2>&1; then
    log "starting Docker"
    systemctl enable --now docker.service >&2
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating the virtualenv $VENV"
    python3 -m venv "$VENV"
fi
log "installing StellarStack from $SOURCE_DIR into $VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
"$VENV/bin/python" -m pip install --quiet --upgrade "$SOURCE_DIR" >&2

exec "$VENV/bin/stellar-agent" install --deploy-dir "$SOURCE_DIR/deploy" --agent-bin "$VENV/bin/stellar-agent" "$@"
