#!/usr/bin/env bash
# End-to-end tests under nektos/act: real workflows of this repository run by act on this
# machine, with act's own artifact server between the jobs. Called by scripts/test.sh.
#   tests/act/run.sh [NAME...]     (default: every scenario)
# The binary under test comes from CLUSTER_ACTION_BIN (default target/debug/cluster-action)
# and reaches the jobs as CLUSTER_ACTION_BINARY (act does not copy the gitignored target/).
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
bin=${CLUSTER_ACTION_BIN:-$root/target/debug/cluster-action}
[ -x "$bin" ] || { echo "tests/act/run.sh: no binary at $bin (run cargo build first)" >&2; exit 2; }
logs=$(mktemp -d)
passed=0
failed=0

pass() { echo "ok - $1"; passed=$((passed + 1)); }
fail() { echo "not ok - $1: $2"; failed=$((failed + 1)); }

# act_run NAME WORKFLOW [ACT ARGS...]: runs the workflow, log in $logs/NAME.log; act's status.
act_run() {
  local name=$1 workflow=$2
  shift 2
  echo "# $name: act -W $workflow"
  ACT_ARTIFACT_DIR="$logs/$name-artifacts" scripts/act.sh -W "$workflow" \
    --env CLUSTER_ACTION_BINARY="$bin" "$@" >"$logs/$name.log" 2>&1
}

# expect_lines NAME PATTERN COUNT: the log holds exactly COUNT lines matching PATTERN.
expect_lines() {
  local got
  got=$(grep -cE -- "$2" "$logs/$1.log")
  [ "$got" -eq "$3" ] || { fail "$1" "expected $3 line(s) matching '$2', found $got"; return 1; }
}

scenario_transport() {
  if ! act_run transport tests/act/workflows/transport.yml; then
    fail transport "act failed"; tail -40 "$logs/transport.log"; return
  fi
  expect_lines transport '\| transport ok$' 2 &&
    expect_lines transport '\| received 300 pongs in order$' 1 &&
    expect_lines transport '\| answered 300 pings in order$' 1 &&
    expect_lines transport '\| layer [0-9a-f]{64} verified: 2 files identical$' 1 &&
    expect_lines transport 'Job succeeded' 2 &&
    pass "transport: two matrix jobs stream both ways and ship a layer through act's artifact server"
}

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(transport)
for s in "${scenarios[@]}"; do
  "scenario_$s"
done
echo "tests/act/run.sh: $passed passed, $failed failed (logs in $logs)"
[ "$failed" -eq 0 ]
