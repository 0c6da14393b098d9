"""The comment reader itself: near-empty answers, the shipped vectors of the lexicon, and the
impact maths (``analytics/nps.py``). The quality on labelled answers is a benchmark
(``bench/insights.py``), not a test: it is a figure to report, not a yes/no."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npsd.analytics import nps as nps_math
from npsd.insights import engine


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "-",
        ".",
        "/",
        "n/a",
        "N/A.",
        "none",
        "nothing",
        "k.A.",
        "nichts",
        "rien",
        "RAS",
        "nada",
        "x",
    ],
)
def test_near_empty_comments_say_nothing(text: str) -> None:
    assert engine.is_empty(text)


@pytest.mark.parametrize("text", ["Too slow", "zu teuer", "trop cher", "caro", "Great support!", "no SSO"])
def test_short_comments_with_content_are_read(text: str) -> None:
    assert not engine.is_empty(text)


def test_the_lexicon_covers_four_languages_and_eight_themes() -> None:
    lex = engine.lexicon()
    assert [t.key for t in lex.themes] == [
        "price",
        "support",
        "speed",
        "reliability",
        "ease_of_use",
        "features",
        "onboarding",
        "billing",
    ]
    for theme in lex.themes:
        for lang in engine.LANGUAGES:
            assert theme.names[lang] and theme.description[lang] and len(theme.examples[lang]) >= 8, (
                theme.key,
                lang,
            )
    for label in engine.SENTIMENTS:
        for lang in engine.LANGUAGES:
            assert len(lex.sentiment[label][lang]) >= 10, (label, lang)


def test_the_shipped_vectors_are_the_models() -> None:
    """``lexicon-vectors.npz`` holds every phrase of the lexicon (run scripts/embed_lexicon.py
    after changing it), and its vectors are what the model gives for them."""
    shipped = engine.EMBEDDER.shipped()
    missing = [p for p in engine.lexicon_phrases() if p not in shipped]
    assert not missing, f"{len(missing)} phrases not in lexicon-vectors.npz, e.g. {missing[:3]}"
    sample = random.Random(7).sample(sorted(shipped), 8)
    fresh = engine.Embedder(shipped=None).embed(sample)
    stored = np.stack([shipped[p] for p in sample])
    assert np.min(np.sum(fresh * stored, axis=1)) > 0.999


def test_theme_matching_keeps_close_seconds_and_refuses_weak_matches() -> None:
    tuning = engine.Tuning(theme_min=0.8, theme_second=0.02)
    sims = np.array([[0.85, 0.84, 0.70], [0.79, 0.5, 0.1], [0.9, 0.7, 0.89]], dtype=np.float32)
    got = engine.match_themes(sims, ["a", "b", "c"], tuning)
    assert [[t for t, _ in row] for row in got] == [["a", "b"], [], ["a", "c"]]


@given(
    st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(0, 60)),
    st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(0, 60)),
)
def test_impact_is_the_score_without_the_group_minus_the_score(
    group: tuple[int, int, int], rest: tuple[int, int, int]
) -> None:
    overall = tuple(a + b for a, b in zip(group, rest, strict=True))
    moved, margin = nps_math.impact(overall, group)  # type: ignore[arg-type]
    if sum(group) == 0 or sum(rest) == 0:
        assert (moved, margin) == (None, None)
        return
    exact = 100 * ((rest[0] - rest[2]) / sum(rest) - (overall[0] - overall[2]) / sum(overall))
    assert moved == pytest.approx(exact, abs=0.051)
    assert margin is not None and margin >= 0
    # a group of detractors pulls the score down: without it the score is higher
    if group[2] > 0 and group[0] == group[1] == 0 and rest[0] + rest[1] > 0:
        assert moved > 0


def test_impact_margin_shrinks_with_more_answers() -> None:
    small = nps_math.impact((20, 10, 20), (2, 1, 8))[1]
    large = nps_math.impact((2000, 1000, 2000), (200, 100, 800))[1]
    assert small is not None and large is not None and large < small / 5
    with pytest.raises(ValueError):
        nps_math.impact((1, 1, 1), (2, 0, 0))
