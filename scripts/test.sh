#!/usr/bin/env bash
# The README's test command: set up .venv, start what the tests need (each scripts/services/*.sh installs and
# starts one service -- PostgreSQL, Chromium, ... -- and is idempotent), then run the default test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
for svc in scripts/services/*.sh; do
  [ -e "$svc" ] || continue
  bash "$svc"
done
exec .venv/bin/python -m pytest -q "$@"
