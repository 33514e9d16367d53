#!/bin/sh
# One connection to the fake game's port: answer a fixed line, then hang up.
echo "fake-game here"
