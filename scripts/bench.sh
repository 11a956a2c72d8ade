#!/usr/bin/env bash
# Benchmarks (not tests): dispatch cost, balance, latency hiding, layer distribution, memory and
# API politeness of a cluster of real processes on this machine.
#   scripts/bench.sh [--quick] [--only dispatch|balance|latency|layer|memory|idle]
# Builds the release binary, prints a table, rewrites the figures in BENCHMARKS.md and writes
# them to target/bench/results.json. --quick runs each scenario smaller (a smoke check);
# --only runs one scenario and updates only its figures.
# The full run takes about 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=()
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=(--quick) ;;
    --only)
      case "${2:-}" in
        dispatch|balance|latency|layer|memory|idle) only=(--only "$2"); shift ;;
        *) echo "scripts/bench.sh: --only needs a scenario: dispatch, balance, latency, layer, memory or idle" >&2; exit 2 ;;
      esac ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "scripts/bench.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
cargo build --release --quiet
md=BENCHMARKS.md
# A quick run is a smoke check: its figures do not replace the real ones.
[ ${#quick[@]} -eq 0 ] || md=-
target="${CARGO_TARGET_DIR:-target}"
exec python3 scripts/bench/bench.py "$target/release/cluster-action" "$target/bench/results.json" "$md" "${quick[@]}" "${only[@]}"
