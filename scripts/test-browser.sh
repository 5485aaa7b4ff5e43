#!/usr/bin/env bash
# Make sure headless Chromium and its WebDriver are installed for the dashboard's browser tests.
#
# Usage: bash scripts/test-browser.sh
#
# The tests use Debian's `chromium` and `chromium-driver` (/usr/bin/chromium,
# /usr/bin/chromedriver). When either is missing and we are root, they are installed with
# apt-get (as scripts/test-databases.sh installs the database servers). Not root and missing:
# a message on stderr and exit status 0, so the browser tests skip on a developer's machine;
# under CI=true (where the tests fail instead of skipping) a missing browser is exit status 1.
# Every diagnostic goes to stderr; nothing is printed on stdout.
set -euo pipefail

log() { printf 'test-browser: %s\n' "$*" >&2; }

have_browser() { [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; }

under_ci() { [[ ${CI:-} == true ]]; }

if have_browser; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    log "chromium/chromium-driver are missing and only root can install them (apt-get install chromium chromium-driver)"
    if under_ci; then
        exit 1
    fi
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log "apt-get install chromium chromium-driver"
if ! apt-get install -y -q --no-install-recommends chromium chromium-driver >&2; then
    log "apt-get install failed; apt-get update and retry"
    apt-get update -q >&2 || log "apt-get update failed"
    apt-get install -y -q --no-install-recommends chromium chromium-driver >&2 || {
        log "could not install chromium and chromium-driver"
        exit 1
    }
fi
have_browser || { log "chromium installed but /usr/bin/chromium or /usr/bin/chromedriver is missing"; exit 1; }
log "chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}') ready"
