#!/bin/sh
# The entrypoint of an egg image, as Pterodactyl's yolks images have it
# (github.com/pterodactyl/yolks, oses/debian/entrypoint.sh, MIT licence, Copyright (c) 2021
# Matthew Penner), in busybox sh and without the TZ and INTERNAL_IP set-up. STARTUP is the
# blueprint's startup template: each {{X}} becomes ${X}, expanded from the environment by
# one eval; the result is split into words and executed, never read by a shell again.
cd /home/container || exit 1

PARSED=$(echo "${STARTUP}" | sed -e 's/{{/${/g' -e 's/}}/}/g' | eval echo "$(cat -)")

echo "container~ ${PARSED}"
# shellcheck disable=SC2086  # split into words on purpose, as in yolks
exec env ${PARSED}
