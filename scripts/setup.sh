#!/usr/bin/env bash
# Installs what building and testing triage needs, when it is missing, on Debian/Ubuntu:
# cmake (pingora-core builds zlib-ng with it), promtool (the tests check the /metrics
# exposition with it; Debian ships it in the `prometheus` package), and the real app servers
# the cause tests run (node, gunicorn). Idempotent: does nothing
# when all is present.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# tests/causes.rs runs real app servers: node (Debian's nodejs when the machine has none).
command -v node >/dev/null 2>&1 || missing+=(nodejs)

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    # No recommends: only the binaries are needed. Package scripts may fail to start the
    # prometheus service where there is no init system; the binaries are installed anyway.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || true
    for tool in cmake promtool; do
        command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is still missing" >&2; exit 1; }
    done
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
