"""Benchmark: CSV export of 1,000,000 records through HTTP (``GET /nps/export?format=csv``).

A real ``npsd serve`` subprocess serves a SQLite database seeded directly (see common.py), in which
most contacts have a name and belong to one of 2,000 named companies, and every record carries its
contact's company and one of five named surveys: the export looks up all three names per row. The
client (``curl`` when installed, else httpx) streams the download and counts its rows. Memory is the
server process's peak RSS (``VmHWM``, reset just before the export so start-up does not count)
plus the peak of its export worker processes' summed RSS (sampled every 20 ms), during an export
of 100,000 records and, in a fresh process, of 1,000,000: constant-memory streaming keeps the two
close. Baseline for speed, in the same run:
a raw ``sqlite3`` fetch of the same rows in the same order written with the stdlib ``csv``
module to a null sink (no HTTP, no escaping, no date formatting).

Goals: >= 150,000 rows/s at 1M; peak RSS at 1M / peak RSS at 100k <= 1.3.

Both exports must be written by the export worker processes: the server runs as ``npsd serve``
does, in a process that writes its ``npsd.exports.parallel.CSV_EXPORTS`` counts to a file as it
exits, and the benchmark fails unless each export counts once under ``workers_used`` (a fallback
to one reader writes the same file, so only these counts tell).

    python bench/export.py
"""

from __future__ import annotations

import csv
import json
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import serve_process
from common import ChildrenPeak, Dataset, line, peak_rss_mib, reset_peak_rss

SECRET = "bench-" + secrets.token_hex(16)
GOAL_ROWS_PER_S = 150_000
COLUMNS = (
    "id, email, score, comment, enduser_id, company_id, campaign_id, source, source_id, date_sent, "
    "date_reminder_sent, date_answered, custom, created_at, updated_at"
)


COMPANIES = 2_000
UNNAMED_EVERY = 5  # one contact in five has no name
WORKERS_WROTE_IT = {"workers_used": 1, "single_reader": {}, "fallbacks": {}}

# ``npsd serve``, in a process that writes its CSV_EXPORTS counts to the file argv[1] as it exits.
# uvicorn hands SIGTERM back to the handler it found once it has shut down: this one exits cleanly.
COUNTING_SERVER = """
import json, signal, sys
from pathlib import Path

from npsd.cli import app
from npsd.exports.parallel import CSV_EXPORTS


def leave(*_):
    raise SystemExit(0)


signal.signal(signal.SIGTERM, leave)
try:
    app(["serve", "--port", sys.argv[2]], prog_name="npsd")
finally:
    Path(sys.argv[1]).write_text(json.dumps(CSV_EXPORTS.snapshot()))
"""


@contextmanager
def counting_server(url: str, counts: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``_server.serve_process`` (same settings) for a server that leaves its CSV_EXPORTS counts
    in ``counts`` once stopped."""
    with serve_process(url, SECRET, command=["-c", COUNTING_SERVER, str(counts), "{port}"]) as served:
        yield served


def name_everyone(ds: Dataset) -> None:
    """Named companies; contacts with a name (but one in UNNAMED_EVERY) and a company."""
    stamp = ds.now.strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's SQLite form
    with ds.connect() as conn:
        companies = [f"{0xC0000000000000000000000 + i:024x}" for i in range(COMPANIES)]
        conn.executemany(
            "INSERT INTO company (id, org_id, name, domains, nps_responses, version, created_at, updated_at) "
            "VALUES (?, ?, ?, '[]', 0, 0, ?, ?)",
            [(cid, ds.org_id, f"Company {i}, Inc.", stamp, stamp) for i, cid in enumerate(companies)],
        )
        conn.executemany(
            "UPDATE enduser SET name = ?, company_id = ? WHERE id = ?",
            [
                (None if i % UNNAMED_EVERY == 0 else f"User {i}", companies[i % COMPANIES], eid)
                for i, (eid, _) in enumerate(ds.endusers)
            ],
        )


def file_under_companies(ds: Dataset) -> None:
    """Records added by ``grow`` get their contact's company, as the write path files them."""
    with ds.connect() as conn:
        conn.execute(
            "UPDATE nps_record SET company_id = (SELECT e.company_id FROM enduser e WHERE e.id = enduser_id) "
            "WHERE company_id IS NULL"
        )
    with closing(sqlite3.connect(ds.path)) as conn:
        conn.execute("ANALYZE")  # as grow() leaves it: statistics of the rows as they now are


def workers_wrote_it(counts: dict[str, Any], what: str) -> None:
    """Fail the benchmark unless the export workers wrote the export (see the module docstring)."""
    if counts != WORKERS_WROTE_IT:
        raise SystemExit(f"{what}: the export workers did not write the export; CSV_EXPORTS counted {counts}")


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


def export_once(ds: Dataset, counts_path: Path) -> tuple[float, int, float, float, dict[str, Any]]:
    """(seconds, rows, peak RSS before, peak RSS after, the server's CSV_EXPORTS counts) for one
    CSV export in a fresh server."""
    counts_path.unlink(missing_ok=True)
    with counting_server(ds.url, counts_path) as (base, proc):
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
    if not counts_path.exists():
        raise SystemExit("the server left no CSV_EXPORTS counts: cannot tell who wrote the export")
    return elapsed, newlines - 1, before, after, json.loads(counts_path.read_text())


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
        name_everyone(ds)
        counts = Path(tmp) / "csv-exports.json"
        ds.grow(100_000)
        file_under_companies(ds)
        t_small, rows, before_small, rss_small, written = export_once(ds, counts)
        assert rows == 100_000, rows
        workers_wrote_it(written, "100k")
        print(
            f"# 100k: {t_small:.2f} s, {rows / t_small:,.0f} rows/s, peak RSS {before_small:.0f} MiB up to the "
            f"export, {rss_small:.0f} MiB during it",
            flush=True,
        )
        ds.grow(1_000_000)
        file_under_companies(ds)
        t_large, rows, before_large, rss_large, written = export_once(ds, counts)
        assert rows == 1_000_000, rows
        workers_wrote_it(written, "1M")
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
