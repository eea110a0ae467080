#!/usr/bin/env bash
# Installs what building and testing triage needs, when it is missing, on Debian/Ubuntu:
# cmake (pingora-core builds zlib-ng with it), promtool (the tests check the /metrics
# exposition with it; Debian ships it in the `prometheus` package), and the real app servers
# the cause tests run (node, gunicorn), and php-fpm (the FastCGI tests start a real PHP-FPM in
# the foreground on loopback; `php8.2-fpm` in Debian 12, or the distribution's default
# `php-fpm`), and Chromium (the admin pages are checked in it, headless). Idempotent: does
# nothing when all is present.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# tests/causes.rs runs real app servers: node (Debian's nodejs when the machine has none).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
# tests/incidents.rs loads the admin pages in headless Chromium.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
php_fpm() { command -v php-fpm8.2 || command -v php-fpm || ls /usr/sbin/php-fpm* 2>/dev/null | head -n1; }
if [ -z "$(php_fpm)" ]; then
    if apt-cache show php8.2-fpm >/dev/null 2>&1; then missing+=(php8.2-fpm); else missing+=(php-fpm); fi
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    # No recommends: only the binaries are needed. Package scripts may fail to start the
    # prometheus or php-fpm service where there is no init system; the binaries are installed
    # anyway (the tests start php-fpm themselves, with their own config).
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || true
    for tool in cmake promtool; do
        command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is still missing" >&2; exit 1; }
    done
    [ -n "$(php_fpm)" ] || { echo "setup: php-fpm is still missing" >&2; exit 1; }
    command -v chromium >/dev/null 2>&1 || { echo "setup: chromium is still missing" >&2; exit 1; }
fi

# ...and gunicorn, from PyPI (Debian's 20.1 predates the worker-timeout answer the tests
# expect too; they accept both).
if ! python3 -c 'import gunicorn' >/dev/null 2>&1; then
    echo "setup: installing gunicorn" >&2
    python3 -m pip install --quiet --disable-pip-version-check 'gunicorn>=20' >/dev/null 2>&1 \
        || python3 -m pip install --quiet --break-system-packages 'gunicorn>=20' >/dev/null
    python3 -c 'import gunicorn' || { echo "setup: gunicorn is still missing" >&2; exit 1; }
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install the Rust toolchain (https://rustup.rs) first" >&2
    exit 1
fi
