#!/usr/bin/env bash
# Starts a demo app with faults on 127.0.0.1:3000 and triage in front of it on 127.0.0.1:8080,
# with conf/demo.toml. Then, in another terminal: curl -i http://127.0.0.1:8080/stopped/
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release -- demo -c conf/demo.toml
