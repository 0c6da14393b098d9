"""Benchmark: importing a 10,000-row Qualtrics export, against the bulk path it writes through.

``ours``: the whole import engine in-process (decode, recognise the layout, read every row,
then write them 5,000 at a time through ``records.bulk_upsert``, each batch in its own
transaction). ``baseline``: the very same answers, already parsed, written through
``bulk_upsert`` in the same batches and transactions, into a fresh organization of the same
database; the median of five rounds, alternating. The ratio is what reading a tool's export
adds to the write. Goal: ratio <= 1.3.

    python bench/imports.py
"""

from __future__ import annotations

import csv
import io
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import prepare
from common import line
from npsd.imports.layouts import Row, parse
from npsd.imports.service import BATCH, run_rows
from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.records.service import bulk_upsert

ROWS = 10_000
ROUNDS = 5
GOAL = 1.3


def qualtrics_export(rows: int) -> bytes:
    """A Qualtrics CSV: three header rows, the NPS question with its ``_NPS_GROUP`` sibling."""
    rnd = random.Random(7)
    names = ["StartDate", "EndDate", "Status", "Progress", "Finished", "RecordedDate", "ResponseId"]
    names += ["RecipientEmail", "Q1", "Q1_NPS_GROUP", "Q2", "Q3"]
    texts = [*names[:8], "How likely are you to recommend us?", "Group", "Why?", "Plan"]
    ids = ['{"ImportId":"%s"}' % n for n in names]  # noqa: UP031 - the export's own spelling
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\r\n")
    out.writerows([names, texts, ids])
    for i in range(rows):
        score = rnd.randint(0, 10)
        when = f"2025-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00"
        group = "Promoter" if score >= 9 else "Passive" if score >= 7 else "Detractor"
        comment = rnd.choice(["", "Great support", "Too slow,\nreally", "Zu teuer für uns"])
        email = f"person{i % 15000}@customer{i % 400}.example"
        out.writerow(
            [when, when, "0", "100", "True", when, f"R_{i:08d}", email, score, group, comment, "Pro"]
        )
    return ("\ufeff" + buf.getvalue()).encode()


def main() -> None:
    data = qualtrics_export(ROWS)
    ours: list[float] = []
    baseline: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        secret = "bench-" + secrets.token_hex(16)
        # as the server, the worker and the CLI build it: with its settings (else every
        # ``db.config`` reads the environment again)
        db = Database(url, pool_size=2, settings=Settings(database_url=url, secret_key=secret))
        items = [r.item for r in parse(data).rows if isinstance(r, Row)]
        try:
            # alternate, each round into fresh organizations, so both meet the same database size
            for r in range(ROUNDS):
                ours_org, _ = prepare(url, secret, f"import-ours-{r}")
                base_org, _ = prepare(url, secret, f"import-baseline-{r}")
                t0 = time.perf_counter()
                tally = run_rows(db, ours_org, parse(data).rows)
                ours.append(time.perf_counter() - t0)
                assert tally.created == ROWS and not tally.errors, (tally.created, tally.errors[:3])
                t0 = time.perf_counter()
                for start in range(0, len(items), BATCH):
                    with db.transaction() as session:
                        outcome = bulk_upsert(session, base_org, items[start : start + BATCH])
                        assert outcome.created == len(items[start : start + BATCH])
                baseline.append(time.perf_counter() - t0)
        finally:
            db.dispose()
    ours_s, base_s = statistics.median(ours), statistics.median(baseline)
    ratio = ours_s / base_s
    print(
        line(
            "import_qualtrics",
            ROWS / ours_s,
            ROWS / base_s,
            ratio,
            f"ratio<={GOAL}",
            ratio <= GOAL,
            " rows/s",
        )
    )


if __name__ == "__main__":
    main()
