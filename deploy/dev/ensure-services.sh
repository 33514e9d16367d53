#!/usr/bin/env bash
# Bring up the local services the StellarStack test suite and `make run` need:
# Docker, PostgreSQL and Redis, and (test-tools) the programs only tests run
# (the shell linter, nginx, gcc with a static libc, Debian's freeciv-server for the demo
# image). Idempotent: safe to run on a
# fresh Debian 12 machine and on one where everything already runs (then it
# returns quickly).
#
# Works without systemd: daemons are started directly in the background.
#
# Usage: deploy/dev/ensure-services.sh [docker] [postgres] [redis] [test-tools]
#        (any subset, any order; no arguments = docker postgres redis)
#
# Environment overrides (all optional):
#   STELLAR_WAIT_SECONDS   how long to wait for each service (default 60)
#   STELLAR_DOCKERD_ARGS   extra arguments for dockerd (word-split)
#   STELLAR_LOG_DIR        where daemon logs go (default /var/log, or /tmp if
#                          /var/log is not writable)
#   STELLAR_APT_LOCK_WAIT_SECONDS  how long apt-get waits for another package manager
#                          to finish (default 600; deploy/lib/apt.sh)
#
# With test-tools, the PostgreSQL cluster is also set for throw-away test data (fsync,
# synchronous_commit and full_page_writes off, max_connections 300; restarted once).
set -euo pipefail

readonly PROG="${0##*/}"
# shellcheck source=../lib/apt.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
readonly WAIT_SECONDS="${STELLAR_WAIT_SECONDS:-60}"

readonly PG_ROLE="stellar"
readonly PG_PASSWORD="stellar"
readonly PG_DATABASE="stellar_test"
readonly REDIS_HOST="127.0.0.1"
readonly REDIS_PORT="6379"

if [[ -n "${STELLAR_LOG_DIR:-}" ]]; then
    LOG_DIR="$STELLAR_LOG_DIR"
elif [[ -w /var/log ]]; then
    LOG_DIR=/var/log
else
    LOG_DIR="${TMPDIR:-/tmp}"
fi
readonly LOG_DIR
readonly DOCKERD_LOG="$LOG_DIR/stellar-dockerd.log"
readonly REDIS_LOG="$LOG_DIR/stellar-redis.log"

log() { printf '[%s] %s\n' "$PROG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }

usage() {
    cat >&2 <<EOF
Usage: $0 [docker] [postgres] [redis] [test-tools]
Ensures the given local services (default: docker postgres redis) are
installed, running and answering, and with test-tools that the programs only
the tests run are installed. Safe to run repeatedly.
EOF
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }
have() { command -v "$1" >/dev/null 2>&1; }

# Print the last lines of a log file (to stderr), used on failures.
show_log_tail() {
    local file="$1" lines="${2:-40}"
    if [[ -r "$file" ]]; then
        printf '[%s] --- last %s lines of %s ---\n' "$PROG" "$lines" "$file" >&2
        tail -n "$lines" "$file" >&2 || true
        printf '[%s] --- end of %s ---\n' "$PROG" "$file" >&2
    else
        log "(log file $file not readable)"
    fi
}

# wait_until <description> <command...>: poll the command for up to
# WAIT_SECONDS seconds; returns 0 as soon as it succeeds, 1 on timeout.
wait_until() {
    local what="$1"; shift
    local deadline=$((SECONDS + WAIT_SECONDS))
    local announced=0
    while true; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            log "timed out after ${WAIT_SECONDS}s waiting for $what"
            return 1
        fi
        if ((announced == 0)); then
            log "waiting (up to ${WAIT_SECONDS}s) for $what ..."
            announced=1
        fi
        sleep 0.5
    done
}

# Is a live (non-zombie) process with exactly this command name running?
process_running() {
    local name="$1" d comm stat state
    for d in /proc/[0-9]*; do
        comm="$(cat "$d/comm" 2>/dev/null)" || continue
        [[ "$comm" == "$name" ]] || continue
        stat="$(cat "$d/stat" 2>/dev/null)" || continue
        state="${stat##*) }"; state="${state%% *}"
        [[ "$state" == Z || "$state" == X ]] && continue
        return 0
    done
    return 1
}

# ---------------------------------------------------------------------------
# Argument parsing
# ---------------------------------------------------------------------------
WANT_DOCKER=0
WANT_POSTGRES=0
WANT_REDIS=0
WANT_TOOLS=0
ORDER=()

add_service() {
    case "$1" in
        docker)   ((WANT_DOCKER))   || ORDER+=(docker);   WANT_DOCKER=1 ;;
        postgres) ((WANT_POSTGRES)) || ORDER+=(postgres); WANT_POSTGRES=1 ;;
        redis)    ((WANT_REDIS))    || ORDER+=(redis);    WANT_REDIS=1 ;;
        tools)    ((WANT_TOOLS))    || ORDER+=(tools);    WANT_TOOLS=1 ;;
    esac
}

if (($# == 0)); then
    set -- docker postgres redis
fi
for arg in "$@"; do
    case "$arg" in
        docker | postgres | redis) add_service "$arg" ;;
        postgresql | pg) add_service postgres ;;
        test-tools) add_service tools ;;
        -h | --help) usage; exit 0 ;;
        *) usage; die "unknown service '$arg' (expected: docker, postgres, redis, test-tools)" ;;
    esac
done

# ---------------------------------------------------------------------------
# Step 1: packages
# ---------------------------------------------------------------------------
dpkg_installed() {
    have dpkg-query || return 1
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

postgres_server_present() {
    have pg_lsclusters && have pg_ctlcluster && have pg_isready && have psql || return 1
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

# The nginx package starts its default site on port 80 (under systemd, or an init script
# that policy-rc.d allows). The tests need only the binary, so the service this script
# installed is stopped again (and disabled under systemd).
quiet_new_nginx() {
    if [[ -d /run/systemd/system ]] && have systemctl; then
        systemctl disable --now nginx.service >&2 ||
            log "nginx: could not stop and disable the nginx service the package started"
    elif have invoke-rc.d && [[ -x /etc/init.d/nginx ]]; then
        invoke-rc.d nginx stop >&2 || true
    fi
}

# Debian's prometheus package (wanted for promtool) starts a Prometheus server on :9090.
quiet_new_prometheus() {
    if [[ -d /run/systemd/system ]] && have systemctl; then
        systemctl disable --now prometheus.service >&2 ||
            log "prometheus: could not stop and disable the service the package started"
    elif have invoke-rc.d && [[ -x /etc/init.d/prometheus ]]; then
        invoke-rc.d prometheus stop >&2 || true
    fi
}

MISSING_PKGS=()
need_pkg() {
    local p
    for p in "${MISSING_PKGS[@]}"; do [[ "$p" == "$1" ]] && return 0; done
    MISSING_PKGS+=("$1")
}

if ((WANT_DOCKER)); then
    # Any Docker installation (docker.io, docker-ce, ...) is fine; only
    # install docker.io when there is none, as it conflicts with docker-ce.
    if ! have dockerd || ! have docker; then need_pkg docker.io; fi
    if ! have btrfs && ! dpkg_installed btrfs-progs; then need_pkg btrfs-progs; fi
    # Deploy tests: `systemd-analyze verify` (works without systemd as PID 1), nftables
    # rulesets loaded in network namespaces (ip netns).
    have systemd-analyze || need_pkg systemd
    have nft || need_pkg nftables
    have ip || need_pkg iproute2
    # Tests copy /bin/busybox into container rootfs, so it must be the
    # static build; the dynamic "busybox" package does not do.
    if have dpkg-query; then
        dpkg_installed busybox-static || need_pkg busybox-static
    elif ! have busybox; then
        need_pkg busybox-static
    fi
fi
if ((WANT_POSTGRES)); then
    postgres_server_present || need_pkg postgresql
fi
if ((WANT_REDIS)); then
    if ! have redis-server || ! have redis-cli; then need_pkg redis-server; fi
fi
if ((WANT_POSTGRES || WANT_REDIS)); then
    if ! have oathtool; then need_pkg oathtool; fi
fi
NEW_NGINX=0
NEW_PROMETHEUS=0
if ((WANT_TOOLS)); then
    # Run by tests that fail without them under `make test`: the shell scripts' check,
    # `nginx -t` on deploy/nginx's sample, the seccomp probe (`gcc -static`), and the Freeciv
    # demo's image (deploy/images/freeciv/build.sh assembles it from freeciv-server), and
    # OpenSSH's sftp client, which the SFTP tests drive; Chromium, in which the browser
    # tests (Playwright, `executable_path=/usr/bin/chromium`) drive the panel's pages; and
    # promtool, which checks deploy/monitoring's alert rules and scrape configuration; and
    # libfaketime, under which a test runs an agent whose clock is off (test_node_clock.py).
    have shellcheck || need_pkg shellcheck
    if ! have nginx && ! dpkg_installed nginx; then need_pkg nginx; NEW_NGINX=1; fi
    have gcc || need_pkg gcc
    if ! compgen -G '/usr/lib/*/libc.a' >/dev/null && ! dpkg_installed libc6-dev; then
        need_pkg libc6-dev
    fi
    [[ -x /usr/games/freeciv-server ]] || dpkg_installed freeciv-server || need_pkg freeciv-server
    have sftp || dpkg_installed openssh-client || need_pkg openssh-client
    have chromium || need_pkg chromium
    have faketime || dpkg_installed faketime || need_pkg faketime
    if ! have promtool && ! dpkg_installed prometheus; then
        need_pkg prometheus
        NEW_PROMETHEUS=1
    fi
    # Node and npm (Debian's): the Pterodactyl-compatible API's tests drive it with a real
    # third-party client, nodeactyl, installed from the npm registry at its pinned version.
    have node || dpkg_installed nodejs || need_pkg nodejs
    have npm || dpkg_installed npm || need_pkg npm
fi

if ((${#MISSING_PKGS[@]} > 0)); then
    if is_root && have apt-get; then
        log "installing missing packages: ${MISSING_PKGS[*]}"
        # apt output goes to stderr: stdout carries only the final summary. Both wait for
        # another apt-get or unattended-upgrades to finish (and say so) instead of failing.
        apt_get_update || die "apt-get update failed"
        apt_get_install "${MISSING_PKGS[@]}" || die "apt-get install ${MISSING_PKGS[*]} failed"
        hash -r
        if ((NEW_NGINX)); then quiet_new_nginx; fi
        if ((NEW_PROMETHEUS)); then quiet_new_prometheus; fi
    else
        printf '[%s] ERROR: missing package(s): %s\n' "$PROG" "${MISSING_PKGS[*]}" >&2
        if ! have apt-get; then
            printf '[%s] apt-get was not found; install the equivalent packages with your package manager.\n' "$PROG" >&2
            printf '[%s] On Debian/Ubuntu the command would be:\n' "$PROG" >&2
        else
            printf '[%s] Not running as root; install them with:\n' "$PROG" >&2
        fi
        printf '    sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends %s\n' \
            "${MISSING_PKGS[*]}" >&2
        exit 1
    fi
fi

# ---------------------------------------------------------------------------
# Docker
# ---------------------------------------------------------------------------
docker_ok() { docker info >/dev/null 2>&1; }

start_dockerd() {
    is_root || die "docker: dockerd is not running and starting it needs root. Run:
    sudo sh -c 'nohup dockerd >$DOCKERD_LOG 2>&1 &'"
    log "docker: starting dockerd (log: $DOCKERD_LOG)"
    mkdir -p "$LOG_DIR"
    # setsid: detach from our process group so the daemon survives when the
    # calling shell/job is torn down.
    # shellcheck disable=SC2086  # STELLAR_DOCKERD_ARGS is word-split on purpose
    setsid nohup dockerd ${STELLAR_DOCKERD_ARGS:-} </dev/null >"$DOCKERD_LOG" 2>&1 &
    disown || true
}

DOCKER_SUMMARY=""
ensure_docker() {
    if docker_ok; then
        log "docker: already running"
    else
        # Start dockerd unless one is already running (e.g. still starting
        # up, or started by the package's init script); if a running one
        # goes away while we wait (it was shutting down), start ours.
        local started=0 announced=0 deadline=$((SECONDS + WAIT_SECONDS))
        while ! docker_ok; do
            if ! is_root && [[ -z "${DOCKER_HOST:-}" && -S /var/run/docker.sock && ! -w /var/run/docker.sock ]]; then
                die "docker: the daemon socket /var/run/docker.sock is not writable by $(id -un); add the user to the 'docker' group (sudo usermod -aG docker $(id -un)) and log in again, or run this script with sudo"
            fi
            if ((started == 0)) && ! process_running dockerd; then
                start_dockerd
                started=1
            elif ((started == 0 && announced == 0)); then
                log "docker: dockerd process exists but is not answering yet; waiting"
                announced=1
            fi
            if ((SECONDS >= deadline)); then
                log "docker: timed out after ${WAIT_SECONDS}s waiting for 'docker info'"
                local err
                err="$(docker info 2>&1 >/dev/null | tail -n 3 || true)"
                [[ -n "$err" ]] && log "docker info says: $err"
                if grep -qi 'permission denied' <<<"$err"; then
                    log "docker: the daemon runs but $(id -un) cannot use /var/run/docker.sock; add the user to the 'docker' group (sudo usermod -aG docker $(id -un)) and log in again"
                fi
                show_log_tail "$DOCKERD_LOG"
                exit 1
            fi
            sleep 0.5
        done
    fi
    local ver
    ver="$(docker version --format '{{.Server.Version}}' 2>/dev/null || true)"
    DOCKER_SUMMARY="docker: ready (Docker version ${ver:-unknown})"
}

# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------
PG_VERSION=""
PG_CLUSTER=""
PG_PORT=""
PG_LOGFILE=""

# Fill PG_VERSION/PG_CLUSTER/PG_PORT/PG_LOGFILE from pg_lsclusters. Prefers a
# cluster named "main" (newest version first), otherwise the newest cluster.
pg_pick_cluster() {
    local ver name port logfile
    local best="" best_main=""
    # Columns: Ver Cluster Port Status Owner Datadir Logfile. Input is sorted
    # by version, so the last match wins = newest version.
    while read -r ver name port _ _ _ logfile _; do
        [[ -n "$ver" ]] || continue
        best="$ver $name $port ${logfile:-}"
        if [[ "$name" == main ]]; then best_main="$best"; fi
    done < <(pg_lsclusters -h 2>/dev/null | sort -k1,1n)
    local pick="${best_main:-$best}"
    [[ -n "$pick" ]] || return 1
    read -r PG_VERSION PG_CLUSTER PG_PORT PG_LOGFILE <<<"$pick"
    return 0
}

pg_latest_installed_version() {
    local d v best=""
    for d in /usr/lib/postgresql/*/bin/postgres; do
        [[ -x "$d" ]] || continue
        v="${d#/usr/lib/postgresql/}"; v="${v%%/*}"
        if [[ -z "$best" ]] || (( ${v%%.*} > ${best%%.*} )); then best="$v"; fi
    done
    [[ -n "$best" ]] || return 1
    printf '%s\n' "$best"
}

# Run a command as the postgres OS user, from a directory it can read.
as_postgres() {
    if have runuser; then
        (cd / && runuser -u postgres -- "$@")
    else
        local q
        printf -v q '%q ' "$@"
        (cd / && su postgres -s /bin/sh -c "$q")
    fi
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }

pg_psql_super() {
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres "$@"
}

# Does password login over TCP work, with CREATEDB, membership of pg_signal_backend and the
# database owned by the role? (This is exactly what the tests need.)
pg_app_login_ok() {
    local out
    out="$(PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=5 psql -X -q -tA \
        -h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DATABASE" -c \
        "SELECT r.rolcreatedb AND r.rolcanlogin AND d.datdba = r.oid
                AND pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')
           FROM pg_roles r, pg_database d
          WHERE r.rolname = current_user AND d.datname = current_database()" \
        2>/dev/null)" || return 1
    [[ "$out" == t ]]
}

pg_setup_role_and_db() {
    log "postgres: ensuring role '$PG_ROLE' (LOGIN CREATEDB) and database '$PG_DATABASE'"
    # CREATE ROLE cannot use IF NOT EXISTS; do it in a DO block. Always
    # (re)set the password so it is hashed with the current
    # password_encryption (an old md5 hash would fail scram-sha-256 auth).
    pg_psql_super <<SQL
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
        CREATE ROLE "$PG_ROLE" LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
    ELSE
        ALTER ROLE "$PG_ROLE" WITH LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
    END IF;
END
\$\$;
-- Tests drop their databases WITH (FORCE); an autovacuum worker in one can only be ended
-- by a member of pg_signal_backend.
GRANT pg_signal_backend TO "$PG_ROLE";
SQL
    local exists
    exists="$(pg_psql_super -tA -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")"
    if [[ "$exists" != 1 ]]; then
        # CREATE DATABASE cannot run inside a DO block / transaction.
        pg_psql_super -c "CREATE DATABASE \"$PG_DATABASE\" OWNER \"$PG_ROLE\""
    else
        pg_psql_super -c "ALTER DATABASE \"$PG_DATABASE\" OWNER TO \"$PG_ROLE\""
    fi
}

# Password login over the server's Unix socket (the tests connect both ways: a control plane
# on the same host as PostgreSQL may use the socket, docs in deploy/README.md).
pg_socket_login_ok() {
    local dir="" d
    # Debian's directory, then upstream's default (no privilege needed to look).
    for d in /var/run/postgresql /tmp; do
        if [[ -S "$d/.s.PGSQL.$PG_PORT" ]]; then dir="$d"; break; fi
    done
    [[ -n "$dir" ]] || return 1
    [[ "$(PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=5 psql -X -q -tA -h "$dir" \
        -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DATABASE" -c 'SELECT 1' 2>/dev/null)" == 1 ]]
}

# Put one rule at the top of pg_hba.conf (first match wins) after a marker line of its own,
# once: "$1" is the marker, "$2" the rule, "$3" what it is for (logged).
pg_prepend_hba_rule() {
    local marker="$1" rule="$2" what="$3" hba_file tmp
    hba_file="$(pg_psql_super -tA -c 'SHOW hba_file')"
    [[ -n "$hba_file" ]] || return 0
    grep -qxF "$marker" "$hba_file" && return 0
    log "postgres: prepending a scram-sha-256 rule for $PG_ROLE $what to $hba_file"
    tmp="$(mktemp)"
    {
        printf '%s\n%s\n' "$marker" "$rule"
        cat "$hba_file"
    } >"$tmp"
    cat "$tmp" >"$hba_file"   # keep owner/permissions of the original
    rm -f "$tmp"
    pg_psql_super -tA -c 'SELECT pg_reload_conf()' >/dev/null
    sleep 1
}

# Debian's pg_hba.conf asks for peer authentication over the socket ("local all all peer"),
# which no OS user named like the role passes: a password rule for the role goes before it.
pg_ensure_socket_hba() {
    pg_prepend_hba_rule "# added by StellarStack deploy/dev/ensure-services.sh (socket)" \
        "$(printf 'local   all             %-15s                         scram-sha-256' "$PG_ROLE")" \
        "over the Unix socket"
}

# If password login over 127.0.0.1 still fails, make sure pg_hba.conf has a
# password rule for the role on 127.0.0.1 (Debian's default already does).
pg_ensure_hba() {
    local rules
    rules="$(pg_psql_super -tA -F ' ' -c \
        "SELECT type, array_to_string(database, ','), array_to_string(user_name, ','),
                coalesce(address, '-'), coalesce(netmask, '-'), auth_method
           FROM pg_hba_file_rules WHERE error IS NULL ORDER BY line_number" || true)"
    log "postgres: password login over 127.0.0.1 failed; pg_hba.conf rules are:"
    printf '    %s\n' "$rules" >&2
    pg_prepend_hba_rule "# added by StellarStack deploy/dev/ensure-services.sh" \
        "$(printf 'host    all             %-15s 127.0.0.1/32            scram-sha-256' "$PG_ROLE")" \
        "on 127.0.0.1"
}

PG_SUMMARY=""
# Under `make test` this cluster is the test one: its data is made to be thrown away, so it
# does not wait for the disk (fsync, synchronous_commit and full_page_writes off make a new
# database 0.1 s instead of 0.35 s, and the suite makes two thousand), and it takes the
# connections of two test processes at once. A production cluster keeps the defaults
# (deploy/README.md).
pg_tune_for_tests() {
    local wanted="fsync=off synchronous_commit=off full_page_writes=off max_connections=300"
    local setting name value changed=0
    for setting in $wanted; do
        name="${setting%%=*}" value="${setting#*=}"
        if [[ "$(pg_psql_super -tA -c "SHOW $name")" != "$value" ]]; then
            pg_psql_super -c "ALTER SYSTEM SET $name = '$value'"
            changed=1
        fi
    done
    ((changed)) || return 0
    pg_psql_super -c "SELECT pg_reload_conf()" >/dev/null
    if [[ "$(pg_psql_super -tA -c "SELECT count(*) FROM pg_settings WHERE pending_restart")" != 0 ]]; then
        log "postgres: restarting cluster $PG_VERSION/$PG_CLUSTER for the test settings ($wanted)"
        local ctl_opts=()
        if grep -q -- '--skip-systemctl-redirect' "$(command -v pg_ctlcluster)" 2>/dev/null; then
            ctl_opts+=(--skip-systemctl-redirect)
        fi
        pg_ctlcluster "${ctl_opts[@]}" "$PG_VERSION" "$PG_CLUSTER" restart >&2
        wait_until "pg_isready -h 127.0.0.1 -p $PG_PORT" pg_ready || {
            show_log_tail "$PG_LOGFILE"
            exit 1
        }
    fi
}

ensure_postgres() {
    if ! pg_pick_cluster; then
        is_root || die "postgres: no PostgreSQL cluster exists; create one with:
    sudo pg_createcluster <version> main"
        local ver
        ver="$(pg_latest_installed_version)" || die "postgres: no PostgreSQL server binaries found under /usr/lib/postgresql"
        log "postgres: no cluster found; creating $ver/main"
        pg_createcluster "$ver" main >&2
        pg_pick_cluster || die "postgres: pg_createcluster did not produce a cluster"
    fi
    [[ -n "$PG_LOGFILE" ]] || PG_LOGFILE="/var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log"

    if pg_ready; then
        log "postgres: cluster $PG_VERSION/$PG_CLUSTER already running on port $PG_PORT"
    else
        is_root || die "postgres: cluster $PG_VERSION/$PG_CLUSTER is not running and starting it needs root. Run:
    sudo pg_ctlcluster $PG_VERSION $PG_CLUSTER start"
        local ctl_opts=()
        # No systemd here: make sure pg_ctlcluster does not hand over to systemctl.
        if grep -q -- '--skip-systemctl-redirect' "$(command -v pg_ctlcluster)" 2>/dev/null; then
            ctl_opts+=(--skip-systemctl-redirect)
        fi
        if pg_lsclusters -h "$PG_VERSION" "$PG_CLUSTER" 2>/dev/null | awk '{print $4}' | grep -q online; then
            log "postgres: cluster $PG_VERSION/$PG_CLUSTER is starting up; waiting"
        else
            log "postgres: starting cluster $PG_VERSION/$PG_CLUSTER (port $PG_PORT, log: $PG_LOGFILE)"
            if ! pg_ctlcluster "${ctl_opts[@]}" "$PG_VERSION" "$PG_CLUSTER" start >&2; then
                log "postgres: pg_ctlcluster start reported failure; still waiting in case it comes up"
            fi
        fi
        if ! wait_until "pg_isready -h 127.0.0.1 -p $PG_PORT" pg_ready; then
            show_log_tail "$PG_LOGFILE"
            exit 1
        fi
    fi

    # Only for the test suite (test-tools asked for: `make test`, CI); `make services` alone
    # leaves a cluster the developer may keep other data in as it is.
    if ((WANT_TOOLS)) && { is_root || [[ "$(id -un)" == postgres ]]; }; then
        pg_tune_for_tests
    fi

    if pg_app_login_ok; then
        log "postgres: role '$PG_ROLE' and database '$PG_DATABASE' already in place"
    else
        if ! is_root && [[ "$(id -un)" != postgres ]]; then
            die "postgres: cannot log in as $PG_ROLE to $PG_DATABASE over 127.0.0.1 and setting that up needs root. Run this script with sudo."
        fi
        pg_setup_role_and_db
        if ! pg_app_login_ok; then
            pg_ensure_hba
            pg_app_login_ok || die "postgres: still cannot log in with postgresql://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DATABASE; check pg_hba.conf and listen_addresses"
        fi
    fi
    if ! pg_socket_login_ok; then
        if is_root || [[ "$(id -un)" == postgres ]]; then
            pg_ensure_socket_hba
        fi
        pg_socket_login_ok ||
            log "postgres: password login over the Unix socket fails (pg_hba.conf); the socket's tests will fail"
    fi
    PG_SUMMARY="postgres: ready at postgresql://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DATABASE"
}

# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------
redis_ok() { [[ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

start_redis() {
    log "redis: starting redis-server on $REDIS_HOST:$REDIS_PORT (log: $REDIS_LOG)"
    mkdir -p "$LOG_DIR"
    # --dir is only the working directory: nothing is persisted (no RDB/AOF).
    redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" \
        --save '' --appendonly no --dir "${TMPDIR:-/tmp}" --logfile "$REDIS_LOG" >&2 ||
        log "redis: redis-server reported failure; still waiting in case it comes up"
}

REDIS_SUMMARY=""
ensure_redis() {
    if redis_ok; then
        log "redis: already running on $REDIS_HOST:$REDIS_PORT"
    else
        # A redis-server process may be starting up or shutting down, or be
        # listening elsewhere: give it up to 5 s (less if it exits), then
        # start our own.
        local started=0 announced=0 now=$SECONDS
        local grace=$((now + 5)) deadline=$((now + WAIT_SECONDS))
        while ! redis_ok; do
            if ((started == 0)); then
                if ! process_running redis-server || ((SECONDS >= grace)); then
                    start_redis
                    started=1
                    deadline=$((SECONDS + WAIT_SECONDS))
                elif ((announced == 0)); then
                    log "redis: a redis-server process exists but does not answer on $REDIS_HOST:$REDIS_PORT; waiting up to 5s"
                    announced=1
                fi
            fi
            if ((SECONDS >= deadline)); then
                log "redis: timed out after ${WAIT_SECONDS}s waiting for 'redis-cli -h $REDIS_HOST -p $REDIS_PORT ping'"
                show_log_tail "$REDIS_LOG"
                exit 1
            fi
            sleep 0.5
        done
    fi
    REDIS_SUMMARY="redis: ready at redis://$REDIS_HOST:$REDIS_PORT/0"
}

# ---------------------------------------------------------------------------
# Test clients (npm packages, pinned by tests/clients/*/package-lock.json)
# ---------------------------------------------------------------------------
ensure_test_clients() {
    local dir
    dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/tests/clients/nodeactyl"
    if [[ -d "$dir/node_modules/nodeactyl" ]]; then
        return
    fi
    log "installing the pinned npm packages of $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts >&2) \
        || die "npm ci in $dir failed (is registry.npmjs.org reachable?)"
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
for svc in "${ORDER[@]}"; do
    case "$svc" in
        docker) ensure_docker ;;
        postgres) ensure_postgres ;;
        redis) ensure_redis ;;
        tools) ensure_test_clients ;;
    esac
done

for svc in "${ORDER[@]}"; do
    case "$svc" in
        docker) printf '%s\n' "$DOCKER_SUMMARY" ;;
        postgres) printf '%s\n' "$PG_SUMMARY" ;;
        redis) printf '%s\n' "$REDIS_SUMMARY" ;;
        tools) printf '%s\n' "test tools: installed (shellcheck, nginx, gcc, freeciv-server, openssh-client, chromium, promtool, faketime, node + nodeactyl)" ;;
    esac
done
