#!/usr/bin/env bash
# Debian's Chromium for the browser tests (tests/test_console_browser.py drives it through Playwright's Python
# package with executable_path=/usr/bin/chromium; `playwright install` is never used: it downloads a browser).
# Idempotent: installs only when /usr/bin/chromium is missing. Runs as root (CI) or through sudo.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
/usr/bin/chromium --version
