#!/usr/bin/env bash
# Install test dependencies into .venv and run every check: ruff, then the whole test suite
# on SQLite and PostgreSQL. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# The browser tests drive Debian's Chromium through Playwright, which cannot download browsers here.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check src tests bench
.venv/bin/python -m pytest "$@"
