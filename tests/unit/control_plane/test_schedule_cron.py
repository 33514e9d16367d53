"""Cron expressions in a time zone: daylight-saving changes in two zones, and bad input."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from control_plane.services.schedules.cron import (
    InvalidCron,
    InvalidTimezone,
    next_run,
    validate,
    zone,
)

UTC = dt.UTC


def occurrences(expression: str, zone_name: str, start: dt.datetime, end: dt.datetime) -> list[str]:
    """Every run between ``start`` and ``end``, as local ISO times with their offsets."""
    tz = zone(zone_name)
    found, moment = [], start
    while (moment := next_run(expression, tz, moment)) <= end:
        found.append(moment.astimezone(tz).isoformat())
    return found


# (zone, spring-forward day, fall-back day, the wall time that repeats on the fall-back day)
ZONES = [
    ("Europe/Berlin", dt.date(2026, 3, 29), dt.date(2026, 10, 25), "02:30"),
    ("America/New_York", dt.date(2026, 3, 8), dt.date(2026, 11, 1), "01:30"),
]


def _day(day: dt.date, zone_name: str) -> tuple[dt.datetime, dt.datetime]:
    """From the day before to the day after ``day``, local midnight to midnight, in UTC."""
    tz = zone(zone_name)
    start = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(), tz).astimezone(UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=2), dt.time(), tz).astimezone(UTC)
    return start, end


@pytest.mark.parametrize(("zone_name", "spring", "autumn", "repeated"), ZONES)
def test_a_daily_0230_run_happens_once_on_the_spring_forward_day(
    zone_name: str, spring: dt.date, autumn: dt.date, repeated: str
) -> None:
    runs = occurrences("30 2 * * *", zone_name, *_day(spring, zone_name))
    assert len(runs) == 3, runs  # the day before, the day itself, the day after
    assert [r[:10] for r in runs] == [
        str(spring - dt.timedelta(days=1)),
        str(spring),
        str(spring + dt.timedelta(days=1)),
    ]
    # 02:30 does not exist that day: it runs just after the gap, at 03:30 summer time.
    assert runs[1][11:16] == "03:30"


@pytest.mark.parametrize(("zone_name", "spring", "autumn", "repeated"), ZONES)
def test_a_daily_run_at_the_repeated_time_happens_once_on_the_fall_back_day(
    zone_name: str, spring: dt.date, autumn: dt.date, repeated: str
) -> None:
    hour, minute = repeated.split(":")
    runs = occurrences(f"{int(minute)} {int(hour)} * * *", zone_name, *_day(autumn, zone_name))
    assert [r[:16] for r in runs] == [
        f"{autumn - dt.timedelta(days=1)}T{repeated}",
        f"{autumn}T{repeated}",
        f"{autumn + dt.timedelta(days=1)}T{repeated}",
    ], runs
    # The first of the two 02:30s (summer time) is the one that runs.
    summer = dt.datetime.combine(spring, dt.time(12), zone(zone_name)).utcoffset()
    assert runs[1].endswith(_offset(summer))


@pytest.mark.parametrize(("zone_name", "spring", "autumn", "repeated"), ZONES)
def test_an_hourly_run_follows_real_hours_across_both_changes(
    zone_name: str, spring: dt.date, autumn: dt.date, repeated: str
) -> None:
    tz = zone(zone_name)
    for day, hours in ((spring, 23), (autumn, 25)):
        start = dt.datetime.combine(day, dt.time(), tz).astimezone(UTC)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz).astimezone(UTC)
        runs = occurrences("15 * * * *", zone_name, start, end)
        # One run per real hour of the day: 23 on the short day, 25 on the long one.
        assert len(runs) == hours, runs
        instants = [dt.datetime.fromisoformat(r) for r in runs]
        assert all(b - a == dt.timedelta(hours=1) for a, b in itertools.pairwise(instants))


def test_utc_has_no_surprises() -> None:
    start = dt.datetime(2026, 3, 29, tzinfo=UTC)
    assert occurrences("*/20 1 * * *", "UTC", start, start + dt.timedelta(days=1)) == [
        "2026-03-29T01:00:00+00:00",
        "2026-03-29T01:20:00+00:00",
        "2026-03-29T01:40:00+00:00",
    ]


def _offset(delta: dt.timedelta | None) -> str:
    assert delta is not None
    minutes = int(delta.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * * *",
        "* * * * * *",
        "61 * * * *",
        "* 24 * * *",
        "@reboot",
        "0 0 30 2 *",
        "a b c d e",
    ],
)
def test_a_bad_or_never_matching_expression_is_refused(expression: str) -> None:
    with pytest.raises(InvalidCron):
        validate(expression)


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime", "", "x" * 80]
)
def test_an_unknown_time_zone_is_refused(name: str) -> None:
    with pytest.raises(InvalidTimezone):
        zone(name)


@pytest.mark.parametrize(("zone_name", "spring", "autumn", "repeated"), ZONES)
def test_an_every_minute_run_never_skips_or_repeats_a_real_minute(
    zone_name: str, spring: dt.date, autumn: dt.date, repeated: str
) -> None:
    for day in (spring, autumn):
        start, end = _day(day, zone_name)
        instants = [
            dt.datetime.fromisoformat(r) for r in occurrences("* * * * *", zone_name, start, end)
        ]
        assert len(instants) == (end - start) // dt.timedelta(minutes=1)
        assert all(b - a == dt.timedelta(minutes=1) for a, b in itertools.pairwise(instants))
