"""Charts drawn on the server as SVG, from the figures the services return (the API's numbers).

Each chart is an ``<svg role="img">`` whose accessible name holds its title, followed by a table
whose ``<caption>`` names the same chart and holds the same numbers (in a ``<details>``), so
the figures are there for screen readers, keyboard users and copy-paste. Colours come from CSS
classes (the CSP forbids inline styles); every text is escaped. A bar of the distribution is a
link, so a click (or Enter) opens the feed filtered to that score.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

from npsd.analytics.nps import category

_ids = itertools.count(1)

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 14, 30


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _signed(value: float | None) -> str:
    if value is None:
        return "—"
    return "±0.0" if value == 0 else f"{value:+.1f}"


def interval_of(point: Mapping[str, Any]) -> tuple[float, float] | None:
    """The 95% interval of a trend point as the API reports it (``confidenceInterval``), else
    the score ± its margin, clipped to the NPS scale."""
    ci = point.get("confidenceInterval")
    if ci:
        return float(ci[0]), float(ci[1])
    score, moe = point.get("npsScore"), point.get("marginOfError")
    if score is None or moe is None:
        return None
    return max(score - moe, -100.0), min(score + moe, 100.0)


def _y_range(points: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """A vertical range holding every interval, in steps of 20 points, always including 0."""
    low, high = 0.0, 0.0
    for p in points:
        ci = interval_of(p)
        if ci is not None:
            low, high = min(low, ci[0]), max(high, ci[1])
    step = 20
    low = max(-100.0, math.floor(low / step) * step)
    high = min(100.0, math.ceil(high / step) * step)
    if high - low < 40:
        high = min(100.0, low + 40)
    return float(low), float(high)


def _runs(indices: Sequence[int]) -> list[list[int]]:
    """Consecutive indices grouped: a band or line breaks where a period has no answers."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def trend_chart(
    points: Sequence[Mapping[str, Any]], title: str = "NPS trend", note: str | None = None
) -> Markup:
    """The NPS per period (the API's ``trend``) with its 95% confidence band; a ring marks each
    period whose change from the one before is significant."""
    uid = f"chart{next(_ids)}"
    n = len(points)
    if n == 0:
        return Markup(
            '<figure class="chart"><figcaption>{t}</figcaption><p class="muted">No answers in this period.</p></figure>'
        ).format(t=title)
    low, high = _y_range(points)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * (i + 0.5) / n)

    def y(v: float) -> float:
        return TOP + plot_h * (high - v) / (high - low)

    parts: list[str] = []
    for tick in range(int(low), int(high) + 1, 20):
        cls = "zero" if tick == 0 else "axis"
        parts.append(
            f'<line class="{cls}" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}</text>'
        )
    with_data = [i for i, p in enumerate(points) if p.get("npsScore") is not None]
    for run in _runs(with_data):
        intervals = [interval_of(points[i]) or (0.0, 0.0) for i in run]
        if len(run) == 1:
            i, (lo, hi) = run[0], intervals[0]
            parts.append(
                f'<rect class="band" x="{x(i) - 4:.1f}" y="{y(hi):.1f}" width="8" height="{max(y(lo) - y(hi), 1):.1f}"/>'
            )
        else:
            upper = " ".join(f"{x(i):.1f},{y(ci[1]):.1f}" for i, ci in zip(run, intervals, strict=True))
            lower = " ".join(
                f"{x(i):.1f},{y(ci[0]):.1f}" for i, ci in reversed(list(zip(run, intervals, strict=True)))
            )
            parts.append(f'<polygon class="band" points="{upper} {lower}"/>')
            line = " ".join(f"{x(i):.1f},{y(points[i]['npsScore']):.1f}" for i in run)
            parts.append(f'<polyline class="line" points="{line}"/>')
    for i in with_data:
        p = points[i]
        label = escape(
            f"{p.get('period', '')}: NPS {_fmt(p['npsScore'])} ± {_fmt(p.get('marginOfError'))}, "
            f"{p.get('responses', 0)} answers"
            + (f", significant change {_signed(p.get('change'))}" if p.get("significant") else "")
        )
        if p.get("significant"):
            parts.append(
                f'<circle class="sig" cx="{x(i):.1f}" cy="{y(p["npsScore"]):.1f}" r="6"><title>{label}</title></circle>'
            )
        else:
            parts.append(
                f'<circle class="point" cx="{x(i):.1f}" cy="{y(p["npsScore"]):.1f}" r="3.5"><title>{label}</title></circle>'
            )
    step = max(1, -(-n // 8))
    for i in range(0, n, step):
        parts.append(
            f'<text class="tick" x="{x(i):.1f}" y="{HEIGHT - 8}" text-anchor="middle">{escape(str(points[i].get("period", "")))}</text>'
        )
    significant = sum(1 for p in points if p.get("significant"))
    desc = (
        f"{len(with_data)} periods with answers from {points[0].get('period', '')} to {points[-1].get('period', '')}; "
        f"shaded: 95% confidence interval; {significant} significant change{'s' if significant != 1 else ''} marked with a ring."
    )
    svg = (
        f'<svg role="img" aria-labelledby="{uid}-t {uid}-d" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="{uid}-t">{escape(title)}</title>'
        f'<desc id="{uid}-d">{escape(desc)}</desc>{"".join(parts)}</svg>'
    )
    rows = "".join(
        '<tr><th scope="row">{}</th><td class="num">{}</td><td class="num">{}</td><td>{}</td>'
        '<td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>'.format(
            escape(str(p.get("period", ""))),
            _fmt(p.get("npsScore")),
            _fmt(p.get("marginOfError")),
            "—" if interval_of(p) is None else "{} to {}".format(*(_fmt(v) for v in interval_of(p) or ())),
            p.get("responses", 0),
            _signed(p.get("change")),
            {True: "yes", False: "no", None: "—"}[p.get("significant")],
        )
        for p in points
    )
    table = (
        f'<details class="data"><summary>{escape(title)}: the numbers</summary><div class="table-wrap"><table>'
        f'<caption>{escape(title)}</caption><thead><tr><th scope="col">Period</th><th scope="col" class="num">NPS</th>'
        '<th scope="col" class="num">± margin</th><th scope="col">95% interval</th><th scope="col" class="num">Answers</th>'
        '<th scope="col" class="num">Change</th><th scope="col">Significant</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div></details>"
    )
    caption = escape(title) + (Markup(' <span class="muted">{}</span>').format(note) if note else "")
    legend = (
        '<p class="legend"><span class="swatch"></span> 95% confidence interval'
        + (' · <span class="ring"></span> a significant change from the period before' if significant else "")
        + "</p>"
    )
    return Markup(f'<figure class="chart"><figcaption>{caption}</figcaption>{svg}{legend}{table}</figure>')


def distribution_chart(
    distribution: Sequence[int],
    href: Callable[[int], str] | None = None,
    title: str = "Score distribution",
) -> Markup:
    """Answers per score 0-10, coloured by category; with ``href``, each bar links to the feed
    filtered to its score."""
    uid = f"chart{next(_ids)}"
    total = sum(distribution)
    top = max(max(distribution, default=0), 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM - 14
    slot = plot_w / 11
    parts: list[str] = [
        f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + 14 + plot_h}" y2="{TOP + 14 + plot_h}"/>'
    ]
    links: list[str] = []
    for score, count in enumerate(distribution):
        h = plot_h * count / top
        bx, by = LEFT + slot * score + slot * 0.15, TOP + 14 + plot_h - h
        share = f"{100 * count / total:.1f}%" if total else "—"
        label = escape(f"Score {score} ({category(score)}): {count} answers, {share}")
        parts.append(
            f'<rect class="bar-{category(score)}" x="{bx:.1f}" y="{by:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{max(h, 0.5):.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{bx + slot * 0.35:.1f}" y="{by - 4:.1f}" text-anchor="middle">{count}</text>'
        )
        parts.append(
            f'<text class="tick" x="{bx + slot * 0.35:.1f}" y="{HEIGHT - 8}" text-anchor="middle">{score}</text>'
        )
        if href is not None:
            # A link laid over the bar's column (HTML, not inside the SVG: an image has no
            # interactive parts), so a click or Enter on a bar opens the filtered feed.
            links.append(
                f'<li><a href="{escape(href(score))}" aria-label="{label}" class="slot-{score}"></a></li>'
            )
    desc = f"{total} answers; " + ", ".join(f"score {s}: {c}" for s, c in enumerate(distribution))
    svg = (
        f'<svg role="img" aria-labelledby="{uid}-t {uid}-d" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="{uid}-t">{escape(title)}</title>'
        f'<desc id="{uid}-d">{escape(desc)}</desc>{"".join(parts)}</svg>'
    )
    rows = []
    for score, count in enumerate(distribution):
        cell = str(count) if href is None else f'<a href="{escape(href(score))}">{count}</a>'
        share = f"{100 * count / total:.1f}%" if total else "—"
        rows.append(
            f'<tr><th scope="row">{score}</th><td>{category(score)}</td><td class="num">{cell}</td><td class="num">{share}</td></tr>'
        )
    table = (
        f'<details class="data"><summary>{escape(title)}: the numbers</summary><div class="table-wrap"><table>'
        f'<caption>{escape(title)}</caption><thead><tr><th scope="col">Score</th><th scope="col">Category</th>'
        f'<th scope="col" class="num">Answers</th><th scope="col" class="num">Share</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></details>"
    )
    overlay = f'<ol class="bar-links">{"".join(links)}</ol>' if links else ""
    return Markup(
        f'<figure class="chart"><figcaption>{escape(title)}</figcaption>'
        f'<div class="plot">{svg}{overlay}</div>{table}</figure>'
    )


def sparkline(values: Sequence[float | None], label: str) -> Markup:
    """A small NPS line for a table cell (scale -100..100); its accessible name lists the values."""
    n = len(values)
    w, h = 96, 24
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    text = escape(f"{label}: " + (", ".join(_fmt(v) for v in values) if known else "no answers"))
    if not known:
        return Markup(
            f'<svg class="spark" role="img" aria-label="{text}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg"></svg>'
        )

    def px(i: int) -> float:
        return 2 + (w - 4) * (i / max(n - 1, 1))

    def py(v: float) -> float:
        return 2 + (h - 4) * (100 - v) / 200

    lines = []
    for run in _runs([i for i, _ in known]):
        if len(run) == 1:
            i = run[0]
            lines.append(f'<circle class="point" cx="{px(i):.1f}" cy="{py(values[i] or 0):.1f}" r="1.8"/>')
        else:
            pts = " ".join(f"{px(i):.1f},{py(values[i] or 0):.1f}" for i in run)
            lines.append(f'<polyline class="line" points="{pts}"/>')
    return Markup(
        f'<svg class="spark" role="img" aria-label="{text}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg">'
        f'<line class="zero" x1="0" x2="{w}" y1="{py(0):.1f}" y2="{py(0):.1f}"/>{"".join(lines)}</svg>'
    )


SENTIMENT_ORDER = ("negative", "neutral", "positive")


def sentiment_bar(counts: Mapping[str, int], label: str) -> Markup:
    """A small stacked bar of negative, neutral and positive answers (the report's ``sentiment``
    counts); its accessible name says the three counts."""
    total = sum(int(counts.get(k, 0)) for k in SENTIMENT_ORDER)
    text = escape(
        f"{label}: " + ", ".join(f"{int(counts.get(k, 0))} {k}" for k in SENTIMENT_ORDER)
        if total
        else f"{label}: no answers"
    )
    w, h = 120, 12
    parts: list[str] = []
    x = 0.0
    for key in SENTIMENT_ORDER:
        n = int(counts.get(key, 0))
        if not n:
            continue
        width = w * n / total
        parts.append(f'<rect class="sent-{key}" x="{x:.1f}" y="0" width="{width:.1f}" height="{h}"/>')
        x += width
    if not parts:
        parts.append(f'<rect class="sent-none" x="0" y="0" width="{w}" height="{h}"/>')
    return Markup(
        f'<svg class="sentiment-bar" role="img" aria-label="{text}" viewBox="0 0 {w} {h}" '
        f'width="{w}" height="{h}" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
    )


def theme_trend_chart(points: Sequence[Mapping[str, Any]], title: str, note: str | None = None) -> Markup:
    """A theme's NPS per period (``theme_trend``'s points) drawn like the NPS trend, with its 95%
    band; a period's answers are the theme's."""
    return trend_chart(
        [{**p, "responses": p.get("answers", 0)} for p in points if p.get("answers")], title, note
    )
