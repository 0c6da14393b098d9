#!/usr/bin/env bash
# Install what the benchmarks need (the project in .venv, and wrk for the HTTP load) and run
# every benchmark: one table on stdout, and bench/RESULTS.md. Arguments pick benchmarks by name
# (e.g. `bash scripts/bench.sh bulk list`). With NPSD_TEST_DATABASE_URL set, the bulk benchmark
# also runs against PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y -q wrk || (apt-get update -q && apt-get install -y -q wrk)) >/dev/null
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
.venv/bin/python -m bench "$@"
