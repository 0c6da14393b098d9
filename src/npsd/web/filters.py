"""The date filters every dashboard page shares: presets, a custom range, the previous period.

The URL carries them (``period=90d`` or ``since=2026-01-01&until=2026-03-31``), so a filtered
view can be shared. Days are whole UTC days, both ends included, as in the metrics API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from npsd.analytics.metrics import Interval

PRESETS: dict[str, tuple[str, int | None]] = {
    "30d": ("Last 30 days", 30),
    "90d": ("Last 90 days", 90),
    "12m": ("Last 12 months", 365),
    "all": ("All time", None),
}
DEFAULT_PRESET = "90d"
INTERVALS: dict[str, str] = {"day": "Day", "week": "Week", "month": "Month"}
_DEFAULT_INTERVAL: dict[str, Interval] = {"30d": "day", "90d": "week", "12m": "month", "all": "month"}


@dataclass(frozen=True)
class Period:
    """A range of whole UTC days (None: unbounded), the preset it came from, and the trend step."""

    preset: str | None  # a key of PRESETS, or None for a custom range
    since: date | None
    until: date | None
    interval: Interval

    @property
    def label(self) -> str:
        if self.preset is not None:
            return PRESETS[self.preset][0]
        if self.since and self.until:
            return f"{self.since.isoformat()} to {self.until.isoformat()}"
        if self.since:
            return f"Since {self.since.isoformat()}"
        if self.until:
            return f"Until {self.until.isoformat()}"
        return "All time"

    def previous(self) -> Period | None:
        """The period of the same length just before this one (None when unbounded)."""
        if self.since is None or self.until is None:
            return None
        length = (self.until - self.since).days + 1
        return Period(
            None, self.since - timedelta(days=length), self.since - timedelta(days=1), self.interval
        )

    def params(self) -> dict[str, str]:
        """The URL parameters that reproduce this period."""
        out: dict[str, str] = {}
        if self.preset is not None:
            out["period"] = self.preset
        else:
            if self.since:
                out["since"] = self.since.isoformat()
            if self.until:
                out["until"] = self.until.isoformat()
        return out


def _day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        return None


def parse_period(
    params: Mapping[str, str], today: date, default: str = DEFAULT_PRESET
) -> tuple[Period, dict[str, str]]:
    """The period asked for, and the problems with what was typed, by field (``period``,
    ``since``, ``until``, ``interval``). With problems, the default period is used and the
    page shows the messages next to the fields, keeping what was typed."""
    errors: dict[str, str] = {}
    raw_since, raw_until = params.get("since", "").strip(), params.get("until", "").strip()
    preset = params.get("period", "").strip() or None
    if preset is not None and preset not in PRESETS and preset != "custom":
        errors["period"] = "Choose one of: " + ", ".join(label for label, _ in PRESETS.values()) + "."
        preset = None
    since = until = None
    if raw_since and (since := _day(raw_since)) is None:
        errors["since"] = "Enter a date as YYYY-MM-DD."
    if raw_until and (until := _day(raw_until)) is None:
        errors["until"] = "Enter a date as YYYY-MM-DD."
    if since and until and until < since:
        errors["until"] = "The end must not be before the start."
    raw_interval = params.get("interval", "").strip()
    if raw_interval and raw_interval not in INTERVALS:
        errors["interval"] = "Choose day, week or month."
    # typed dates win over a preset: a filter form keeps the current preset in a hidden field,
    # and a range typed into that form must replace it
    custom = bool(raw_since or raw_until)
    if errors or not custom:
        key = preset if preset in PRESETS and not errors else default
        days = PRESETS[key][1]
        start = None if days is None else today - timedelta(days=days - 1)
        chosen = key
        since, until = start, (None if days is None else today)
    else:
        chosen = None
    interval: Interval = (
        raw_interval  # type: ignore[assignment]
        if raw_interval in INTERVALS and "interval" not in errors
        else _DEFAULT_INTERVAL.get(chosen or "", _custom_interval(since, until))
    )
    return Period(chosen, since, until, interval), errors


def _custom_interval(since: date | None, until: date | None) -> Interval:
    if since is None or until is None:
        return "month"
    days = (until - since).days + 1
    return "day" if days <= 45 else "week" if days <= 200 else "month"
