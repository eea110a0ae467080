#!/usr/bin/env bash
# Installs what building and testing triage needs, when it is missing, on Debian/Ubuntu:
# cmake (pingora-core builds zlib-ng with it), promtool (the tests check the /metrics
# exposition with it; Debian ships it in the `prometheus` package) and gunicorn (the unix
# socket tests put a real one behind triage). Idempotent: does nothing when all is present.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v gunicorn >/dev/null 2>&1 || missing+=(gunicorn)

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    # No recommends: only the binaries are needed. Package scripts may fail to start the
    # prometheus service where there is no init system; the binaries are installed anyway.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || true
    for tool in cmake promtool gunicorn; do
        command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is still missing" >&2; exit 1; }
    done
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install the Rust toolchain (https://rustup.rs) first" >&2
    exit 1
fi
