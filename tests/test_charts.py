"""The server-drawn charts: the numbers they draw are the numbers they are given, in a table
captioned like the chart; text is escaped; gaps stay gaps; bars link to the filtered feed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from npsd.web.charts import distribution_chart, sparkline, trend_chart

TREND = [
    {
        "period": "2026-01",
        "npsScore": 20.0,
        "marginOfError": 15.2,
        "confidenceInterval": [4.1, 35.0],
        "responses": 40,
        "change": None,
        "significant": None,
    },
    {
        "period": "2026-02",
        "npsScore": None,
        "marginOfError": None,
        "responses": 0,
        "change": None,
        "significant": None,
    },
    {
        "period": "2026-03",
        "npsScore": -35.5,
        "marginOfError": 12.0,
        "confidenceInterval": [-47.0, -23.1],
        "responses": 55,
        "change": None,
        "significant": None,
    },
    {
        "period": "2026-04",
        "npsScore": 10.0,
        "marginOfError": 11.0,
        "confidenceInterval": [-1.2, 20.9],
        "responses": 60,
        "change": 45.5,
        "significant": True,
    },
]


def svg_of(markup: str) -> ET.Element:
    return ET.fromstring(re.search(r"<svg.*?</svg>", markup, re.S).group(0))  # type: ignore[union-attr]


def table_rows(markup: str) -> list[list[str]]:
    body = re.search(r"<tbody>(.*?)</tbody>", markup, re.S).group(1)  # type: ignore[union-attr]
    return [
        re.findall(r"<t[hd][^>]*>(?:<a [^>]*>)?(.*?)(?:</a>)?</t[hd]>", row)
        for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]


def test_trend_chart_names_itself_and_tabulates_the_same_numbers() -> None:
    html = str(trend_chart(TREND))
    svg = svg_of(html)
    assert svg.get("role") == "img"
    ns = "{http://www.w3.org/2000/svg}"
    assert svg.find(f"{ns}title").text == "NPS trend"  # type: ignore[union-attr]
    assert "<caption>NPS trend</caption>" in html
    assert table_rows(html) == [
        ["2026-01", "20.0", "15.2", "4.1 to 35.0", "40", "—", "—"],
        ["2026-02", "—", "—", "—", "0", "—", "—"],
        ["2026-03", "-35.5", "12.0", "-47.0 to -23.1", "55", "—", "—"],
        ["2026-04", "10.0", "11.0", "-1.2 to 20.9", "60", "+45.5", "yes"],
    ]
    # one ring for the one significant change; the empty month breaks the band and the line
    assert len(svg.findall(f"{ns}circle[@class='sig']")) == 1
    assert len(svg.findall(f"{ns}circle[@class='point']")) == 2
    assert len(svg.findall(f"{ns}polyline")) == 1  # March-April; January stands alone
    assert len(svg.findall(f"{ns}rect[@class='band']")) == 1 and len(svg.findall(f"{ns}polygon")) == 1


def test_distribution_bars_link_to_the_feed_and_count_right() -> None:
    dist = [1, 0, 0, 2, 0, 0, 3, 4, 5, 6, 7]
    html = str(distribution_chart(dist, href=lambda s: f"/app/responses?score={s}&surveyId=a&b"))
    svg = svg_of(html)
    ns = "{http://www.w3.org/2000/svg}"
    assert svg.findall(f".//{ns}a") == []  # an image has no interactive parts (axe: nested-interactive)
    assert [r.get("class") for r in svg.findall(f"{ns}rect")] == (
        ["bar-detractor"] * 7 + ["bar-passive"] * 2 + ["bar-promoter"] * 2
    )
    overlay = re.findall(r'<a href="([^"]+)" aria-label="([^"]+)" class="slot-(\d+)"', html)
    assert [(int(n), h.replace("&amp;", "&")) for h, _, n in overlay] == [
        (s, f"/app/responses?score={s}&surveyId=a&b") for s in range(11)
    ]
    assert overlay[9][1] == "Score 9 (promoter): 6 answers, 21.4%"
    rows = table_rows(html)
    assert [int(r[2]) for r in rows] == dist
    assert rows[10] == ["10", "promoter", "7", "25.0%"]


def test_titles_and_labels_are_text_never_markup() -> None:
    hostile = "<script>alert(1)</script>"
    html = str(trend_chart([{**TREND[0], "period": hostile}], title=hostile))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<script>" not in str(sparkline([1.0, None, 5.0], label=hostile))


def test_sparkline_breaks_at_gaps_and_says_its_values() -> None:
    svg = svg_of(str(sparkline([10.0, 20.0, None, -5.0], label="Acme")))
    assert svg.get("aria-label") == "Acme: 10.0, 20.0, —, -5.0"
    ns = "{http://www.w3.org/2000/svg}"
    assert len(svg.findall(f"{ns}polyline")) == 1 and len(svg.findall(f"{ns}circle")) == 1
    assert svg_of(str(sparkline([None, None], label="Empty"))).get("aria-label") == "Empty: no answers"


def test_the_trend_says_what_its_band_and_rings_mean() -> None:
    with_change = str(trend_chart(TREND))
    assert "95% confidence interval" in with_change and "a significant change" in with_change
    without = str(trend_chart(TREND[:1]))
    assert "95% confidence interval" in without and "a significant change" not in without
