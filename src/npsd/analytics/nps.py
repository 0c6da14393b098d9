"""Pure NPS maths: classification, score, margin of error, significance. No I/O (the SQL
forms of the classification are expressions, built here so the thresholds exist once).

Definitions (DESIGN.md §5): promoters answer 9-10, passives 7-8, detractors 0-6.
NPS = round(100·(P-D)/N, 1), undefined (None) when N = 0. The NPS of a sample is the mean of
a variable worth +1 for a promoter, 0 for a passive and -1 for a detractor, whose variance is
p + d - (p - d)².

Uncertainty uses an adjusted Wald estimate, because the plain (Wald) one collapses on small
samples: two promoters have p = 1, d = 0, variance 0, and would report "100 ± 0". Pseudo-counts
0.75 / 1.5 / 0.75 are added to detractors / passives / promoters (ñ = N + 3, p̃ = (P + 0.75)/ñ,
d̃ = (D + 0.75)/ñ): the standard error is 100·sqrt((p̃ + d̃ - (p̃ - d̃)²)/ñ) points, the 95%
margin of error 1.96 times that, and the 95% confidence interval is centred on the adjusted
estimate 100·(p̃ - d̃), not on the reported NPS, so it need not be symmetric around it (it is
pulled towards 0: 100·(p̃ - d̃) is the plain NPS times N/(N + 3)); where that pull would leave
the reported NPS outside, the interval is widened to hold it. As p̃, d̃ lie strictly between
0 and 1 and p̃ + d̃ < 1, the variance is positive: the interval is never zero-width (until
rounding to one decimal hides it, on unanimous samples of tens of thousands). For large
samples the adjusted figures converge to the plain ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, case, literal

Z95 = 1.96
LOW_SAMPLE_N = 30
LOW_SAMPLE_MOE = 10.0


# The one definition of the three categories, as inclusive score ranges. Everything else
# (the Python classification, the ``scoreType`` filters, the SQL the exports and roll-ups run)
# derives from it.
CATEGORY_RANGES: dict[str, tuple[int, int]] = {"promoter": (9, 10), "passive": (7, 8), "detractor": (0, 6)}
_CATEGORY_OF = tuple(
    next(name for name, (low, high) in CATEGORY_RANGES.items() if low <= s <= high) for s in range(11)
)


def category(score: int) -> str:
    """``promoter``, ``passive`` or ``detractor`` for a score 0-10."""
    return _CATEGORY_OF[score]


def in_category(score: Any, name: str) -> Any:
    """The SQL condition "``score`` falls in category ``name``" for a score column or expression."""
    low, high = CATEGORY_RANGES[name]
    return score.between(low, high)


def category_sql(score: Any) -> Any:
    """The category of a score column as a SQL ``CASE`` yielding the same text as :func:`category`."""
    whens = [(in_category(score, name), literal(name, String)) for name in CATEGORY_RANGES]
    return case(*whens[:-1], else_=whens[-1][1])


def nps(promoters: int, passives: int, detractors: int) -> float | None:
    n = promoters + passives + detractors
    if n == 0:
        return None
    return round(100.0 * (promoters - detractors) / n, 1) + 0.0  # never -0.0 (1 detractor in 3001)


# Pseudo-counts of the adjusted Wald estimate, added to (promoters, passives, detractors).
PSEUDO_COUNTS = (0.75, 1.5, 0.75)


def _adjusted(promoters: int, passives: int, detractors: int) -> tuple[float, float, float] | None:
    """(p̃, d̃, ñ): the adjusted promoter and detractor proportions and sample size; None when N = 0."""
    if promoters + passives + detractors == 0:
        return None
    p = promoters + PSEUDO_COUNTS[0]
    m = passives + PSEUDO_COUNTS[1]
    d = detractors + PSEUDO_COUNTS[2]
    n = p + m + d
    return p / n, d / n, n


def adjusted_nps(promoters: int, passives: int, detractors: int) -> float | None:
    """The adjusted estimate 100·(p̃ - d̃), unrounded: the centre of the confidence interval."""
    adjusted = _adjusted(promoters, passives, detractors)
    if adjusted is None:
        return None
    p, d, _ = adjusted
    return 100.0 * (p - d)


def standard_error(promoters: int, passives: int, detractors: int) -> float | None:
    """Standard error of the NPS, in points (0-100 scale), unrounded: the adjusted Wald one,
    100·sqrt((p̃ + d̃ - (p̃ - d̃)²)/ñ), always positive; None when there is no answer."""
    adjusted = _adjusted(promoters, passives, detractors)
    if adjusted is None:
        return None
    p, d, n = adjusted
    return 100.0 * math.sqrt((p + d - (p - d) ** 2) / n)


def margin_of_error(promoters: int, passives: int, detractors: int) -> float | None:
    """Half-width of the 95% confidence interval, 1.96 adjusted standard errors, in NPS points,
    one decimal; None when there is no answer."""
    se = standard_error(promoters, passives, detractors)
    return None if se is None else round(Z95 * se, 1)


def confidence_interval(promoters: int, passives: int, detractors: int) -> tuple[float, float] | None:
    """The 95% confidence interval (lower, upper) in NPS points, one decimal: the adjusted
    estimate 100·(p̃ - d̃) ± 1.96 adjusted standard errors, widened where needed to hold the
    reported NPS, clipped to -100..100. It is centred on the adjusted estimate, not on
    :func:`nps`, so it need not be symmetric around the reported NPS, but always contains it;
    None when there is no answer."""
    centre, se, observed = (
        adjusted_nps(promoters, passives, detractors),
        standard_error(promoters, passives, detractors),
        nps(promoters, passives, detractors),
    )
    if centre is None or se is None or observed is None:
        return None
    half = Z95 * se
    # The pull towards 0 may leave the observed NPS just outside (one promoter: centre 25 ± 73.5
    # ends at 98.5): the interval is widened to hold it, since the data cannot rule out what was
    # observed. + 0.0 turns a -0.0 (a bound rounding to 0 from below) into 0.0.
    lower, upper = min(centre - half, observed), max(centre + half, observed)
    return (round(max(lower, -100.0), 1) + 0.0, round(min(upper, 100.0), 1) + 0.0)


def is_significant(previous: tuple[int, int, int], current: tuple[int, int, int]) -> bool | None:
    """Whether the NPS change between two independent samples is beyond chance at 95%.

    |Δ| > 1.96·sqrt(SE₁² + SE₂²) with the adjusted standard errors and Δ the difference of the
    adjusted estimates 100·(p̃ - d̃): the adjusted Wald test of a difference, which for large
    samples is the plain one. Plain SEs are 0 for unanimous samples, so one promoter against one
    detractor was "significant"; adjusted SEs (37.5 points each, a threshold of 104) with the
    plain Δ = 200 still would be, while Δ = 25 - (-25) = 50 is not. None when either sample is
    empty.
    """
    se1, se2 = standard_error(*previous), standard_error(*current)
    c1, c2 = adjusted_nps(*previous), adjusted_nps(*current)
    if se1 is None or se2 is None or c1 is None or c2 is None:
        return None
    return abs(c2 - c1) > Z95 * math.sqrt(se1**2 + se2**2)


def change(previous: float | None, current: float | None) -> float | None:
    """Difference between two reported NPS values, in points (one decimal); None if either is None."""
    if previous is None or current is None:
        return None
    return round(current - previous, 1)


def impact(overall: tuple[int, int, int], group: tuple[int, int, int]) -> tuple[float | None, float | None]:
    """How many NPS points the overall score would move without the answers of ``group`` (a
    subset of ``overall``, both as (promoters, passives, detractors)), and the 95% margin of that
    move: ``NPS(rest) - NPS(all)``. Positive: the group pulls the score down (without it the
    score would be higher); negative: it holds the score up.

    With w = n_group / n_all, NPS(all) = w·NPS(group) + (1 - w)·NPS(rest), so the move is
    w·(NPS(rest) - NPS(group)): the share of the group times the gap between the two disjoint
    samples, whose variance (w held fixed) is w²·(SE_rest² + SE_group²), from the adjusted
    standard errors. (None, None) when either part is empty: without the group there is no
    score, or the group has no answer.
    """
    rest = tuple(a - b for a, b in zip(overall, group, strict=True))
    if min(rest) < 0:
        raise ValueError("the group must be part of the overall answers")
    n_all, n_group = sum(overall), sum(group)
    all_score, rest_score = nps(*overall), nps(*rest)
    se_rest, se_group = standard_error(*rest), standard_error(*group)
    if n_group == 0 or all_score is None or rest_score is None or se_rest is None or se_group is None:
        return None, None
    w = n_group / n_all
    moved = round(100.0 * ((rest[0] - rest[2]) / sum(rest) - (overall[0] - overall[2]) / n_all), 1) + 0.0
    return moved, round(Z95 * w * math.sqrt(se_rest**2 + se_group**2), 1)


@dataclass(frozen=True)
class Summary:
    """Everything the API reports about one set of answers."""

    distribution: tuple[int, ...]  # 11 counts, scores 0..10

    @classmethod
    def of_scores(cls, scores: Iterable[int]) -> Summary:
        counts = [0] * 11
        for s in scores:
            counts[s] += 1
        return cls(tuple(counts))

    @classmethod
    def of_distribution(cls, counts: Sequence[int]) -> Summary:
        if len(counts) != 11:
            raise ValueError("a distribution has 11 counts, for scores 0..10")
        return cls(tuple(int(c) for c in counts))

    @property
    def total(self) -> int:
        return sum(self.distribution)

    @property
    def promoters(self) -> int:
        return self.distribution[9] + self.distribution[10]

    @property
    def passives(self) -> int:
        return self.distribution[7] + self.distribution[8]

    @property
    def detractors(self) -> int:
        return sum(self.distribution[:7])

    @property
    def triple(self) -> tuple[int, int, int]:
        return (self.promoters, self.passives, self.detractors)

    @property
    def nps(self) -> float | None:
        return nps(*self.triple)

    @property
    def average(self) -> float | None:
        n = self.total
        return None if n == 0 else round(sum(i * c for i, c in enumerate(self.distribution)) / n, 2)

    @property
    def margin_of_error(self) -> float | None:
        return margin_of_error(*self.triple)

    @property
    def confidence_interval(self) -> tuple[float, float] | None:
        """95% interval around the adjusted estimate (see :func:`confidence_interval`); it need
        not be symmetric around :attr:`nps`."""
        return confidence_interval(*self.triple)

    @property
    def low_sample(self) -> bool:
        moe = self.margin_of_error
        return self.total < LOW_SAMPLE_N or moe is None or moe > LOW_SAMPLE_MOE

    def percentage(self, count: int) -> float | None:
        n = self.total
        return None if n == 0 else round(100.0 * count / n, 1)

    def __add__(self, other: Summary) -> Summary:
        return Summary(tuple(a + b for a, b in zip(self.distribution, other.distribution, strict=True)))


EMPTY = Summary((0,) * 11)
