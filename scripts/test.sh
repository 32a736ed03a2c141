#!/usr/bin/env bash
# Installs what is missing and runs every test: unit, integration (a real registry on
# loopback), and the Debian end-to-end test (needs root; skipped with a message otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# The mount tests run the binaries (some as another user): build them first.
cargo build --workspace --bins 2>&1 | tee "$log" || status=$?
if [ "$status" -eq 0 ]; then
  cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee -a "$log" || status=$?
fi
# One closing line over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
