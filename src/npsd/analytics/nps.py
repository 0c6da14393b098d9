"""Pure NPS maths: classification, score, margin of error, significance. No I/O (the SQL
forms of the classification are expressions, built here so the thresholds exist once).

Definitions (DESIGN.md §5): promoters answer 9-10, passives 7-8, detractors 0-6.
NPS = round(100·(P-D)/N, 1), undefined (None) when N = 0. The NPS of a sample is the mean of
a variable worth +1 for a promoter, 0 for a passive and -1 for a detractor, whose variance is
p + d - (p - d)²; the 95% margin of error is therefore 196·sqrt((p + d - (p-d)²)/N) points.
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
    return round(100.0 * (promoters - detractors) / n, 1)


def standard_error(promoters: int, passives: int, detractors: int) -> float | None:
    """Standard error of the NPS, in points (0-100 scale)."""
    n = promoters + passives + detractors
    if n == 0:
        return None
    p, d = promoters / n, detractors / n
    variance = max(p + d - (p - d) ** 2, 0.0)
    return 100.0 * math.sqrt(variance / n)


def margin_of_error(promoters: int, passives: int, detractors: int) -> float | None:
    """Half-width of the 95% confidence interval, in NPS points, one decimal."""
    se = standard_error(promoters, passives, detractors)
    return None if se is None else round(Z95 * se, 1)


def is_significant(previous: tuple[int, int, int], current: tuple[int, int, int]) -> bool | None:
    """Whether the NPS change between two independent samples is beyond chance at 95%.

    |Δ| > 1.96·sqrt(SE₁² + SE₂²); None when either sample is empty.
    """
    se1, se2 = standard_error(*previous), standard_error(*current)
    n1, n2 = nps(*previous), nps(*current)
    if se1 is None or se2 is None or n1 is None or n2 is None:
        return None
    p1, d1 = previous[0] / sum(previous), previous[2] / sum(previous)
    p2, d2 = current[0] / sum(current), current[2] / sum(current)
    delta = 100.0 * ((p2 - d2) - (p1 - d1))
    return abs(delta) > Z95 * math.sqrt(se1**2 + se2**2)


def change(previous: float | None, current: float | None) -> float | None:
    """Difference between two reported NPS values, in points (one decimal); None if either is None."""
    if previous is None or current is None:
        return None
    return round(current - previous, 1)


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
        score, moe = self.nps, self.margin_of_error
        if score is None or moe is None:
            return None
        return (round(max(score - moe, -100.0), 1), round(min(score + moe, 100.0), 1))

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
