"""Suggested themes: groups of comments that fit none of the organization's themes.

Embeddings of comments in four languages cluster by language before topic (measured: a naive
clustering of the benchmark's comments made one group per language). So each vector first loses
its language's mean direction (:func:`centred`); then a density pass groups them: a comment with
at least ``min_size - 1`` close neighbours (cosine >= ``MEMBER_MIN``) that are not taken yet
starts a group with them, densest first. Each group is labelled by its characteristic words:
frequent in the group, rare in the other comments (a class-based TF-IDF), stop words of the four
languages left out.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from npsd.insights import engine

MEMBER_MIN = 0.55  # cosine of language-centred vectors for two comments to count as close
MAX_GROUPS = 8
LANGUAGE_WEIGHT = 1.0  # how much of the language's mean direction is taken out
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)


@dataclass(frozen=True)
class Group:
    label: str
    keywords: list[str]
    members: list[int]  # indexes into the input, closest to the centre first
    centroid: engine.Vectors


def centred(vectors: engine.Vectors) -> engine.Vectors:
    """``vectors`` without their language's mean direction, normalised again."""
    if len(vectors) == 0:
        return vectors
    langs = engine.languages(vectors)
    shifted = np.stack(
        [v - LANGUAGE_WEIGHT * engine.language_centroid(lang) for v, lang in zip(vectors, langs, strict=True)]
    )
    norms = np.linalg.norm(shifted, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.asarray(shifted / norms, dtype=np.float32)


def words(text: str) -> list[str]:
    stop = engine.lexicon().stopwords
    return [w for w in _WORD.findall(text.casefold()) if w not in stop]


def group(vectors: Sequence[engine.Vectors], texts: Sequence[str], min_size: int) -> list[Group]:
    """Groups of at least ``min_size`` close comments among ``vectors`` (with their ``texts``),
    largest first, at most ``MAX_GROUPS``."""
    if len(vectors) < min_size:
        return []
    points = centred(np.stack(list(vectors)))
    sims = points @ points.T
    close = sims >= MEMBER_MIN
    np.fill_diagonal(close, False)
    taken = np.zeros(len(points), dtype=bool)
    found: list[list[int]] = []
    for i in np.argsort(-close.sum(axis=1), kind="stable"):
        if taken[i]:
            continue
        neighbours = [int(j) for j in np.flatnonzero(close[i] & ~taken)]
        if len(neighbours) + 1 < min_size:
            continue
        members = [int(i), *neighbours]
        taken[members] = True
        found.append(members)
    found.sort(key=len, reverse=True)
    documents = [Counter(words(t)) for t in texts]
    df: Counter[str] = Counter()
    for doc in documents:
        df.update(doc.keys())
    out = []
    for members in found[:MAX_GROUPS]:
        centre = points[members].mean(axis=0)
        centre = centre / (np.linalg.norm(centre) or 1.0)
        ordered = sorted(members, key=lambda m: -float(points[m] @ centre))
        keywords = characteristic([documents[m] for m in members], df, len(documents))
        if not keywords:
            continue
        out.append(
            Group(" / ".join(keywords[:2]), keywords[:6], ordered, np.asarray(centre, dtype=np.float32))
        )
    return out


def characteristic(docs: Sequence[Counter[str]], df: Counter[str], total: int) -> list[str]:
    """Words of a group by class-based TF-IDF: in how many of the group's comments a word is,
    times how rare it is over all comments; words in a single comment of the group left out."""
    in_group: Counter[str] = Counter()
    for doc in docs:
        in_group.update(doc.keys())
    scored = [
        (count * math.log(1 + total / df[word]), word) for word, count in in_group.items() if count >= 2
    ]
    return [word for _, word in sorted(scored, key=lambda s: (-s[0], s[1]))]
