#!/usr/bin/env bash
# Benchmarks (not tests): dispatch cost, balance, latency hiding, layer distribution, memory and
# API politeness of a cluster of real processes on this machine.
#   scripts/bench.sh [--quick] [--only SCENARIO[,SCENARIO...]]
# Builds the release binary, prints a table, rewrites the figures in BENCHMARKS.md and writes
# them to bench/results.json in cargo's target directory (CARGO_TARGET_DIR, default target/).
# --quick runs each scenario smaller (a smoke check); --only runs just the named scenarios
# (dispatch, balance, latency, suite, suite_short, suite_short_github, suite_heavy,
# github_latency, layer, memory, idle) and updates just their figures in BENCHMARKS.md. The suite
# scenarios run pytest and suite_heavy pytest-xdist,
# which this installs into .cache/venv first (scripts/lib/tools.sh, shared with scripts/test.sh).
# The full run takes about 15 minutes on 2 cores (idle alone about 4, suite about 4, suite_heavy
# about 2, suite_short and suite_short_github about 1 each).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/tools.sh
quick=()
only=()
while [ $# -gt 0 ]; do
  arg=$1
  shift
  case "$arg" in
    --quick) quick=(--quick) ;;
    --only)
      [ $# -gt 0 ] || { echo "scripts/bench.sh: --only needs a scenario list" >&2; exit 2; }
      only=(--only "$1")
      shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "scripts/bench.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
# The suite scenarios (run unless --only leaves them out) need python with pytest (and xdist).
if [ ${#only[@]} -eq 0 ] || [[ ",${only[1]}," =~ ,suite(_heavy|_short)?, ]]; then
  install_pytest_xdist
  export_test_tools
fi
cargo build --release --quiet
md=BENCHMARKS.md
# A quick run is a smoke check: its figures do not replace the real ones.
[ ${#quick[@]} -eq 0 ] || md=-
target=$(scripts/target-dir.sh)
exec python3 scripts/bench/bench.py "$target/release/cluster-action" "$target/bench/results.json" "$md" "${quick[@]}" "${only[@]}"
