#!/usr/bin/env bash
# A browser for the request service's browser test (tests/service/test_browser.py):
# Debian's chromium at /usr/bin/chromium, driven by Playwright for Python (the
# `test` extra). Playwright's own browser download (`playwright install`) does
# not work without a route to its CDN, so the test launches this one instead.
# Idempotent: when /usr/bin/chromium is there, it only says so. Needs root (apt-get).
set -euo pipefail

say() { echo "browser: $*" >&2; }

if [ -x /usr/bin/chromium ]; then
    say "$(/usr/bin/chromium --version 2>/dev/null || echo chromium) is installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    say "/usr/bin/chromium is missing and installing it needs root: apt-get install chromium"
    exit 1
fi
say "installing Debian's chromium"
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
say "$(/usr/bin/chromium --version) installed"
