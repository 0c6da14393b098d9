"""Property tests of analytics/nps.py against brute force over raw score lists.

The brute force never uses the promoter/passive/detractor shortcut: it maps each answer to +1,
0 or -1 and computes mean and variance the textbook way, exactly, with fractions.
"""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from npsd.analytics import nps

scores = st.lists(st.integers(min_value=0, max_value=10), max_size=400)
nonempty = st.lists(st.integers(min_value=0, max_value=10), min_size=1, max_size=400)


def value(score: int) -> int:
    """+1 for a promoter, 0 for a passive, -1 for a detractor, from the score's definition."""
    if score in (9, 10):
        return 1
    if score in (7, 8):
        return 0
    assert 0 <= score <= 6
    return -1


def brute_nps(raw: list[int]) -> Fraction:
    return Fraction(100 * sum(value(s) for s in raw), len(raw))


def brute_se(raw: list[int]) -> float:
    """Standard error of the mean of the ±1/0 variable, in points: 100·sqrt(Var/n), population variance."""
    n = len(raw)
    mean = Fraction(sum(value(s) for s in raw), n)
    variance = sum((value(s) - mean) ** 2 for s in raw) / n
    return 100 * math.sqrt(variance / n)


def triple(raw: list[int]) -> tuple[int, int, int]:
    return (
        sum(1 for s in raw if value(s) == 1),
        sum(1 for s in raw if value(s) == 0),
        sum(1 for s in raw if value(s) == -1),
    )


def test_category_boundaries() -> None:
    assert [nps.category(s) for s in range(11)] == ["detractor"] * 7 + ["passive"] * 2 + ["promoter"] * 2


@given(scores)
def test_summary_counts_match_the_raw_list(raw: list[int]) -> None:
    s = nps.Summary.of_scores(raw)
    assert s.total == len(raw)
    assert s.distribution == tuple(raw.count(i) for i in range(11))
    assert s.triple == triple(raw)
    assert sum(s.triple) == len(raw)


@given(nonempty)
def test_nps_is_the_rounded_mean_times_100(raw: list[int]) -> None:
    s = nps.Summary.of_scores(raw)
    exact = brute_nps(raw)
    assert s.nps is not None
    assert abs(Fraction(s.nps) - exact) <= Fraction(1, 20) + Fraction(1, 10**9)
    assert -100 <= s.nps <= 100
    assert s.nps == round(float(exact), 1)


@given(nonempty)
def test_margin_of_error_is_196_standard_errors(raw: list[int]) -> None:
    s = nps.Summary.of_scores(raw)
    se = nps.standard_error(*s.triple)
    assert se is not None and math.isclose(se, brute_se(raw), rel_tol=1e-9, abs_tol=1e-9)
    moe = s.margin_of_error
    assert moe is not None and abs(moe - 1.96 * brute_se(raw)) <= 0.05 + 1e-9
    assert moe >= 0


@given(nonempty)
def test_percentages_and_average(raw: list[int]) -> None:
    s = nps.Summary.of_scores(raw)
    n = len(raw)
    p, m, d = triple(raw)
    assert s.percentage(s.promoters) == round(100 * p / n, 1)
    assert s.percentage(s.passives) == round(100 * m / n, 1)
    assert s.percentage(s.detractors) == round(100 * d / n, 1)
    assert s.average == round(sum(raw) / n, 2)
    assert abs(Fraction(s.average) - Fraction(sum(raw), n)) <= Fraction(1, 200) + Fraction(1, 10**9)


@given(nonempty)
def test_confidence_interval_brackets_the_score(raw: list[int]) -> None:
    s = nps.Summary.of_scores(raw)
    ci = s.confidence_interval
    assert ci is not None and s.nps is not None and s.margin_of_error is not None
    low, high = ci
    assert -100 <= low <= s.nps <= high <= 100
    assert low == round(max(s.nps - s.margin_of_error, -100), 1)
    assert high == round(min(s.nps + s.margin_of_error, 100), 1)


@given(nonempty)
def test_low_sample_rule(raw: list[int]) -> None:
    s = nps.Summary.of_scores(raw)
    assert s.margin_of_error is not None
    assert s.low_sample == (len(raw) < 30 or s.margin_of_error > 10)


def test_empty_answers_are_none_never_zero() -> None:
    s = nps.Summary.of_scores([])
    assert s.total == 0
    assert s.nps is None and s.average is None and s.margin_of_error is None
    assert s.confidence_interval is None and s.percentage(0) is None
    assert s.low_sample is True
    assert nps.nps(0, 0, 0) is None and nps.standard_error(0, 0, 0) is None
    assert nps.margin_of_error(0, 0, 0) is None
    assert nps.is_significant((0, 0, 0), (5, 0, 0)) is None
    assert nps.is_significant((5, 0, 0), (0, 0, 0)) is None
    assert nps.change(None, 10.0) is None and nps.change(10.0, None) is None


def brute_significant(a: list[int], b: list[int]) -> bool:
    delta = float(brute_nps(b) - brute_nps(a))
    return abs(delta) > 1.96 * math.sqrt(brute_se(a) ** 2 + brute_se(b) ** 2)


@given(nonempty, nonempty)
def test_significance_matches_brute_force_and_is_symmetric(a: list[int], b: list[int]) -> None:
    forward = nps.is_significant(triple(a), triple(b))
    backward = nps.is_significant(triple(b), triple(a))
    assert forward == backward
    delta = abs(float(brute_nps(b) - brute_nps(a)))
    threshold = 1.96 * math.sqrt(brute_se(a) ** 2 + brute_se(b) ** 2)
    if abs(delta - threshold) > 1e-9:  # away from the exact boundary, where float rounding decides
        assert forward == brute_significant(a, b)


@given(nonempty)
def test_no_change_is_never_significant(raw: list[int]) -> None:
    t = triple(raw)
    assert nps.is_significant(t, t) is False
    doubled = tuple(2 * x for x in t)
    assert nps.is_significant(t, doubled) is False  # same proportions, larger sample


def test_significance_examples() -> None:
    # 1,000 answers at NPS +40 against 1,000 at NPS 0: far beyond chance
    assert nps.is_significant((500, 400, 100), (300, 400, 300)) is True
    # 10 answers each, NPS +20 against +10: well within chance
    assert nps.is_significant((4, 4, 2), (3, 5, 2)) is False
    assert nps.change(10.0, 32.5) == 22.5 and nps.change(32.5, 10.0) == -22.5


@given(scores, scores)
def test_summaries_add_like_concatenated_lists(a: list[int], b: list[int]) -> None:
    assert nps.Summary.of_scores(a) + nps.Summary.of_scores(b) == nps.Summary.of_scores(a + b)
    assert nps.Summary.of_distribution(nps.Summary.of_scores(a).distribution) == nps.Summary.of_scores(a)


@given(nonempty)
def test_nps_is_permutation_invariant_and_bounded_by_extremes(raw: list[int]) -> None:
    s = nps.Summary.of_scores(raw)
    assert nps.Summary.of_scores(list(reversed(raw))).nps == s.nps
    assert nps.Summary.of_scores([10] * len(raw)).nps == 100.0
    assert nps.Summary.of_scores([0] * len(raw)).nps == -100.0
    assert nps.Summary.of_scores([7] * len(raw)).nps == 0.0
