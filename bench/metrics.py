"""Benchmark: ``GET /v1/nps-surveys/nps-metrics`` (monthly trend) at 100,000 and 1,000,000 records.

Seeds a SQLite database directly (records over 5 surveys and 2 years, with the matching roll-up),
then times the endpoint through the full ASGI stack (TestClient against ``create_app``) at each
size (a copy of the 100k database is kept, so both sizes are timed in alternation).
Baselines, in the same run: the endpoint at 100k (for ``growth``) and a raw SQL
``GROUP BY month, score`` over the 1M records, the scan the roll-up exists to avoid (for
``vs_scan``). Goals: growth <= 1.5, vs_scan <= 0.2.

    python bench/metrics.py
"""

from __future__ import annotations

import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Dataset, line
from npsd.app import create_app
from npsd.kit.config import Settings

SECRET = "bench-" + secrets.token_hex(16)
ROUNDS = 31
SCAN = (
    "SELECT substr(date_answered, 1, 7) AS period, score, count(*) FROM nps_record WHERE org_id = ? "
    "GROUP BY period, score"
)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@contextmanager
def metrics_call(ds: Dataset) -> Iterator[Callable[[], dict[str, Any]]]:
    """A function that GETs the monthly nps-metrics of ``ds`` through the app, and returns the body."""
    settings = Settings(database_url=ds.url, secret_key=SECRET, rate_limit=0, worker=False)
    headers = {"Authorization": f"Bearer {ds.token}"}
    with TestClient(create_app(settings)) as client:

        def call() -> dict[str, Any]:
            r = client.get("/v1/nps-surveys/nps-metrics", params={"interval": "month"}, headers=headers)
            assert r.status_code == 200, r.text
            return r.json()

        yield call


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ds = Dataset.create(Path(tmp), SECRET)
        ds.grow(100_000)
        print(f"# seeded 100,000 records in {time.perf_counter() - t0:.1f} s", flush=True)
        small = ds.copy(Path(tmp) / "bench-100k.db")
        t0 = time.perf_counter()
        ds.grow(1_000_000)
        print(f"# seeded up to 1,000,000 records in {time.perf_counter() - t0:.1f} s", flush=True)
        with closing(sqlite3.connect(small.path)) as conn:
            small_cells = conn.execute("SELECT count(*) FROM nps_rollup").fetchone()[0]
        with closing(sqlite3.connect(ds.path)) as conn:
            cells = conn.execute("SELECT count(*) FROM nps_rollup").fetchone()[0]

        # Both sizes are timed in alternation, so load from other processes hits both alike.
        with metrics_call(small) as call_small, metrics_call(ds) as call_large:
            body_small, body_large = call_small(), call_large()
            assert body_small["totalResponses"] == 100_000 and body_large["totalResponses"] == 1_000_000
            assert len(body_large["trend"]) in (24, 25)
            smalls, larges = [], []
            for _ in range(ROUNDS):
                smalls.append(timed(call_small))
                larges.append(timed(call_large))
        t_small, t_large = statistics.median(smalls), statistics.median(larges)

        conn = sqlite3.connect(ds.path)
        rows: list[tuple[str, int, int]] = []

        def scan() -> None:
            rows[:] = conn.execute(SCAN, (ds.org_id,)).fetchall()

        scan()
        t_scan = statistics.median(timed(scan) for _ in range(5))
        conn.close()
        assert sum(r[2] for r in rows) == 1_000_000
        print(
            f"# 100k: {t_small * 1000:.1f} ms over {small_cells} roll-up rows; 1M: {t_large * 1000:.1f} ms over "
            f"{cells} roll-up rows; raw GROUP BY over 1M records: {t_scan * 1000:.1f} ms",
            flush=True,
        )

    growth = t_large / t_small
    vs_scan = t_large / t_scan
    print(line("growth", t_large * 1000, t_small * 1000, growth, "<=1.5", growth <= 1.5, "ms"))
    print(line("vs_scan", t_large * 1000, t_scan * 1000, vs_scan, "<=0.2", vs_scan <= 0.2, "ms"))


if __name__ == "__main__":
    main()
