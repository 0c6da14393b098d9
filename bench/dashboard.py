"""Benchmark: the dashboard's overview and a survey's page at 100,000 and 1,000,000 answers.

Pages read the roll-ups, never the answers, so their server time must barely grow with the
number of answers, and must stay close to the metrics API call for the same filter (a page
draws more than the API returns: charts, the survey list of the filter, the response rate).
Seeds SQLite directly (bench/common.py), signs a viewer in through the sign-in form, then times
``GET /app`` and ``GET /app/surveys/{id}`` through the full ASGI stack, in alternation with the
baselines of the same run: the same page at 100k (growth) and ``GET
/v1/nps-surveys/nps-metrics`` for the same filter at 1M (vs_api).
Goals: growth <= 1.5 and vs_api <= 2 for both pages.

    python bench/dashboard.py
"""

from __future__ import annotations

import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Dataset, line
from npsd.app import create_app
from npsd.auth import service as auth_service
from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.kit.models import Organization

SECRET = "bench-" + secrets.token_hex(16)
ROUNDS = 21
EMAIL, PASSWORD = "viewer@bench.example", "bench-password-1"


def add_viewer(ds: Dataset) -> None:
    db = Database(ds.url, pool_size=1)
    with db.transaction() as session:
        org = session.get(Organization, ds.org_id)
        assert org is not None
        auth_service.create_user(session, org, EMAIL, "viewer", PASSWORD)
    db.dispose()


@contextmanager
def signed_in(ds: Dataset) -> Iterator[TestClient]:
    """A client of the app on ``ds`` with a dashboard session and the API token."""
    settings = Settings(database_url=ds.url, secret_key=SECRET, rate_limit=0, worker=False)
    with TestClient(create_app(settings), follow_redirects=False) as client:
        form = client.get("/app/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert csrf is not None
        r = client.post(
            "/app/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": csrf.group(1)}
        )
        assert r.status_code == 303, r.text
        yield client


def getter(
    client: TestClient, path: str, params: dict[str, str], headers: dict[str, str] | None = None
) -> Callable[[], None]:
    def call() -> None:
        r = client.get(path, params=params, headers=headers)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])

    return call


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def medians(calls: dict[str, Callable[[], None]]) -> dict[str, float]:
    """Each call's median time over ROUNDS, the calls interleaved so machine noise hits all alike."""
    for call in calls.values():
        call()  # warm: templates compiled, caches filled
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(ROUNDS):
        for name, call in calls.items():
            times[name].append(timed(call))
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ds = Dataset.create(Path(tmp), SECRET)
        add_viewer(ds)
        ds.grow(100_000)
        small = ds.copy(Path(tmp) / "bench-100k.db")
        ds.grow(1_000_000)
        print(f"# seeded 100k and 1M answers in {time.perf_counter() - t0:.1f} s", flush=True)
        survey = ds.surveys[0]
        api = {"Authorization": f"Bearer {ds.token}"}
        with signed_in(small) as c_small, signed_in(ds) as c_large:
            calls = {
                "overview_100k": getter(c_small, "/app", {"period": "all"}),
                "overview_1m": getter(c_large, "/app", {"period": "all"}),
                "api_1m": getter(c_large, "/v1/nps-surveys/nps-metrics", {"interval": "month"}, api),
                "survey_100k": getter(c_small, f"/app/surveys/{survey}", {"period": "all"}),
                "survey_1m": getter(c_large, f"/app/surveys/{survey}", {"period": "all"}),
                "survey_api_1m": getter(
                    c_large, "/v1/nps-surveys/nps-metrics", {"interval": "month", "surveyId": survey}, api
                ),
            }
            t = medians(calls)
    ms = {k: v * 1000 for k, v in t.items()}
    print("# medians (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in ms.items()), flush=True)
    for page, base in (("overview", "api_1m"), ("survey", "survey_api_1m")):
        growth = t[f"{page}_1m"] / t[f"{page}_100k"]
        vs_api = t[f"{page}_1m"] / t[base]
        print(
            line(f"{page}_growth", ms[f"{page}_1m"], ms[f"{page}_100k"], growth, "<=1.5", growth <= 1.5, "ms")
        )
        print(line(f"{page}_vs_api", ms[f"{page}_1m"], ms[base], vs_api, "<=2", vs_api <= 2.0, "ms"))


if __name__ == "__main__":
    main()
