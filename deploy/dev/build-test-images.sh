#!/usr/bin/env bash
# Build the local images the agent's container tests run, without any registry:
#
#   stellar-test/busybox:latest    a rootfs with a static busybox, its applets, /etc/passwd
#                                  (uid 1000 "container"), /tmp and /home/container
#   stellar-test/fake-game:latest  the same plus /usr/local/bin/fake-game (the entrypoint),
#                                  see deploy/dev/test-images/fake-game.sh, and
#                                  /usr/local/bin/signal-game (records the signal it got)
#   stellar-test/egg-game:latest   the fake game's files with no entrypoint and an egg
#                                  image's command: /entrypoint.sh runs $STARTUP as
#                                  Pterodactyl's yolks images do (test-images/egg-entrypoint.sh)
#
# The busybox binary comes from Debian's busybox-static package (installed when missing and
# run as root). Each image carries a label with a hash of everything it is built from, so a
# second run with nothing changed only inspects the images and returns.
#
# Usage: deploy/dev/build-test-images.sh [--force]
set -euo pipefail

readonly PROG="${0##*/}"
HERE="$(cd "$(dirname "$0")" && pwd)"
readonly HERE
# shellcheck source=../lib/apt.sh source-path=SCRIPTDIR
. "$HERE/../lib/apt.sh"
readonly SOURCES="$HERE/test-images"
readonly BUSYBOX="/bin/busybox"
readonly BASE_IMAGE="stellar-test/busybox:latest"
readonly GAME_IMAGE="stellar-test/fake-game:latest"
readonly EGG_IMAGE="stellar-test/egg-game:latest"
readonly HASH_LABEL="io.stellarstack.test-image.source-hash"
readonly PATH_ENV="PATH=/usr/local/bin:/usr/bin:/bin"

log() { printf '[%s] %s\n' "$PROG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }

FORCE=0
case "${1:-}" in
    "") ;;
    --force) FORCE=1 ;;
    *) die "usage: $0 [--force]" ;;
esac

ensure_busybox() {
    if [[ -x "$BUSYBOX" ]] && "$BUSYBOX" --list >/dev/null 2>&1 \
        && dpkg -s busybox-static >/dev/null 2>&1; then
        return
    fi
    [[ "$(id -u)" -eq 0 ]] || die "busybox-static is not installed (apt-get install busybox-static)"
    log "installing busybox-static"
    apt_get_install busybox-static || die "apt-get install busybox-static failed"
}

# A hash of every input of an image: the busybox binary, the game scripts and this script.
source_hash() {
    cat "$BUSYBOX" "$SOURCES/fake-game.sh" "$SOURCES/fake-game-greet.sh" \
        "$SOURCES/signal-game.sh" "$SOURCES/egg-entrypoint.sh" "$0" \
        | sha256sum | cut -c1-32
}

image_is_current() {
    local image="$1" want="$2" have
    have="$(docker image inspect --format "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$image" \
        2>/dev/null)" || return 1
    [[ "$have" == "$want" ]]
}

# Lay out the rootfs shared by both images in directory $1.
make_rootfs() {
    local root="$1" applet
    mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,home/container,usr/local/bin}
    install -m 0755 "$BUSYBOX" "$root/bin/busybox"
    for applet in $("$BUSYBOX" --list); do
        [[ "$applet" == busybox ]] || ln -sf busybox "$root/bin/$applet"
    done
    chmod 1777 "$root/tmp"
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' \
        'container:x:1000:1000:container:/home/container:/bin/sh' \
        'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
    printf '%s\n' 'root:x:0:' 'container:x:1000:' 'nogroup:x:65534:' >"$root/etc/group"
}

# Pack the rootfs in $1 (everything root-owned, /home/container owned by 1000) to tar file $2.
pack_rootfs() {
    local root="$1" tarball="$2"
    tar -C "$root" --numeric-owner --owner=0 --group=0 --exclude=./home/container \
        -cf "$tarball" .
    tar -C "$root" --numeric-owner --owner=1000 --group=1000 --no-recursion \
        -rf "$tarball" ./home/container
}

# docker import the tar $1 as image $2 with label hash $3 and extra --change arguments.
import_image() {
    local tarball="$1" image="$2" hash="$3" previous
    shift 3
    previous="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
    docker import \
        --change "ENV $PATH_ENV" \
        --change "LABEL $HASH_LABEL=$hash" \
        --change "WORKDIR /home/container" \
        "$@" "$tarball" "$image" >/dev/null
    # The replaced build is left untagged; drop it unless a container still uses it.
    if [[ -n "$previous" ]]; then docker image rm "$previous" >/dev/null 2>&1 || true; fi
    log "built $image"
}

main() {
    command -v docker >/dev/null || die "docker is not installed (deploy/dev/ensure-services.sh docker)"
    docker info >/dev/null 2>&1 || die "the Docker engine is not reachable"
    ensure_busybox
    local hash
    hash="$(source_hash)"
    if ((FORCE == 0)) && image_is_current "$BASE_IMAGE" "$hash" \
        && image_is_current "$GAME_IMAGE" "$hash" && image_is_current "$EGG_IMAGE" "$hash"; then
        log "images are up to date"
        return
    fi

    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    local work="$WORK"
    make_rootfs "$work/rootfs"
    pack_rootfs "$work/rootfs" "$work/busybox.tar"
    import_image "$work/busybox.tar" "$BASE_IMAGE" "$hash" --change 'CMD ["/bin/sh"]'

    install -m 0755 "$SOURCES/fake-game.sh" "$work/rootfs/usr/local/bin/fake-game"
    install -m 0755 "$SOURCES/fake-game-greet.sh" "$work/rootfs/usr/local/bin/fake-game-greet"
    install -m 0755 "$SOURCES/signal-game.sh" "$work/rootfs/usr/local/bin/signal-game"
    pack_rootfs "$work/rootfs" "$work/fake-game.tar"
    import_image "$work/fake-game.tar" "$GAME_IMAGE" "$hash" \
        --change 'ENV SERVER_PORT=25565' \
        --change 'ENTRYPOINT ["/usr/local/bin/fake-game"]' \
        --change 'CMD []'

    install -m 0755 "$SOURCES/egg-entrypoint.sh" "$work/rootfs/entrypoint.sh"
    pack_rootfs "$work/rootfs" "$work/egg-game.tar"
    import_image "$work/egg-game.tar" "$EGG_IMAGE" "$hash" \
        --change 'USER container' \
        --change 'CMD ["/entrypoint.sh"]'
}

main "$@"
