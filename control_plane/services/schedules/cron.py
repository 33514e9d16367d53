"""Cron expressions in a time zone, correct across daylight-saving changes.

croniter walks *naive wall-clock* times here, never aware ones (its arithmetic on aware
datetimes has known DST faults: repeated or lost runs at the change). Each wall time it
yields is then placed in the zone by zoneinfo:

- a wall time that does not exist (the hour skipped in spring) runs at the same offset from
  before the change, i.e. just after the gap: a 02:30 daily job runs at 03:30 that day, once;
- a wall time that exists twice (the hour repeated in autumn) runs at its first occurrence
  only, unless the hour field is ``*``: then both hours are real hours and both run, as
  Vixie cron does;
- times that land on the same instant collapse into one run.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator
from functools import lru_cache

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

# Near a change, start a little before ``after``'s wall time: after a fall-back change,
# later instants can have earlier wall times (no zone moves its clock back by more than this).
_LOOKBACK = dt.timedelta(hours=3)
# How far to look for an occurrence before calling the expression one that never runs.
_HORIZON = dt.timedelta(days=5 * 366)


class InvalidCron(ValueError):
    """The expression is not five cron fields that ever match."""


class InvalidTimezone(ValueError):
    """Not an IANA time zone name known to this system."""


@lru_cache(maxsize=512)
def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone ``name`` (e.g. ``Europe/Berlin``), or InvalidTimezone."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise InvalidTimezone(f"unknown time zone {name!r}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise InvalidTimezone(f"unknown time zone {name!r}") from err


def validate(expression: str) -> str:
    """The expression with single spaces, if it is five valid fields; else InvalidCron."""
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidCron(
            "a cron expression has five fields: minute hour day-of-month month day-of-week"
        )
    normal = " ".join(fields)
    if not croniter.is_valid(normal):
        raise InvalidCron(f"{expression!r} is not a valid cron expression")
    # One that can never match (30 February) is refused now rather than never running.
    next_run(normal, zone("UTC"), dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    return normal


def _every_hour(expression: str) -> bool:
    return expression.split()[1] == "*"


def _placed(
    wall: dt.datetime, tz: zoneinfo.ZoneInfo, both_folds: bool
) -> Iterator[tuple[dt.datetime, bool]]:
    """The UTC instants a wall-clock time stands for in ``tz`` (see the module docstring),
    each with whether it is the second reading of a repeated time."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(dt.UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(dt.UTC)
    yield first, False  # skipped by the spring change: the old offset, just past the gap
    exists = first.astimezone(tz).replace(tzinfo=None) == wall
    if exists and second != first and both_folds:
        yield second, True


def next_run(expression: str, tz: zoneinfo.ZoneInfo, after: dt.datetime) -> dt.datetime:
    """The first occurrence strictly after ``after`` (aware), in UTC."""
    if after.tzinfo is None:
        raise ValueError("after must be an aware datetime")
    both = _every_hour(expression)
    start = after.astimezone(tz).replace(tzinfo=None)
    if tz.utcoffset(after.astimezone(tz)) != tz.utcoffset((after + _LOOKBACK).astimezone(tz)):
        # A change is near: after it, later instants can have earlier wall times.
        start -= _LOOKBACK
    limit = after + _HORIZON
    best: tuple[dt.datetime, bool, dt.datetime] | None = None
    try:
        walker = croniter(expression, start, ret_type=dt.datetime)
        while True:
            wall = walker.get_next(dt.datetime)
            for moment, second in _placed(wall, tz, both):
                if moment > after and (best is None or moment < best[0]):
                    best = (moment, second, wall)
            # A first reading is final (they grow with the wall time); a second reading of a
            # repeated hour may still be beaten by a later wall's first reading.
            if best is not None and (not best[1] or wall > best[2] + _LOOKBACK):
                return best[0]
            if wall.replace(tzinfo=tz) > limit:
                break
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as err:
        raise InvalidCron(f"{expression!r} is not a valid cron expression") from err
    raise InvalidCron(f"{expression!r} never matches")
