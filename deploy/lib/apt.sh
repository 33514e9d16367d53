# shellcheck shell=bash
# apt-get for StellarStack's scripts (sourced by deploy/install-agent.sh and deploy/dev/*.sh):
# wait for another package manager instead of failing at once.
#
# While apt-get, unattended-upgrades or another run of these scripts works, it holds dpkg's
# locks (lock-frontend and lock in /var/lib/dpkg) or apt's lists lock (/var/lib/apt/lists/lock),
# and a second apt-get fails at once ("Could not get lock"). apt_get_install waits for dpkg's
# locks with apt's DPkg::Lock::Timeout; apt_get_update polls the lists lock itself, since that
# option does not cover it (apt 2.6). Both say on stderr who holds the lock and for how long
# they wait. Lock files are found through apt-config, so APT_CONFIG is honoured.
#
# STELLAR_APT_LOCK_WAIT_SECONDS: the longest wait for a lock (default 600).
# Everything is written to stderr; the caller's stdout stays its own.

APT_LOCK_WAIT_SECONDS="${STELLAR_APT_LOCK_WAIT_SECONDS:-600}"

apt_log() { printf '[%s] %s\n' "${PROG:-${0##*/}}" "$*" >&2; }

# The PID of the process holding a POSIX (fcntl) lock on FILE, as apt and dpkg take them.
apt_lock_holder() {
    lslocks --noheadings --raw --output PID,PATH 2>/dev/null |
        awk -v path="$1" '$2 == path { print $1; found = 1; exit } END { exit !found }'
}

apt_describe_process() {
    local comm
    comm="$(cat "/proc/$1/comm" 2>/dev/null)" || comm="gone"
    printf 'process %s (%s)' "$1" "$comm"
}

# apt_config_path ITEM: the path apt-config gives for ITEM (e.g. Dir::State::Lists/d).
apt_config_path() {
    local APT_PATH=""
    eval "$(apt-config shell APT_PATH "$1")"
    printf '%s\n' "$APT_PATH"
}

# dpkg's lock files, as apt finds them (next to Dir::State::status).
apt_dpkg_locks() {
    local admin
    admin="$(dirname "$(apt_config_path Dir::State::status/f)")"
    printf '%s\n' "$admin/lock-frontend" "$admin/lock"
}

# apt_get_update: `apt-get update`, after the lists lock is free (up to the wait).
apt_get_update() {
    # The wait is counted in the seconds slept: bash's SECONDS ticks on whole seconds since
    # the shell started, so "SECONDS + N" can come after little more than N - 1 seconds.
    local lock pid announced=0 waited=0
    lock="$(apt_config_path Dir::State::Lists/d)"
    lock="${lock%/}/lock"
    while true; do
        if pid="$(apt_lock_holder "$lock")"; then
            if ((waited >= APT_LOCK_WAIT_SECONDS)); then
                apt_log "apt-get update: $(apt_describe_process "$pid") still holds $lock after ${APT_LOCK_WAIT_SECONDS}s; giving up"
                return 1
            fi
            if ((announced == 0)); then
                apt_log "apt-get update: another package manager is running ($(apt_describe_process "$pid") holds $lock); waiting up to ${APT_LOCK_WAIT_SECONDS}s for it to finish"
                announced=1
            fi
            sleep 1
            waited=$((waited + 1))
            continue
        fi
        if apt-get update >&2; then
            return 0
        fi
        # Failed: try again only if another apt-get took the lock since we looked.
        apt_lock_holder "$lock" >/dev/null || return 1
    done
}

# apt_get_install PACKAGE...: install without recommends, non-interactively, waiting up to
# the wait for dpkg's locks.
apt_get_install() {
    local lock pid
    while read -r lock; do
        if pid="$(apt_lock_holder "$lock")"; then
            apt_log "apt-get install: another package manager is running ($(apt_describe_process "$pid") holds $lock); waiting up to ${APT_LOCK_WAIT_SECONDS}s for it to finish"
            break
        fi
    done < <(apt_dpkg_locks)
    # NEEDRESTART_SUSPEND: needrestart (if installed) leaves running services alone.
    DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
        apt-get -o DPkg::Lock::Timeout="$APT_LOCK_WAIT_SECONDS" \
        install -y --no-install-recommends "$@" >&2
}
