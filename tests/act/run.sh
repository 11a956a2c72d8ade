#!/usr/bin/env bash
# End-to-end tests under nektos/act: real workflows of this repository run by act on this
# machine, with act's own artifact server between the jobs. Called by scripts/test.sh.
#   tests/act/run.sh [NAME...]     (default: every scenario)
# The binary under test comes from CLUSTER_ACTION_BIN (default: debug/cluster-action in cargo's
# target directory, which CARGO_TARGET_DIR moves)
# and reaches the jobs as CLUSTER_ACTION_BINARY (act does not copy the gitignored target/).
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
bin=${CLUSTER_ACTION_BIN:-$(scripts/target-dir.sh)/debug/cluster-action}
[ -x "$bin" ] || { echo "tests/act/run.sh: no binary at $bin (run cargo build first)" >&2; exit 2; }
logs=$(mktemp -d)
passed=0
failed=0

pass() { echo "ok - $1"; passed=$((passed + 1)); }
fail() { echo "not ok - $1: $2"; failed=$((failed + 1)); }

# check NAME COMMAND...: runs a checker; one that fails or crashes fails the scenario.
check() {
  local name=$1
  shift
  "$@" || { fail "$name" "${2##*/} found it wrong (its output is above)"; return 1; }
}

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

# cluster_scenario NAME WORKFLOW JOBS [--runner-works]: a whole cluster through the action
# (uses: ./); every job of the workflow succeeds and the report and outputs are right (and with
# --runner-works, the runner ran jobs too).
cluster_scenario() {
  local name=$1 workflow=$2 jobs=$3 dir="$logs/$1" check=("${@:4}")
  mkdir -p "$dir"
  if ! act_run "$name" "$workflow" --env CA_TEST_DIR="$dir" \
    --env CA_TEST_MANIFEST=tests/act/spread/cluster.yml; then
    fail "$name" "act failed"; tail -60 "$logs/$name.log"; return
  fi
  expect_lines "$name" 'Job succeeded' "$jobs" &&
    expect_lines "$name" '\| outputs: passed=16 failed=0 total=16$' 1 &&
    check "$name" python3 tests/act/check_spread.py tests/act/spread/cluster.yml "$dir/report.json" "$dir/outputs" "${check[@]}" &&
    pass "$name: 16 jobs spread over the workers, each passed once, report and outputs right"
}

scenario_roles() {
  cluster_scenario roles tests/act/workflows/roles.yml 5
}

scenario_auto() {
  cluster_scenario auto tests/act/workflows/auto.yml 4 --runner-works
}

# A failing job fails the runner step (instance 0) and only it, with an ::error annotation.
scenario_failing() {
  local dir="$logs/failing"
  mkdir -p "$dir"
  if act_run failing tests/act/workflows/auto.yml --env CA_TEST_DIR="$dir" \
    --env CA_TEST_MANIFEST=tests/act/spread/failing.yml; then
    fail failing "act succeeded although a job failed"; return
  fi
  # act marks every job of a matrix failed when one fails, so count the action's steps.
  expect_lines failing 'Success - Main \./' 3 &&
    expect_lines failing 'Failure - Main \./' 1 &&
    expect_lines failing '::error.*broken' 1 &&
    expect_lines failing '\| outputs: passed=1 failed=1 total=2$' 1 &&
    pass "failing: only the runner step fails, with an ::error annotation naming the job"
}

# Sealing over act's artifact server: a cluster with the secret input (act's -s) runs jobs that
# print and write markers; it passes, the markers come back, and nothing act stored (every
# upload, plain, gzip-inflated or unzipped) reveals one of them.
scenario_sealed() {
  local dir="$logs/sealed" markers=()
  mkdir -p "$dir"
  for what in command env secret layer output-42 file-48; do markers+=("MARKER-$what-7d2a"); done
  if ! act_run sealed tests/act/workflows/sealed.yml --env CA_TEST_DIR="$dir" \
    -s CLUSTER_SECRET="act sealed scenario secret" -s SECRET_MARK=MARKER-secret-7d2a; then
    fail sealed "act failed"; tail -60 "$logs/sealed.log"; return
  fi
  expect_lines sealed 'Job succeeded' 3 &&
    expect_lines sealed '\| outputs: passed=3 failed=0 total=3$' 1 &&
    check sealed python3 tests/act/check_sealed.py "$dir/report.json" "$dir/outputs" \
      "MARKER-file-48-7d2a MARKER-env-7d2a MARKER-layer-7d2a" &&
    check sealed python3 tests/act/scan_markers.py "$logs/sealed-artifacts" 8 2 "${markers[@]}" &&
    pass "sealed: a sealed cluster passes over act's artifact server, which stores none of its markers"
}

# The workflow users copy (.github/workflows/example-cluster.yml) works as shipped.
scenario_example() {
  if ! act_run example .github/workflows/example-cluster.yml; then
    fail example "act failed"; tail -60 "$logs/example.log"; return
  fi
  expect_lines example 'Job succeeded' 5 &&
    expect_lines example '\| 32 of 32 jobs and tests passed, 0 failed$' 1 &&
    pass "example: the example cluster workflow runs the quickstart manifest on 3 workers"
}

# A test suite through the action (tests: pytest) over a matrix of 3: the merged JUnit has one
# testcase per test and pytest's own counts for the suite run alone here, the flaky test is
# flagged, and the failing one fails the runner step (instance 0) and only it. The jobs get the
# test virtualenv's python (scripts/test.sh installs pytest into it).
scenario_suite() {
  local dir="$logs/suite" python="$root/.cache/venv/bin/python"
  mkdir -p "$dir"
  "$python" -m pytest --version >/dev/null 2>&1 ||
    { fail suite "no pytest in $root/.cache/venv (scripts/test.sh installs it)"; return; }
  if act_run suite tests/act/workflows/suite.yml --env CA_TEST_DIR="$dir" \
    --env CA_TEST_PYTHON="$root/.cache/venv/bin"; then
    fail suite "act succeeded although a test failed"; tail -60 "$logs/suite.log"; return
  fi
  expect_lines suite 'Success - Main \./' 2 &&
    expect_lines suite 'Failure - Main \./' 1 &&
    check suite python3 tests/act/check_suite.py "$python" tests/fixtures/suite-pytest "$dir" &&
    pass "suite: tests: pytest over a matrix of 3, one merged JUnit with pytest's own counts, the flaky test flagged"
}

# A Vitest suite through the action (tests: vitest) over a matrix of 2: the merged JUnit has
# Vitest's own counts for the suite run alone here, each test is reported once and the flaky one
# is flagged, and the failing test fails the runner step (instance 0) and only it. The jobs'
# node_modules are the test frameworks' (scripts/test.sh installs them).
scenario_vitest() {
  local dir="$logs/vitest" modules=${CLUSTER_TEST_NODE_MODULES:-$root/tests/frameworks/node_modules}
  mkdir -p "$dir"
  [ -x "$modules/.bin/vitest" ] ||
    { fail vitest "no vitest in $modules (scripts/test.sh installs it)"; return; }
  if act_run vitest tests/act/workflows/suite-vitest.yml --env CA_TEST_DIR="$dir" \
    --env CA_TEST_NODE_MODULES="$modules"; then
    fail vitest "act succeeded although a test failed"; tail -60 "$logs/vitest.log"; return
  fi
  expect_lines vitest 'Success - Main \./' 1 &&
    expect_lines vitest 'Failure - Main \./' 1 &&
    check vitest python3 tests/act/check_vitest.py "$modules" tests/fixtures/suite-vitest "$dir" &&
    pass "vitest: tests: vitest over a matrix of 2, one merged JUnit with Vitest's own counts, the flaky test flagged"
}

# How many machines: a `local` run measures the suite into a timings file, the plan job
# (role: plan) sizes the matrix from it (outputs workers and matrix), and the cluster runs as
# that many role: auto jobs through fromJSON: every test passes and the runner (reading the
# same history) checks its prediction in its summary.
scenario_plan() {
  local dir="$logs/plan" workers matrix
  mkdir -p "$dir"
  if ! "$bin" local --workers 1 --slots 1 --write-timings "$dir/timings.json" \
    tests/act/plan/sleeps.yml >"$logs/plan-local.log" 2>&1; then
    fail plan "the local run measuring the suite failed"; tail -20 "$logs/plan-local.log"; return
  fi
  if ! act_run plan tests/act/workflows/plan.yml --env CA_TEST_DIR="$dir" \
    --env CA_TEST_TIMINGS="$dir/timings.json"; then
    fail plan "act failed"; tail -60 "$logs/plan.log"; return
  fi
  workers=$(sed -nE 's/.*\| planned: workers=([0-9]+) .*/\1/p' "$logs/plan.log")
  [ -n "$workers" ] && [ "$workers" -ge 2 ] ||
    { fail plan "the plan named '$workers' machines, not 2 or more (12s of tests, target 6s)"; return; }
  matrix=$(seq -s, 0 $((workers - 1)))
  expect_lines plan "\| planned: workers=$workers matrix=\[$matrix\]$" 1 &&
    expect_lines plan 'Job succeeded' $((workers + 1)) &&
    expect_lines plan '\| outputs: passed=12 failed=0 total=12$' 1 &&
    expect_lines plan '\| How many machines: predicted .* machine\(s\) of 1 slot\(s\), took' 1 &&
    pass "plan: a plan job sized the matrix from a measured history ($workers role: auto jobs through fromJSON), its prediction checked"
}

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(transport roles auto failing sealed example suite vitest plan)
for s in "${scenarios[@]}"; do
  "scenario_$s"
done
echo "tests/act/run.sh: $passed passed, $failed failed (logs in $logs)"
[ "$failed" -eq 0 ]
