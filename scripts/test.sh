#!/usr/bin/env bash
# Installs what is missing and runs every test: unit, integration (a real registry on
# loopback), and the Debian end-to-end test (needs root; skipped with a message otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --workspace --all-targets --quiet
cargo test --workspace 2>&1
