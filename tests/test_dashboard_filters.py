"""The date filters of the dashboard: presets, custom ranges, refusals by field, the previous period."""

from __future__ import annotations

from datetime import date

from npsd.web.filters import parse_period

TODAY = date(2026, 11, 27)


def test_presets_end_today_and_include_today() -> None:
    period, errors = parse_period({"period": "30d"}, TODAY)
    assert errors == {}
    assert (period.since, period.until, period.interval) == (date(2026, 10, 29), TODAY, "day")
    assert period.params() == {"period": "30d"}
    everything, _ = parse_period({"period": "all"}, TODAY)
    assert (everything.since, everything.until, everything.previous()) == (None, None, None)
    default, _ = parse_period({}, TODAY)
    assert (default.preset, default.since) == ("90d", date(2026, 8, 30))


def test_a_custom_range_and_its_previous_period_of_the_same_length() -> None:
    period, errors = parse_period({"since": "2026-03-01", "until": "2026-03-31", "interval": "week"}, TODAY)
    assert errors == {}
    assert (period.preset, period.since, period.until, period.interval) == (
        None,
        date(2026, 3, 1),
        date(2026, 3, 31),
        "week",
    )
    before = period.previous()
    assert before is not None
    assert (before.since, before.until) == (date(2026, 1, 29), date(2026, 2, 28))
    assert period.params() == {"since": "2026-03-01", "until": "2026-03-31"}


def test_bad_input_is_named_by_field_and_the_default_is_used() -> None:
    period, errors = parse_period({"since": "2026-04-01", "until": "2026-03-01"}, TODAY)
    assert errors == {"until": "The end must not be before the start."}
    assert period.preset == "90d"
    _, errors = parse_period(
        {"since": "yesterday", "until": "2026-13-01", "interval": "hour", "period": "x"}, TODAY
    )
    assert set(errors) == {"since", "until", "interval", "period"}
