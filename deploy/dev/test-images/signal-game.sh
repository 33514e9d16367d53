#!/bin/sh
# signal-game: a stand-in game that records the signal it is stopped with (busybox sh only).
#
# Prints "signal-game ready", then waits. On SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 or
# SIGUSR2 it writes the signal's name to /home/container/signal (one line per signal), and
# exits 0, or with IGNORE_SIGNALS=1 goes on waiting (so only SIGKILL ends it).

record() {
    echo "$1" >>/home/container/signal
    echo "got $1"
    if [ "${IGNORE_SIGNALS:-0}" != 1 ]; then
        exit 0
    fi
}

for name in INT TERM HUP QUIT USR1 USR2; do
    # shellcheck disable=SC2064  # the name is expanded now, on purpose
    trap "record SIG$name" "$name"
done

echo "signal-game ready"
while :; do
    # A trap runs only between commands: wait (not sleep) returns when a signal arrives.
    sleep 3600 &
    wait $!
done
