#!/usr/bin/env bash
# A tiny table-driven test runner standing in for your real test suite.
#
# Usage: bash suite/check.sh CASES_FILE
# Each line of CASES_FILE is `<shell command> => <expected output>`; blank lines and lines
# starting with # are skipped. Writes reports/<name>.txt and exits 1 if any case fails.
set -euo pipefail

cases=$1
name=$(basename "$cases" .txt)
report=reports/$name.txt
mkdir -p reports
: >"$report"

passed=0
failed=0
while IFS= read -r line || [[ -n $line ]]; do
  [[ -z $line || $line == \#* ]] && continue
  command=${line% => *}
  expected=${line##* => }
  actual=$(eval "$command" 2>&1) || true
  if [[ $actual == "$expected" ]]; then
    passed=$((passed + 1))
    echo "ok   $command" >>"$report"
  else
    failed=$((failed + 1))
    echo "FAIL $command: expected '$expected', got '$actual'" | tee -a "$report"
  fi
done <"$cases"

# Stands in for the time a real suite takes.
sleep "${PAUSE:-0}"

echo "$name: $passed passed, $failed failed" | tee -a "$report"
((failed == 0))
