#!/usr/bin/env bash
# Install what the tests need and run the whole test suite. The tests start their own
# registries, git servers and `jobforge serve` processes on free loopback ports.
source "$(dirname "$0")/lib.sh"
as_root "$@"
trap hand_back_files EXIT

setup
install_nextest
cd "$REPO_ROOT"
# nextest runs each test in its own process under the per-test time limit of
# .config/nextest.toml, so a stuck test fails alone instead of hanging the run.
# Every assertion names the behaviour it checks; a backtrace of runtime frames would push
# that message out of a CI log's excerpt. JOBFORGE_BACKTRACE=1 brings backtraces back.
export RUST_BACKTRACE="${JOBFORGE_BACKTRACE:-0}"
log "running the tests with cargo nextest"
cargo nextest run --workspace --locked --no-fail-fast "$@"
