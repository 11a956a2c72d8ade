#!/usr/bin/env bash
# A tiny test framework for the quickstart's `command` suite: `units.sh list` prints one test
# id a line; `units.sh run ID...` runs those tests and writes JUnit to $CLUSTER_JUNIT.
set -u
case "${1:-}" in
  list)
    for n in $(seq 1 20); do echo "unit-$n"; done
    ;;
  run)
    shift
    {
      echo '<testsuite name="units">'
      for id in "$@"; do
        sleep "0.$(( ${id#unit-} % 5 ))"   # tests of different lengths
        echo "<testcase name=\"$id\" time=\"0.$(( ${id#unit-} % 5 ))\"/>"
      done
      echo '</testsuite>'
    } > "$CLUSTER_JUNIT"
    ;;
  *)
    echo "usage: $0 list | run ID..." >&2
    exit 2
    ;;
esac
