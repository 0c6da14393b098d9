"""Property tests of analytics/nps.py against brute force over raw score lists.

The brute force never uses the promoter/passive/detractor shortcut: it maps each answer to +1,
0 or -1 and computes mean and variance the textbook way, exactly, with fractions. The adjusted
Wald figures (DESIGN.md §5) are the same textbook weighted mean and variance over the answers
plus pseudo-answers: 0.75 of a detractor, 1.5 of a passive and 0.75 of a promoter.
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


PSEUDO = ((-1, Fraction(3, 4)), (0, Fraction(3, 2)), (1, Fraction(3, 4)))  # (value, weight)


def weighted(raw: list[int]) -> list[tuple[int, Fraction]]:
    return [(value(s), Fraction(1)) for s in raw] + list(PSEUDO)


def brute_adjusted_centre(raw: list[int]) -> Fraction:
    """100 times the weighted mean of the ±1/0 variable over answers and pseudo-answers."""
    sample = weighted(raw)
    return 100 * sum(w * v for v, w in sample) / sum(w for _, w in sample)


def brute_adjusted_se(raw: list[int]) -> float:
    """100·sqrt(Var/ñ), Var the weighted population variance, ñ the total weight (n + 3)."""
    sample = weighted(raw)
    total = sum(w for _, w in sample)
    mean = sum(w * v for v, w in sample) / total
    variance = sum(w * (v - mean) ** 2 for v, w in sample) / total
    return 100 * math.sqrt(variance / total)


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
def test_margin_of_error_is_196_adjusted_standard_errors(raw: list[int]) -> None:
    s = nps.Summary.of_scores(raw)
    se = nps.standard_error(*s.triple)
    assert se is not None and math.isclose(se, brute_adjusted_se(raw), rel_tol=1e-9, abs_tol=1e-9)
    moe = s.margin_of_error
    assert moe is not None and abs(moe - 1.96 * brute_adjusted_se(raw)) <= 0.05 + 1e-9
    assert moe > 0
    assert nps.margin_of_error(*s.triple) == moe


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
def test_confidence_interval_is_centred_on_the_adjusted_estimate(raw: list[int]) -> None:
    s = nps.Summary.of_scores(raw)
    ci = s.confidence_interval
    assert ci is not None and nps.confidence_interval(*s.triple) == ci
    low, high = ci
    centre = float(brute_adjusted_centre(raw))
    half = 1.96 * brute_adjusted_se(raw)
    # widened, where the pull towards 0 would leave it out, to hold the reported NPS
    observed = float(brute_nps(raw))
    assert abs(low - max(min(centre - half, observed), -100)) <= 0.05 + 1e-9
    assert abs(high - min(max(centre + half, observed), 100)) <= 0.05 + 1e-9
    assert -100 <= low < high <= 100  # inside the scale, never zero-width
    assert low <= round(centre, 1) <= high
    assert low <= s.nps <= high  # it always holds the NPS it is reported with
    # the adjusted estimate is the plain NPS pulled towards 0 by n/(n + 3)
    assert brute_adjusted_centre(raw) == brute_nps(raw) * len(raw) / (len(raw) + 3)


small_triples = st.tuples(*[st.integers(min_value=0, max_value=100)] * 3).filter(lambda t: sum(t) > 0)


@given(small_triples, st.integers(min_value=2, max_value=10))
def test_interval_narrows_as_the_sample_grows(t: tuple[int, int, int], k: int) -> None:
    """Same proportions, k times the answers: a strictly narrower interval, within -100..100."""
    small, large = nps.confidence_interval(*t), nps.confidence_interval(*(k * x for x in t))
    assert small is not None and large is not None
    for low, high in (small, large):
        assert -100 <= low < high <= 100
    assert large[1] - large[0] < small[1] - small[0]


def test_two_promoters_do_not_collapse_the_interval() -> None:
    # plain Wald: p = 1, d = 0, variance 0, "100 ± 0". Adjusted, by hand: ñ = 5, p̃ = 2.75/5 = 0.55,
    # d̃ = 0.15, variance 0.7 - 0.16 = 0.54, SE = 100·sqrt(0.54/5) = 32.863, margin 64.4,
    # centre 100·(0.55 - 0.15) = 40, interval [40 - 64.4, 100 (clipped)].
    s = nps.Summary.of_scores([10, 9])
    assert s.nps == 100.0
    assert s.margin_of_error == 64.4
    assert s.confidence_interval == (-24.4, 100.0)
    assert s.low_sample is True
    low, high = s.confidence_interval
    assert low < 100 and s.margin_of_error > 0
    # the interval need not be symmetric around the reported NPS
    assert s.nps - low != high - s.nps


def test_hand_computed_intervals() -> None:
    # 7 promoters, 3 passives, 3 detractors: ñ = 16, p̃ = 7.75/16, d̃ = 3.75/16, centre 25,
    # variance 11.5/16 - 0.25² = 0.65625, SE = 100·sqrt(0.65625/16) = 20.2523, margin 39.6945
    assert nps.nps(7, 3, 3) == 30.8
    assert nps.margin_of_error(7, 3, 3) == 39.7
    assert nps.confidence_interval(7, 3, 3) == (-14.7, 64.7)
    # all passives: centre 0, variance 1.5/5 = 0.3, SE = 100·sqrt(0.3/5) = 24.495, margin 48.01
    assert nps.confidence_interval(0, 2, 0) == (-48.0, 48.0)
    # one detractor: ñ = 4, p̃ = 0.1875, d̃ = 0.4375, variance 0.625 - 0.0625, SE = 37.5, margin 73.5
    assert nps.margin_of_error(0, 0, 1) == 73.5
    # one detractor: centre -25 ± 73.5 would end at -98.5 and leave out the observed -100
    assert nps.confidence_interval(0, 0, 1) == (-100.0, 48.5)
    assert nps.confidence_interval(1, 0, 0) == (-48.5, 100.0)
    # a bound just below 0 reads 0.0, never -0.0: 4 promoters, 5 passives: ñ = 12, centre 100·4/12,
    # variance 5.5/12 - (1/3)² = 0.34722, SE = 100·sqrt(0.34722/12) = 17.0103, low = 33.3333 - 33.3402
    ci = nps.confidence_interval(4, 5, 0)
    assert ci is not None and ci[0] == 0.0 and math.copysign(1.0, ci[0]) == 1.0


def test_large_samples_converge_to_the_plain_wald_margin() -> None:
    # plain: p = 0.6, d = 0.2, variance 0.8 - 0.16 = 0.64, margin 196·sqrt(0.64/1000) = 4.958
    plain = 196 * math.sqrt(0.64 / 1000)
    moe = nps.margin_of_error(600, 200, 200)
    assert moe is not None and abs(moe - plain) <= 0.2
    ci = nps.confidence_interval(600, 200, 200)
    assert ci is not None and abs(ci[0] - (40 - plain)) <= 0.2 and abs(ci[1] - (40 + plain)) <= 0.2


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
    assert nps.margin_of_error(0, 0, 0) is None and nps.confidence_interval(0, 0, 0) is None
    assert nps.is_significant((0, 0, 0), (5, 0, 0)) is None
    assert nps.is_significant((5, 0, 0), (0, 0, 0)) is None
    assert nps.change(None, 10.0) is None and nps.change(10.0, None) is None


def brute_significant(a: list[int], b: list[int]) -> bool:
    delta = float(brute_adjusted_centre(b) - brute_adjusted_centre(a))
    return abs(delta) > 1.96 * math.sqrt(brute_adjusted_se(a) ** 2 + brute_adjusted_se(b) ** 2)


@given(nonempty, nonempty)
def test_significance_matches_brute_force_and_is_symmetric(a: list[int], b: list[int]) -> None:
    forward = nps.is_significant(triple(a), triple(b))
    backward = nps.is_significant(triple(b), triple(a))
    assert forward == backward
    delta = abs(float(brute_adjusted_centre(b) - brute_adjusted_centre(a)))
    threshold = 1.96 * math.sqrt(brute_adjusted_se(a) ** 2 + brute_adjusted_se(b) ** 2)
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
    # one promoter against one detractor: plain SEs are 0, so the plain test called it significant.
    # Adjusted, by hand: each SE = 37.5 points, threshold 1.96·sqrt(2)·37.5 = 103.9, Δ = 25 - (-25)
    assert nps.is_significant((1, 0, 0), (0, 0, 1)) is False
    assert nps.is_significant((0, 0, 1), (1, 0, 0)) is False
    # 50 answers at NPS -40 against two promoters: Δ = 40 - (-37.74) = 77.7 > 1.96·sqrt(10.99² + 32.86²) = 67.9
    assert nps.is_significant((10, 10, 30), (2, 0, 0)) is True
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


def test_a_score_that_rounds_to_zero_is_never_negative_zero() -> None:
    from npsd.analytics.nps import nps as nps_of

    score = nps_of(0, 3000, 1)  # -0.033 rounds to -0.0 without care
    assert score == 0.0 and str(score) == "0.0"
