"""Benchmark: comment search over 1,000,000 answers, on SQLite and on PostgreSQL.

Seeds one organization with 1,000,000 answers spread over two years, about 70% of them with a
comment of 3-25 words drawn from an English, German, French and Spanish vocabulary (capitals,
accents, punctuation); one word, ``refund``, is in about 0.5% of the comments and in no other
word. Then times a selective search as ``GET /nps?search=refund`` serves it: the first page of 100
answers plus their count (``records.queries.list_records`` and ``count_records`` over
``ListQuery(search="refund")``, with the list's default window of 360 days). Baseline, in the
same run and on the same database: the same page and count with ``comment LIKE '%refund%'`` in
place of the search, a scan of the comments. Both must return the same count and the same page.
Median of 7 rounds each, after one warm-up. Goal: ours / baseline <= 0.1 on each database.

Rows go in with bulk SQL: on SQLite by raw ``executemany`` into the migrated schema (the FTS5
triggers index each comment as it is inserted), on PostgreSQL by ``COPY`` with the GIN index
dropped, then built again by the migration's own statement, as a bulk load would. PostgreSQL is ``NPSD_TEST_DATABASE_URL`` or, as for the tests, postgres@127.0.0.1:5432/test,
in a schema of its own dropped afterwards; the default one unreachable, that part is skipped
(said so), while an unreachable ``NPSD_TEST_DATABASE_URL`` fails the run.

    python bench/search.py            # 1,000,000 answers
    python bench/search.py 200000     # fewer, for a quick look
"""

from __future__ import annotations

import importlib
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sqlalchemy import create_engine, func, text

from _server import prepare
from common import Dataset
from npsd.kit.db import Database, normalize_url
from npsd.records.output import T
from npsd.records.queries import ListQuery, count_records, filtered, list_records, ordered

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
ROUNDS = 7
GOAL = 0.1
WORD = "refund"
WORD_SHARE = 0.005  # of the comments
COMMENT_SHARE = 0.7
DAYS = 730
ENDUSERS = 20_000
SECRET = "bench-" + secrets.token_hex(16)
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"

VOCABULARY = {
    "en": "great product support team fast slow easy use price expensive cheap love hate reporting "
    "dashboard export feature missing bug crash onboarding helpful friendly service quality value "
    "recommend would not really very good bad excellent poor interface design mobile app integration "
    "billing invoice account login password update release documentation training response time "
    "customer experience the and but for with it is was too much more less always never sometimes",
    "de": "sehr gut schlecht schnell langsam einfach teuer günstig Unterstützung Kundenservice Produkt "
    "Qualität Preis Leistung empfehlen würde nicht wirklich Benutzeroberfläche Funktion Fehler Absturz "
    "Rechnung Abrechnung Konto Anmeldung Aktualisierung Schulung Antwortzeit Erfahrung zufrieden "
    "übersichtlich Größe Straße Mühe und aber für mit ist war zu immer nie manchmal",
    "fr": "très bien mauvais rapide lent facile cher produit équipe qualité prix service client "
    "recommande serait vraiment interface fonctionnalité erreur facture compte connexion mise à jour "
    "formation réponse expérience satisfait déçu élevé problème où français et mais pour avec est "
    "était trop toujours jamais parfois",
    "es": "muy bueno malo rápido lento fácil caro producto equipo calidad precio servicio cliente "
    "recomendaría realmente interfaz función error factura cuenta inicio sesión actualización "
    "formación respuesta experiencia satisfecho también niño año señal y pero para con es era "
    "demasiado siempre nunca a veces",
}
LANGUAGES = [words.split() for words in VOCABULARY.values()]
assert not any(WORD in w.lower() for words in LANGUAGES for w in words)
PUNCTUATION = [",", ".", "!", "?", " -", ";", ":", "...", " :)"]


def comment(rng: random.Random) -> str | None:
    if rng.random() >= COMMENT_SHARE:
        return None
    words = rng.choices(rng.choice(LANGUAGES), k=rng.randint(3, 25))
    words[0] = words[0].capitalize()
    if rng.random() < WORD_SHARE:  # never first: always lower case, so LIKE finds it on PostgreSQL too
        words.insert(rng.randrange(1, len(words) + 1), WORD)
    return " ".join(w + rng.choice(PUNCTUATION) if rng.random() < 0.12 else w for w in words)


def ts(moment: datetime) -> str:
    """SQLAlchemy's SQLite storage form of a naive UTC datetime."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def records(org_id: str, endusers: list[tuple[str, str]], now: datetime) -> Iterator[tuple[Any, ...]]:
    """Every seeded answer: (id, org, enduser, email, score, comment, answered)."""
    rng = random.Random(7)
    start = now - timedelta(days=DAYS)
    for n in range(ROWS):
        eid, email = endusers[(n * 7919) % len(endusers)]
        answered = start + timedelta(seconds=rng.randrange(DAYS * 86400))
        yield (
            f"{0xA0000000000000000000000 + n:024x}",
            org_id,
            eid,
            email,
            rng.randrange(11),
            comment(rng),
            answered,
        )


# ------------------------------------------------------------------------------------ the timing


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def measure(db: Database, org_id: str, kind: str) -> bool:
    """Time ours and the baseline on ``db``; print the figure; whether the goal is met."""
    q = ListQuery(search=WORD, limit=100)
    plain = ListQuery(limit=100)

    def ours() -> tuple[int, list[str]]:
        with db.transaction(write=False) as session:
            page = list_records(session, org_id, q)
            return count_records(session, org_id, q), [r["_id"] for r in page]

    def baseline() -> tuple[int, list[str]]:
        with db.transaction(write=False) as session:
            stmt = filtered(org_id, plain, datetime.now(UTC).replace(tzinfo=None))
            stmt = stmt.where(T.c.comment.like(f"%{WORD}%"))
            page = session.execute(ordered(stmt, None).limit(100).with_only_columns(T.c.id)).scalars().all()
            count = session.execute(stmt.with_only_columns(func.count())).scalar_one()
            return int(count), list(page)

    o, (count, page) = timed(ours)
    b, (base_count, base_page) = timed(baseline)
    if (count, page) != (base_count, base_page):
        raise SystemExit(f"{kind}: the search found {count} answers, the scan {base_count} (or other pages)")
    ratio = o / b
    print(f"   {count} matching answers in the last 360 days, {len(page)} on the page")
    name = f"search_{'1m' if ROWS == 1_000_000 else ROWS}_{kind}"
    print(
        f"{name} ours={o * 1000:.1f}ms baseline={b * 1000:.1f}ms(LIKE-scan) ratio={ratio:.3f} "
        f"goal=ratio<={GOAL} met={'yes' if ratio <= GOAL else 'no'}"
    )
    # worst cases, for the record (no goal): one letter (every word starting with it), and ten
    for worst in ("e", "a b c d e f g h i j"):
        with db.transaction(write=False) as session:
            t0 = time.perf_counter()
            n = count_records(session, org_id, ListQuery(search=worst))
            list_records(session, org_id, ListQuery(search=worst))
            print(
                f"   (search {worst!r}: {n} answers, page and count in {(time.perf_counter() - t0) * 1000:.0f} ms)"
            )
    return ratio <= GOAL


# --------------------------------------------------------------------------------------- SQLite


def run_sqlite(directory: Path) -> bool:
    t0 = time.monotonic()
    ds = Dataset.create(directory, SECRET)
    with ds.connect() as conn:
        batch: list[tuple[Any, ...]] = []
        sql = (
            "INSERT INTO nps_record (id, org_id, enduser_id, email, score, comment, date_answered, "
            "version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)"
        )
        for rid, org, eid, email, score, text_, answered in records(ds.org_id, ds.endusers, ds.now):
            at = ts(answered)
            batch.append((rid, org, eid, email, score, text_, at, at, at))
            if len(batch) == 100_000:
                conn.executemany(sql, batch)
                batch = []
        conn.executemany(sql, batch)
    # no ANALYZE: npsd gathers no statistics, so the plans are the ones a real database gets
    print(f"   SQLite: {ROWS} answers seeded in {time.monotonic() - t0:.0f} s (FTS5 kept by the triggers)")
    db = Database(ds.url, pool_size=2)
    try:
        return measure(db, ds.org_id, "sqlite")
    finally:
        db.dispose()


# ----------------------------------------------------------------------------------- PostgreSQL


def run_postgresql() -> bool:
    configured = os.environ.get("NPSD_TEST_DATABASE_URL")
    base = configured or PG_DEFAULT
    admin = create_engine(normalize_url(base), connect_args={"connect_timeout": 3})
    schema = f"bench_search_{secrets.token_hex(4)}"
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        if not configured:  # as the tests do: PostgreSQL is optional unless asked for
            print(f"   PostgreSQL: {base} unreachable, skipped (set NPSD_TEST_DATABASE_URL)")
            return True
        print(f"search_postgresql ours=- baseline=- ratio=- goal=ratio<={GOAL} met=no ({exc})")
        return False
    migration = importlib.import_module("npsd.migrations.versions.0005_comment_search")
    try:
        sep = "&" if "?" in base else "?"
        url = f"{base}{sep}options=-csearch_path%3D{schema}"
        t0 = time.monotonic()
        org_id, _ = prepare(url, SECRET)
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        endusers = [
            (f"{0xE0000000000000000000000 + i:024x}", f"user{i}@example{i % 100}.com")
            for i in range(ENDUSERS)
        ]
        engine = create_engine(normalize_url(url))
        with engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(
                'COPY enduser (id, org_id, email, email_key, "primary", archived, version, created_at, '
                "updated_at) FROM STDIN"
            ) as copy:
                for eid, email in endusers:
                    copy.write_row((eid, org_id, email, email, False, False, 0, now, now))
            # a bulk load builds the GIN index once at the end (the migration's own statement)
            conn.execute(text("DROP INDEX ix_nps_record_comment_search"))
            with cursor.copy(
                "COPY nps_record (id, org_id, enduser_id, email, score, comment, date_answered, version, "
                "created_at, updated_at) FROM STDIN"
            ) as copy:
                for rid, org, eid, email, score, text_, answered in records(org_id, endusers, now):
                    copy.write_row((rid, org, eid, email, score, text_, answered, 0, answered, answered))
            conn.execute(text("SET maintenance_work_mem = '256MB'"))
            conn.execute(text(migration.GIN_INDEX))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE nps_record"))
        engine.dispose()
        print(
            f"   PostgreSQL: {ROWS} answers seeded in {time.monotonic() - t0:.0f} s (COPY, then the GIN index)"
        )
        db = Database(url, pool_size=2)
        try:
            return measure(db, org_id, "postgresql")
        finally:
            db.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> int:
    print(f"comment search, {ROWS} answers, page of 100 + count, median of {ROUNDS} rounds")
    with tempfile.TemporaryDirectory() as tmp:
        met = run_sqlite(Path(tmp))
    met = run_postgresql() and met
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
