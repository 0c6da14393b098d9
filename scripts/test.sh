#!/usr/bin/env bash
# Install test dependencies into .venv and run every check: ruff (lint and format), mypy over
# src/ (configured in pyproject.toml), then the whole test suite on SQLite and PostgreSQL. This is
# the README's test command and what CI runs. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# The browser tests drive Debian's Chromium through Playwright, which cannot download browsers here.
need_deb chromium chromium
venv_install test
.venv/bin/ruff check src tests bench scripts
.venv/bin/ruff format --check src tests bench scripts
.venv/bin/mypy
# Two processes, each taking whole files (module fixtures such as a served site stay shared): most
# tests wait on servers, browsers and databases, so two halves overlap well even on two cores.
# The files go out slowest first (tests/conftest.py orders them; xdist's own order, most tests
# first, left the few long tests for the end, run by one process while the other sat idle).
.venv/bin/python -m pytest -n "${NPSD_TEST_PROCESSES:-2}" --dist loadfile --no-loadscope-reorder "$@"
