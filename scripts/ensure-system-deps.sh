#!/usr/bin/env bash
# Make sure the system packages the test suite needs are installed:
# a PostgreSQL server (initdb, pg_ctl, postgres), which tests/harness/postgres.py runs
# privately for the tests, Xvfb + screenshot tools for the Tk wizard tests, and Debian's
# Chromium with its ChromeDriver for the browser tests of the pages Licensor serves.
# Idempotent; prints nothing when everything is already there.
set -euo pipefail

have_postgres_server() {
    local dir
    # Debian/Ubuntu keep the server programs off PATH, in /usr/lib/postgresql/<version>/bin.
    for dir in /usr/lib/postgresql/*/bin; do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
            return 0
        fi
    done
    command -v initdb >/dev/null 2>&1 &&
        command -v pg_ctl >/dev/null 2>&1 &&
        command -v postgres >/dev/null 2>&1
}

# The Tk License Wizard is tested in a real window on a virtual screen, with screenshots.
have_display_tools() {
    command -v Xvfb >/dev/null 2>&1 && command -v xwd >/dev/null 2>&1 &&
        command -v xwdtopnm >/dev/null 2>&1 && command -v pnmtopng >/dev/null 2>&1
}

# Pages are tested in a real headless Chromium (Debian's, driven through its chromedriver).
have_browser() {
    [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]
}

packages=()
have_postgres_server || packages+=(postgresql)
have_display_tools || packages+=(xvfb x11-apps netpbm)
have_browser || packages+=(chromium chromium-driver)
if [[ ${#packages[@]} -eq 0 ]]; then
    exit 0
fi
echo "ensure-system-deps: installing: ${packages[*]}" >&2

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-system-deps: apt-get not available; install a PostgreSQL server" \
        "(initdb, pg_ctl, postgres) with your system's package manager, then re-run." >&2
    exit 1
fi

if [[ "$(id -u)" -eq 0 ]]; then
    as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
    as_root() { sudo "$@"; }
else
    echo "ensure-system-deps: not root and sudo is not available. As root, run:" >&2
    echo "    apt-get update && apt-get install -y --no-install-recommends ${packages[*]}" >&2
    exit 1
fi

as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

if ! have_postgres_server || ! have_display_tools || ! have_browser; then
    echo "ensure-system-deps: installed ${packages[*]} but some programs are still missing" >&2
    exit 1
fi
echo "ensure-system-deps: installed ${packages[*]}" >&2
