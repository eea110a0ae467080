#!/usr/bin/env bash
# Installs what building and testing triage needs, when it is missing, on Debian/Ubuntu:
# cmake (pingora-core builds zlib-ng with it), promtool (the tests check the /metrics
# exposition with it; Debian ships it in the `prometheus` package), and the real app servers
# the cause tests run (node, gunicorn), and php-fpm (the FastCGI tests start a real PHP-FPM in
# the foreground on loopback; `php8.2-fpm` in Debian 12, or the distribution's default
# `php-fpm`, with PDO's MySQL driver), and Chromium (the admin pages are checked in it, headless). For the checks of
# deploy/ (tests/deploy_files.rs): the prometheus server (same package as promtool),
# systemd-analyze (systemd), kubectl for `kubectl kustomize` (Debian's kubernetes-client when
# the machine has no kubectl), kubernetes-validate (PyPI), and the Prometheus Operator's CRD
# schemas with js-yaml (npm, global) for the PodMonitor. Idempotent: does nothing when all is
# present.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# tests/causes.rs runs real app servers: node (Debian's nodejs when the machine has none).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
# tests/incidents.rs loads the admin pages in headless Chromium.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
php_fpm() { command -v php-fpm8.2 || command -v php-fpm || ls /usr/sbin/php-fpm* 2>/dev/null | head -n1; }
if [ -z "$(php_fpm)" ]; then
    if apt-cache show php8.2-fpm >/dev/null 2>&1; then missing+=(php8.2-fpm); else missing+=(php-fpm); fi
fi
# ...with PDO's MySQL driver: tests/fastcgi.rs runs an app whose database is down.
pdo_mysql() { ls /usr/lib/php/*/pdo_mysql.so 2>/dev/null | head -n1; }
if [ -z "$(pdo_mysql)" ]; then
    if apt-cache show php8.2-mysql >/dev/null 2>&1; then missing+=(php8.2-mysql); else missing+=(php-mysql); fi
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
    for tool in cmake promtool prometheus systemd-analyze kubectl npm; do
        command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is still missing" >&2; exit 1; }
    done
    [ -n "$(php_fpm)" ] || { echo "setup: php-fpm is still missing" >&2; exit 1; }
    [ -n "$(pdo_mysql)" ] || { echo "setup: PHP's pdo_mysql is still missing" >&2; exit 1; }
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

# The Kubernetes schemas, offline (tests/deploy_files.rs validates deploy/kubernetes).
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    echo "setup: installing kubernetes-validate" >&2
    python3 -m pip install --quiet --disable-pip-version-check 'kubernetes-validate>=1.30' >/dev/null 2>&1 \
        || python3 -m pip install --quiet --break-system-packages 'kubernetes-validate>=1.30' >/dev/null
    command -v kubernetes-validate >/dev/null 2>&1 \
        || { echo "setup: kubernetes-validate is still missing" >&2; exit 1; }
fi

# The PodMonitor's schema (a Prometheus Operator CRD, unknown to kubernetes-validate), read by
# scripts/validate-podmonitor.mjs from npm's global root.
npm_root="$(npm root -g)"
if [ ! -d "$npm_root/@kubernetes-models/prometheus-operator" ] || [ ! -d "$npm_root/js-yaml" ]; then
    echo "setup: installing @kubernetes-models/prometheus-operator and js-yaml (npm, global)" >&2
    npm install --global --silent --no-fund --no-audit \
        '@kubernetes-models/prometheus-operator@6' 'js-yaml@4' >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install the Rust toolchain (https://rustup.rs) first" >&2
    exit 1
fi

# cargo-deb: tests/deploy_files.rs packages the debug binary with `cargo deb --no-build` and
# checks the package's contents. A fixed version: its handling of --profile dev may change.
if ! cargo deb --version 2>/dev/null | grep -q '3\.8\.0'; then
    echo "setup: installing cargo-deb 3.8.0 (crates.io)" >&2
    cargo install --quiet --locked cargo-deb --version 3.8.0
fi
