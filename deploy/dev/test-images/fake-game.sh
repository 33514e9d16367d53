#!/bin/sh
# fake-game: a stand-in game server for the agent's container tests (busybox sh only).
#
# Listens on TCP $SERVER_PORT (one fixed line per connection) and reads console commands
# from stdin, one per line:
#   stop        print "stopping", exit 0 (ignored when IGNORE_STOP=1)
#   say TEXT    print TEXT
#   bigfile N   write N MiB to /home/container/big.bin
#   forkbomb    spawn processes without end (the PIDs limit must contain it)
#   crash       exit 1
#   oom         allocate memory until the kernel kills the container
#   id          print the uid, gid and effective capabilities
# SIGTERM exits 0 like "stop", unless IGNORE_STOP=1.

port="${SERVER_PORT:-25565}"
ignore_stop="${IGNORE_STOP:-0}"

nc -ll -p "$port" -e /usr/local/bin/fake-game-greet &
listener=$!

shutdown() {
    echo "stopping"
    kill "$listener" 2>/dev/null
    exit 0
}

if [ "$ignore_stop" = 1 ]; then
    trap 'echo "ignoring SIGTERM"' TERM INT
else
    trap shutdown TERM INT
fi

echo "fake-game started on port $port as uid $(id -u)"
if [ $# -gt 0 ]; then
    # Each argument in brackets, so that a test sees exactly the words it was given.
    printf 'fake-game arguments:'
    printf ' [%s]' "$@"
    echo
fi

# shellcheck disable=SC2264  # a fork bomb (command "bomb"): it calls itself on purpose
bomb() {
    bomb | bomb &
}

while :; do
    if ! read -r command argument; then
        # Console closed: run on as a detached server until a signal ends it.
        while :; do
            sleep 3600 &
            wait $!
        done
    fi
    case "$command" in
        stop)
            if [ "$ignore_stop" = 1 ]; then echo "ignoring stop"; else shutdown; fi
            ;;
        say) echo "$argument" ;;
        bigfile)
            if dd if=/dev/zero of=/home/container/big.bin bs=1M count="$argument" 2>/dev/null; then
                echo "bigfile written: $argument MiB"
            else
                echo "bigfile failed"
            fi
            ;;
        forkbomb)
            echo "forkbomb started"
            (bomb) 2>/dev/null &
            ;;
        crash)
            echo "crashing"
            exit 1
            ;;
        oom)
            echo "allocating memory"
            # As PID 1 the allocator is what the OOM killer ends, as with a real game.
            exec tail /dev/zero
            ;;
        id) echo "uid=$(id -u) gid=$(id -g) $(grep -E '^(CapEff|NoNewPrivs)' /proc/self/status | tr '\t\n' '  ')" ;;
        "") ;;
        *) echo "unknown command: $command" ;;
    esac
done
