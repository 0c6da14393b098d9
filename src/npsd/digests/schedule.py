"""When a digest is due and which days it covers: pure time arithmetic, no I/O.

A digest is sent at a whole local hour (on one weekday, for a weekly one) in an IANA time zone.
Its next send time is found on the local calendar and only then turned into UTC, so daylight
saving time moves it with the clocks: 09:00 Europe/Berlin is 08:00 UTC in winter and 07:00 UTC
in summer. An hour the clocks skip (02:00 on the night they spring forward) is sent at the
same distance from midnight in the new offset (03:00); an hour that happens twice (the night
they fall back) is sent the first time only.

A digest covers whole UTC days, because that is how answers are counted by the metrics API
(``/v1/nps-surveys/nps-metrics``), whose functions compute its figures: a daily digest covers
the last UTC day that ended before its send time, a weekly one the seven UTC days that ended
before it. Its comparison is the period of the same length just before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

FREQUENCIES = ("daily", "weekly")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
PERIOD_DAYS = {"daily": 1, "weekly": 7}


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (ValueError when unknown); the ``tzdata`` package is a
    dependency, so every zone is known without the operating system's database."""
    if not name or "\x00" in name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise ValueError("must be an IANA time zone name such as Europe/Berlin or UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError("must be an IANA time zone name such as Europe/Berlin or UTC") from exc


def local_send_time(day: date, hour: int, tz: ZoneInfo) -> datetime:
    """``hour``:00 on local ``day`` in ``tz``, as naive UTC. A skipped hour (spring forward) maps
    to the instant as far after midnight in the offset before the change; a repeated one (fall
    back) to its first occurrence (``fold=0``)."""
    local = datetime.combine(day, time(hour), tzinfo=tz)
    return local.astimezone(UTC).replace(tzinfo=None)


def next_due(after: datetime, frequency: str, hour: int, weekday: int | None, time_zone: str) -> datetime:
    """The first send time strictly after ``after`` (naive UTC), as naive UTC."""
    tz = zone(time_zone)
    day = after.replace(tzinfo=UTC).astimezone(tz).date() - timedelta(days=1)
    for _ in range(16):  # two weeks and a margin always hold a weekly occurrence
        if frequency == "daily" or day.weekday() == weekday:
            due = local_send_time(day, hour, tz)
            if due > after:
                return due
        day += timedelta(days=1)
    raise AssertionError("no send time within 16 days")  # pragma: no cover


@dataclass(frozen=True)
class Period:
    """Whole UTC days, both included, and the period of the same length just before."""

    since: date
    until: date

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    @property
    def previous(self) -> Period:
        length = timedelta(days=self.days)
        return Period(self.since - length, self.until - length)

    @property
    def key(self) -> str:
        """Names the period of a scheduled delivery: one per digest and period."""
        return f"{self.since.isoformat()}/{self.until.isoformat()}"


def period_before(moment: datetime, frequency: str) -> Period:
    """The whole UTC days a digest sent at ``moment`` (naive UTC) covers: the one (daily) or
    seven (weekly) that ended at or before it."""
    until = moment.date() - timedelta(days=1)
    return Period(until - timedelta(days=PERIOD_DAYS[frequency] - 1), until)
