#!/usr/bin/env bash
# Build the Freeciv demo image, stellarstack/freeciv-demo:3.0, without any registry.
#
# The game comes from Debian's freeciv-server package (Freeciv 3.0 in Debian 12), installed on
# this host when missing (as root). The image is a root filesystem assembled here and given to
# `docker import`: the freeciv-server binary, the shared libraries ldd names for it, the game's
# data (/usr/share/games/freeciv), a static busybox for a shell, /etc/passwd with the
# unprivileged user 1000 "container", /tmp and /home/container. It holds no package manager and
# nothing that runs as root: StellarStack runs it as UID 1000 with a read-only root.
#
# The image carries a label with a hash of this script: run again, the script only inspects
# the image and returns, unless the image is missing, was built by another version of this
# script, or --force is given. Prints the image's name on stdout; progress goes to stderr.
#
# Usage: deploy/images/freeciv/build.sh [--force]
set -euo pipefail

readonly PROG="${0##*/}"
HERE="$(cd "$(dirname "$0")" && pwd)"
readonly HERE
# shellcheck source=../../lib/apt.sh source-path=SCRIPTDIR
. "$HERE/../../lib/apt.sh"
readonly IMAGE="stellarstack/freeciv-demo:3.0"
readonly PACKAGE="freeciv-server"
readonly SERVER_BINARY="/usr/games/freeciv-server"
readonly DATA_DIR="/usr/share/games/freeciv"
readonly BUSYBOX="/bin/busybox"
readonly HASH_LABEL="io.stellarstack.image.source-hash"
readonly VERSION_LABEL="io.stellarstack.image.freeciv-version"

log() { printf '[%s] %s\n' "$PROG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }

FORCE=0
case "${1:-}" in
    "") ;;
    --force) FORCE=1 ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "usage: $0 [--force]" ;;
esac

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# freeciv-server (which brings freeciv-data) and busybox-static, installed when missing.
ensure_packages() {
    local missing=() package
    for package in "$PACKAGE" busybox-static; do
        installed "$package" || missing+=("$package")
    done
    ((${#missing[@]} == 0)) && return
    [[ "$(id -u)" -eq 0 ]] || die "missing package(s): ${missing[*]}; install them with:
    sudo apt-get install --no-install-recommends ${missing[*]}
or run this script as root (it installs them itself)"
    log "installing ${missing[*]}"
    apt_get_install "${missing[@]}" || {
        apt_get_update || die "apt-get update failed"
        apt_get_install "${missing[@]}" || die "apt-get install ${missing[*]} failed"
    }
}

source_hash() { sha256sum "$0" | cut -c1-32; }

image_is_current() {
    local have
    have="$(docker image inspect --format "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$IMAGE" \
        2>/dev/null)" || return 1
    [[ "$have" == "$1" ]]
}

# Copy a host file to the same path under the rootfs $1, following symlinks.
copy_file() {
    local root="$1" file="$2"
    mkdir -p "$root$(dirname "$file")"
    cp -L "$file" "$root$file"
}

# The shared libraries the binary $1 loads (the dynamic loader included), one path a line.
libraries_of() {
    ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u
}

make_rootfs() {
    local root="$1" library applet
    mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,home/container,usr/games,usr/share/games}
    copy_file "$root" "$SERVER_BINARY"
    while read -r library; do
        copy_file "$root" "$library"
    done < <(libraries_of "$SERVER_BINARY")
    cp -a "$DATA_DIR" "$root/usr/share/games/"
    if [[ -d /etc/freeciv ]]; then cp -a /etc/freeciv "$root/etc/"; fi
    install -m 0755 "$BUSYBOX" "$root/bin/busybox"
    for applet in $("$BUSYBOX" --list); do
        [[ "$applet" == busybox || -e "$root/bin/$applet" ]] || ln -s busybox "$root/bin/$applet"
    done
    chmod 1777 "$root/tmp"
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' \
        'container:x:1000:1000:container:/home/container:/bin/sh' \
        'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
    printf '%s\n' 'root:x:0:' 'container:x:1000:' 'nogroup:x:65534:' >"$root/etc/group"
}

# The rootfs in $1 as the tar file $2: everything root's, /home/container user 1000's.
pack_rootfs() {
    local root="$1" tarball="$2"
    tar -C "$root" --numeric-owner --owner=0 --group=0 --exclude=./home/container -cf "$tarball" .
    tar -C "$root" --numeric-owner --owner=1000 --group=1000 --no-recursion \
        -rf "$tarball" ./home/container
}

main() {
    command -v docker >/dev/null || die "docker is not installed (deploy/dev/ensure-services.sh docker)"
    docker info >/dev/null 2>&1 || die "the Docker engine is not reachable"
    local hash started=$SECONDS
    hash="$(source_hash)"
    if ((FORCE == 0)) && image_is_current "$hash"; then
        log "$IMAGE is up to date"
        printf '%s\n' "$IMAGE"
        return
    fi
    ensure_packages
    local version previous
    version="$(dpkg-query -W -f='${Version}' "$PACKAGE")"
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    make_rootfs "$WORK/rootfs"
    pack_rootfs "$WORK/rootfs" "$WORK/rootfs.tar"
    previous="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
    # FREECIV_LOCAL_ENCODING: without a locale freeciv takes the console for Latin-1, and the
    # image has no iconv module for it (UTF-8 is built into the C library).
    docker import \
        --change 'ENV PATH=/usr/games:/usr/bin:/bin' \
        --change 'ENV HOME=/home/container' \
        --change 'ENV FREECIV_LOCAL_ENCODING=UTF-8' \
        --change 'WORKDIR /home/container' \
        --change 'USER 1000:1000' \
        --change "LABEL $HASH_LABEL=$hash" \
        --change "LABEL $VERSION_LABEL=$version" \
        --change 'EXPOSE 5556/tcp' \
        --change "CMD [\"$SERVER_BINARY\", \"--port\", \"5556\"]" \
        "$WORK/rootfs.tar" "$IMAGE" >/dev/null
    # The image must run as it will be run: unprivileged, read-only, no capabilities.
    docker run --rm --user 1000:1000 --read-only --cap-drop ALL --network none "$IMAGE" \
        "$SERVER_BINARY" --version >&2 || die "the new $IMAGE does not run freeciv-server"
    # The replaced build is left untagged; drop it unless a container still uses it.
    if [[ -n "$previous" && "$previous" != "$(docker image inspect --format '{{.Id}}' "$IMAGE")" ]]; then
        docker image rm "$previous" >/dev/null 2>&1 || true
    fi
    log "built $IMAGE (freeciv-server $version) in $((SECONDS - started)) s"
    printf '%s\n' "$IMAGE"
}

main "$@"
