#!/usr/bin/env bash
# Shared set-up for scripts/test.sh and scripts/bench.sh (sourced, not run):
#   need_deb COMMAND PACKAGE  install a Debian package when its command is missing
#   venv_install EXTRAS       the project, editable, with EXTRAS, into .venv
need_deb() {
  if ! command -v "$1" >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -q "$2" || (apt-get update -q && apt-get install -y -q "$2")) >/dev/null
  fi
}

venv_install() {
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -e ".[$1]"
}
