"""Shared benchmark helpers: fast seeding of a SQLite database, a server whose memory can be read,
and the one-line result format.

Seeding bypasses the API on purpose: a million records through ``PUT /nps`` would take minutes,
and the benchmarks measure reads. Rows go in with raw ``executemany`` into ``nps_record`` and,
consistently, ``nps_rollup`` (the same counts the write path keeps), on the app's own schema
(``npsd.migrations.upgrade``).
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import prepare, serve_process

SOURCES = ("email",)
SCORE_WEIGHTS = (2, 1, 1, 2, 2, 3, 5, 10, 15, 25, 34)  # a typical, promoter-heavy distribution
COMMENTS = (
    "Great product, the reporting is excellent",
    "Support was slow to answer",
    "",
    "",
    "Too expensive for what we use",
    "Love it",
    "",
    "-- would not recommend",
    "Onboarding took too long, but the team helped",
    "",
)
ENDUSERS = 20_000
SURVEYS = 5
DAYS = 730


def line(name: str, ours: float, baseline: float, ratio: float, goal: str, met: bool, unit: str = "") -> str:
    """``name ours=... baseline=... ratio=... goal=... met=yes|no``, the format every benchmark prints."""
    return (
        f"{name:<24} ours={ours:.4g}{unit} baseline={baseline:.4g}{unit} ratio={ratio:.3f} "
        f"goal={goal} met={'yes' if met else 'no'}"
    )


def _ts(moment: datetime) -> str:
    """SQLAlchemy's SQLite storage form of a naive UTC datetime."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass
class Dataset:
    """A migrated SQLite database with one organization, its surveys and contacts."""

    path: Path
    url: str
    org_id: str
    token: str
    surveys: list[str]
    endusers: list[tuple[str, str]]  # (id, email)
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None, microsecond=0))
    records: int = 0

    @classmethod
    def create(cls, directory: Path, secret: str) -> Dataset:
        path = directory / "bench.db"
        url = f"sqlite:///{path}"
        org_id, token = prepare(url, secret)
        ds = cls(path, url, org_id, token, [], [])
        stamp = _ts(ds.now)
        ds.surveys = [f"{0xB0000000000000000000000 + i:024x}" for i in range(SURVEYS)]
        ds.endusers = [
            (f"{0xE0000000000000000000000 + i:024x}", f"user{i}@example{i % 100}.com")
            for i in range(ENDUSERS)
        ]
        with ds.connect() as conn:
            conn.executemany(
                "INSERT INTO survey (id, org_id, name, survey_type, question, is_active, language, throttle_days, "
                "created_at, updated_at) VALUES (?, ?, ?, 'RELATIONSHIP', 'How likely...?', 1, 'en', 90, ?, ?)",
                [(sid, org_id, f"Survey {i}", stamp, stamp) for i, sid in enumerate(ds.surveys)],
            )
            conn.executemany(
                'INSERT INTO enduser (id, org_id, email, email_key, "primary", archived, version, created_at, '
                "updated_at) VALUES (?, ?, ?, ?, 0, 0, 0, ?, ?)",
                [(eid, org_id, email, email, stamp, stamp) for eid, email in ds.endusers],
            )
        return ds

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=DELETE")  # a bulk load through the WAL would double the writes
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        try:
            conn.execute("BEGIN")
            yield conn
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode=WAL")  # as npsd runs it
        finally:
            conn.close()

    def copy(self, path: Path) -> Dataset:
        """A copy of the database file at ``path`` (same organization and token)."""
        shutil.copyfile(self.path, path)
        return Dataset(
            path,
            f"sqlite:///{path}",
            self.org_id,
            self.token,
            self.surveys,
            self.endusers,
            self.now,
            self.records,
        )

    def grow(self, total: int, seed: int = 1) -> None:
        """Add records until there are ``total``: answers spread evenly over the last two years
        and five surveys, each batch in answer order (as records usually arrive)."""
        count = total - self.records
        if count <= 0:
            return
        rng = random.Random(seed * 1_000_003 + self.records)
        start = self.now - timedelta(days=DAYS)
        span = DAYS * 86400 - 1
        offsets = sorted(rng.randrange(span) for _ in range(count))
        scores = rng.choices(range(11), weights=SCORE_WEIGHTS, k=count)
        rollup: Counter[tuple[str, str, str, int]] = Counter()
        chunk = 100_000
        with self.connect() as conn:
            for part in range(0, count, chunk):
                rows = []
                for j in range(part, min(part + chunk, count)):
                    n = self.records + j
                    answered = start + timedelta(seconds=offsets[j])
                    survey = self.surveys[n % SURVEYS]
                    source = SOURCES[n % len(SOURCES)]
                    eid, email = self.endusers[(n * 7919) % ENDUSERS]
                    score = scores[j]
                    at = _ts(answered)
                    sent = _ts(answered - timedelta(hours=1 + n % 48))
                    rows.append(
                        (
                            f"{0xA0000000000000000000000 + n:024x}",
                            self.org_id,
                            survey,
                            eid,
                            email,
                            score,
                            COMMENTS[n % len(COMMENTS)] or None,
                            source,
                            sent,
                            at,
                            f'{{"plan": "{("free", "pro", "enterprise")[n % 3]}", "seats": {n % 500}}}',
                            at,
                            at,
                        )
                    )
                    rollup[(survey, source, at[:10], score)] += 1
                conn.executemany(
                    "INSERT INTO nps_record (id, org_id, campaign_id, enduser_id, email, score, comment, source, "
                    "date_sent, date_answered, custom, version, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                    rows,
                )
            conn.executemany(
                "INSERT INTO nps_rollup (org_id, survey_id, company_id, source, day, score, count) "
                "VALUES (?, ?, '', ?, ?, ?, ?) ON CONFLICT (org_id, survey_id, company_id, source, day, score) "
                "DO UPDATE SET count = count + excluded.count",
                [(self.org_id, s, src, day, score, n) for (s, src, day, score), n in rollup.items()],
            )
        self.records = total
        with closing(sqlite3.connect(self.path)) as conn:
            conn.execute("ANALYZE")


serve = serve_process  # one way to start a benchmarked server


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (``VmHWM``), in MiB."""
    for text in Path(f"/proc/{pid}/status").read_text().splitlines():
        if text.startswith("VmHWM:"):
            return int(text.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/<pid>/status")


class ChildrenPeak:
    """Samples the summed resident memory of a process's children (export workers) every 20 ms
    while running: their own peaks cannot be read once they have exited."""

    def __init__(self, pid: int) -> None:
        import threading

        import psutil

        self.process = psutil.Process(pid)
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(0.02):
            total = 0
            for child in self.process.children(recursive=True):
                with suppress(psutil.Error):
                    total += child.memory_info().rss
            self.peak_mib = max(self.peak_mib, total / 1024 / 1024)

    def __enter__(self) -> ChildrenPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def reset_peak_rss(pid: int) -> bool:
    """Start a new ``VmHWM`` measurement (Linux ``clear_refs`` 5), so the peak read afterwards
    belongs to what ran since, not to start-up. False where the kernel does not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True
