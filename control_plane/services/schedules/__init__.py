"""Schedules: what runs when (``cron``), and their records (``store``).

``cron``   five-field expressions in the server owner's time zone, DST-correct
``store``  schedules and tasks as the API edits them; claiming due runs exactly once,
           leases, and the record of each run

The loop that claims and runs them is ``control_plane/scheduling/``.
"""
