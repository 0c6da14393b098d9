"""Small pieces of the dashboard's templates that say different things for different figures."""

from __future__ import annotations

from typing import Any

from npsd.web.render import templates


def warning(**m: Any) -> str:
    return templates.get_template("_low_sample.html").render(m=m).strip()


def test_the_low_sample_warning_says_which_kind_it_is() -> None:
    assert warning(lowSample=False, totalResponses=500, marginOfError=4.0) == ""
    assert warning(lowSample=True, totalResponses=0, marginOfError=None) == ""  # no NPS, no warning
    few = warning(lowSample=True, totalResponses=1, marginOfError=73.5)
    assert few.startswith(
        '<p class="warning" data-low-sample>Few answers: 1 answer, a margin of error of ±73.5'
    )
    wide = warning(lowSample=True, totalResponses=171, marginOfError=12.6)
    assert "Wide margin: ±12.6 points over 171 answers" in wide and "Few" not in wide
