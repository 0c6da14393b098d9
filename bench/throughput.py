"""Benchmark: HTTP throughput of one ``npsd serve`` process under load from a separate process (wrk).

* ``GET /nps/{id}`` and ``POST /nps`` requests/s, each against ``GET /healthz`` of the same app on
  the same server (goal: ratio >= 0.4);
* a mixed read/write load (80% GET /nps/{id}, 10% GET /nps?limit=20, 10% POST /nps) for
  ``MIXED_SECONDS`` (default 60) with 0 errors, reporting p50 and p99 latency.

Needs ``wrk`` (Debian: ``apt-get install wrk``).

    python bench/throughput.py
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import prepare, server

SECRET = "bench-" + secrets.token_hex(16)
DURATION = int(os.environ.get("THROUGHPUT_SECONDS", "10"))
MIXED_SECONDS = int(os.environ.get("MIXED_SECONDS", "60"))
CONNECTIONS = 16

POST_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"email":"load%d-%d@example.com","score":%d}', math.random(1, 1000000), counter, counter % 11)
  return wrk.format(nil, nil, nil, body)
end
"""

MIXED_LUA = """
counter = 0
post_headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(token)s"}
request = function()
  counter = counter + 1
  local r = counter % 10
  if r == 0 then
    local body = string.format('{"email":"mix%d-%d@example.com","score":%d}', math.random(1, 1000000), counter, counter % 11)
    return wrk.format("POST", "/nps", post_headers, body)
  elseif r == 1 then
    return wrk.format("GET", "/nps?limit=20")
  else
    return wrk.format("GET", "/nps/%(rid)s")
  end
end
errors = 0
response = function(status, headers, body)
  if status >= 400 then errors = errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("p50_us=%d p99_us=%d requests=%d non2xx_or_socket=%d\\n",
    latency:percentile(50), latency:percentile(99), summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def wrk(url: str, token: str, seconds: int, script: str | None = None, threads: int = 1) -> str:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {token}",
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        if script:
            f.write(script)
        path = f.name
    if script:
        cmd += ["-s", path]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    os.unlink(path)
    return out


def rps(output: str) -> float:
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, output
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    assert non2xx is None, f"errors under load:\n{output}"
    return float(match.group(1))


def main() -> None:
    if shutil.which("wrk") is None:
        # a row in the table rather than silence: the run is incomplete (scripts/bench.sh installs wrk)
        print("http_throughput ours=- baseline=- ratio=- goal=ratio>=0.4 met=skipped(wrk-not-installed)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'load.db'}"
        _, token = prepare(url, SECRET)
        with server(url, SECRET) as base:
            headers = {"Authorization": f"Bearer {token}"}
            rid = httpx.post(
                base + "/nps", json={"email": "seed@example.com", "score": 9}, headers=headers
            ).json()["_id"]
            for i in range(200):
                httpx.post(
                    base + "/nps", json={"email": f"s{i}@example.com", "score": i % 11}, headers=headers
                )
            trivial = rps(wrk(base + "/healthz", token, DURATION))
            get_one = rps(wrk(f"{base}/nps/{rid}", token, DURATION))
            trivial2 = rps(wrk(base + "/healthz", token, DURATION))
            post = rps(wrk(base + "/nps", token, DURATION, POST_LUA))
            base_rps = (trivial + trivial2) / 2
            for name, ours in (("http_get_nps_by_id", get_one), ("http_post_nps", post)):
                ratio = ours / base_rps
                print(
                    f"{name} ours={ours:.0f}req/s baseline={base_rps:.0f}req/s(GET/healthz) "
                    f"ratio={ratio:.2f} goal=ratio>=0.4 met={'yes' if ratio >= 0.4 else 'no'}"
                )
            out = wrk(
                base, token, MIXED_SECONDS, MIXED_LUA.replace("%(rid)s", rid).replace("%(token)s", token)
            )
            match = re.search(r"p50_us=(\d+) p99_us=(\d+) requests=(\d+) non2xx_or_socket=(\d+)", out)
            assert match, out
            p50, p99, total, errors = (int(x) for x in match.groups())
            print(
                f"http_mixed_{MIXED_SECONDS}s ours={errors}errors baseline=- p50={p50 / 1000:.1f}ms "
                f"p99={p99 / 1000:.1f}ms requests={total} goal=0errors met={'yes' if errors == 0 else 'no'}"
            )


if __name__ == "__main__":
    main()
