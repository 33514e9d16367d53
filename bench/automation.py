"""What automation costs the control plane: schedules, then webhooks.

Runs ``bench/automation_schedules.py`` (1,000 schedules due in the same minute: time until
every first task reached the node, and the API's p99 meanwhile against idle) and
``bench/automation_webhooks.py`` (10,000 webhook deliveries to a local receiver: deliveries
per second against a bare client, and memory), each in a process of its own with its default
options (``--only schedules`` or ``--only webhooks`` runs one). Run either script alone for
its own options. Nothing here asserts a time: it prints figures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Final

SCRIPTS: Final = {
    "schedules": "automation_schedules.py",
    "webhooks": "automation_webhooks.py",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SCRIPTS), action="append")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent
    for name in args.only or list(SCRIPTS):
        print(f"=== automation: {name}", flush=True)
        done = subprocess.run([sys.executable, str(here / SCRIPTS[name])], check=False)
        if done.returncode != 0:
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
