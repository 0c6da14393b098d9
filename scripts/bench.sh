#!/usr/bin/env bash
# Install what the benchmarks need (the project in .venv, and wrk for the HTTP load) and run
# every benchmark: one table on stdout, and bench/RESULTS.md. Arguments pick benchmarks by name
# (e.g. `bash scripts/bench.sh bulk list`). With NPSD_TEST_DATABASE_URL set, the bulk benchmark
# also runs against PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
need_deb wrk wrk
venv_install test
.venv/bin/python -m bench "$@"
