#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the integration tests in tests/, which start the
# built triage binary in front of fault-injecting servers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Benchmarks (benches/) are run with `cargo bench`, never as tests.
cargo test --lib --bins --tests "$@"
