"""Time helpers: npsd stores naive UTC and prints ISO 8601 with milliseconds and ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, as naive UTC with millisecond precision (what the API can echo back exactly)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(value: datetime | None) -> str | None:
    """``2021-07-29T20:09:50.914Z`` for a naive-UTC datetime; None stays None."""
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds") + "Z"
