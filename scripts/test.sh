#!/usr/bin/env bash
# Install what the tests need and run the whole test suite. The tests start their own
# registries, git servers and `jobforge serve` processes on free loopback ports.
source "$(dirname "$0")/lib.sh"
as_root "$@"
trap hand_back_files EXIT

setup
cd "$REPO_ROOT"
if cargo nextest --version >/dev/null 2>&1; then
    log "running the tests with cargo nextest"
    cargo nextest run --workspace --locked --no-fail-fast "$@"
else
    log "running the tests with cargo test"
    cargo test --workspace --locked --no-fail-fast "$@"
fi
