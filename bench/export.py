"""Benchmark: CSV export of 1,000,000 records through HTTP (``GET /nps/export?format=csv``).

A real ``npsd serve`` subprocess serves a SQLite database seeded directly (see common.py); the
client (``curl`` when installed, else httpx) streams the download and counts its rows. Memory is the
server process's peak RSS (``VmHWM``, reset just before the export so start-up does not count)
plus the peak of its export worker processes' summed RSS (sampled every 20 ms), during an export
of 100,000 records and, in a fresh process, of 1,000,000: constant-memory streaming keeps the two
close. Baseline for speed, in the same run:
a raw ``sqlite3`` fetch of the same rows in the same order written with the stdlib ``csv``
module to a null sink (no HTTP, no escaping, no date formatting).

Goals: >= 150,000 rows/s at 1M; peak RSS at 1M / peak RSS at 100k <= 1.3.

    python bench/export.py
"""

from __future__ import annotations

import csv
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ChildrenPeak, Dataset, line, peak_rss_mib, reset_peak_rss, serve

SECRET = "bench-" + secrets.token_hex(16)
GOAL_ROWS_PER_S = 150_000
COLUMNS = (
    "id, email, score, comment, enduser_id, company_id, campaign_id, source, source_id, date_sent, "
    "date_reminder_sent, date_answered, custom, created_at, updated_at"
)


class NullSink:
    def write(self, text: str) -> int:
        return len(text)


def download(base: str, token: str, params: str) -> int:
    """Stream ``/nps/export`` and return the number of lines. ``curl`` is the client when present:
    on a small machine a pure-Python HTTP client would take CPU from the server it measures."""
    url = f"{base}/nps/export?{params}"
    newlines = 0
    if shutil.which("curl"):
        with subprocess.Popen(
            ["curl", "-sS", "--fail", "-H", f"Authorization: Bearer {token}", url], stdout=subprocess.PIPE
        ) as proc:
            assert proc.stdout is not None
            while chunk := proc.stdout.read(1 << 20):
                newlines += chunk.count(b"\n")
        assert proc.returncode == 0, f"curl failed with {proc.returncode}"
        return newlines
    with httpx.stream("GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=600) as r:
        assert r.status_code == 200, r.read()[:500]
        for chunk in r.iter_raw(1 << 20):
            newlines += chunk.count(b"\n")
    return newlines


def export_once(ds: Dataset) -> tuple[float, int, float, float]:
    """(seconds, rows, peak RSS before, peak RSS after) for one CSV export in a fresh server."""
    with serve(ds.url, SECRET) as (base, proc):
        httpx.get(
            f"{base}/nps", params={"limit": 10}, headers={"Authorization": f"Bearer {ds.token}"}
        )  # warm up
        before = peak_rss_mib(proc.pid)
        if not reset_peak_rss(proc.pid):
            print("# cannot reset the peak RSS; it includes start-up", flush=True)
        with ChildrenPeak(proc.pid) as workers:
            t0 = time.perf_counter()
            newlines = download(base, ds.token, "format=csv&npsExpiryDay=0")
            elapsed = time.perf_counter() - t0
        after = peak_rss_mib(proc.pid) + workers.peak_mib
    return elapsed, newlines - 1, before, after


def baseline(ds: Dataset) -> float:
    """Seconds for a raw sqlite3 fetch + csv.writer of the same rows."""
    with closing(sqlite3.connect(ds.path)) as conn:
        t0 = time.perf_counter()
        writer = csv.writer(NullSink())
        cursor = conn.execute(
            f"SELECT {COLUMNS} FROM nps_record WHERE org_id = ? ORDER BY date_answered DESC, id DESC",
            (ds.org_id,),
        )
        n = 0
        while rows := cursor.fetchmany(5000):
            writer.writerows(rows)
            n += len(rows)
        elapsed = time.perf_counter() - t0
    assert n == ds.records
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ds = Dataset.create(Path(tmp), SECRET)
        ds.grow(100_000)
        t_small, rows, before_small, rss_small = export_once(ds)
        assert rows == 100_000, rows
        print(
            f"# 100k: {t_small:.2f} s, {rows / t_small:,.0f} rows/s, peak RSS {before_small:.0f} MiB up to the "
            f"export, {rss_small:.0f} MiB during it",
            flush=True,
        )
        ds.grow(1_000_000)
        t_large, rows, before_large, rss_large = export_once(ds)
        assert rows == 1_000_000, rows
        print(
            f"# 1M: {t_large:.2f} s, {rows / t_large:,.0f} rows/s, peak RSS {before_large:.0f} MiB up to the "
            f"export, {rss_large:.0f} MiB during it",
            flush=True,
        )
        t_base = baseline(ds)
    ours = 1_000_000 / t_large
    base = 1_000_000 / t_base
    print(
        line(
            "export_csv_rows_per_s", ours, base, ours / base, f">={GOAL_ROWS_PER_S}", ours >= GOAL_ROWS_PER_S
        )
    )
    ratio = rss_large / rss_small
    print(line("export_peak_rss", rss_large, rss_small, ratio, "<=1.3", ratio <= 1.3, "MiB"))


if __name__ == "__main__":
    main()
