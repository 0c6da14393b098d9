"""Write src/npsd/insights/data/lexicon-vectors.npz: the vectors of every phrase of lexicon.json.

Run after changing lexicon.json (tests/test_insights_engine.py fails while a phrase is missing):

    .venv/bin/python scripts/embed_lexicon.py
"""

from __future__ import annotations

import numpy as np

from npsd.insights import engine


def main() -> None:
    phrases = engine.lexicon_phrases()
    fresh = engine.Embedder(shipped=None)
    vectors = fresh.embed(phrases).astype(np.float16)
    np.savez_compressed(engine.SHIPPED_VECTORS, phrases=np.array(phrases), vectors=vectors)
    print(f"{len(phrases)} phrases -> {engine.SHIPPED_VECTORS}")


if __name__ == "__main__":
    main()
