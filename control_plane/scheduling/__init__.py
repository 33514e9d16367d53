"""The scheduler: the background job that runs schedules (docs/schedules.md).

``clock``   the time the scheduler reads and sleeps on (tests move a manual one)
``tasks``   one task of a run, with the authority of the schedule's user, through the same
            actions as the API (power, console command, backups)
``runner``  the loop: expire dead runs' leases, claim due schedules, run them, renew leases;
            started with the app as a cleanup_ctx
"""
