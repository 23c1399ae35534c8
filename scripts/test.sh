#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then run the whole test suite.
#   Debian chromium (the browser tests drive it; Playwright cannot download its own here),
#   the Python requirements, Leaflet from npm (served to the browser in place of the CDN), and
#   Koop from npm (a third-party ArcGIS token + FeatureServer server the peer tests start).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k proxy`.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v chromium >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation >/dev/null
fi
python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
(cd tests/browser_assets && npm ci --silent)
(cd tests/peers/koop && npm ci --silent)

exec python -m pytest "$@"
