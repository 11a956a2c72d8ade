"""Checks what a `tests: vitest` cluster run left for the act tests against Vitest run alone on
this machine: the merged JUnit's counts of tests, failures, errors and skips equal those of
Vitest's own JUnit for the whole suite; every test is in the JSON report once, named as
`vitest list` names it; passed tests ran once; the flaky test (`flaky` fails on
CLUSTER_ATTEMPT=1 only) is the only flaky one, in the JSON report and with a <flakyFailure> in
the JUnit.

    python3 check_vitest.py NODE_MODULES SUITE_DIR RESULTS_DIR

NODE_MODULES holds vitest; RESULTS_DIR holds what the workflow handed over: report.json and
report.xml (the merged JUnit).
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

from check_suite import cases, counts

FLAKY = "[unit] tests/math.test.mjs > flaky"


def vitest_alone(modules, suite):
    """JUnit counts (tests, failures, errors, skipped) of Vitest run alone on a copy of suite."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTER_")}
    with tempfile.TemporaryDirectory() as tmp:
        copy = pathlib.Path(tmp) / "suite"
        shutil.copytree(suite, copy)
        (copy / "node_modules").symlink_to(pathlib.Path(modules).resolve())
        subprocess.run(["node_modules/.bin/vitest", "run", "--reporter=junit",
                        "--outputFile=alone.xml"], cwd=copy, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return counts(ET.parse(copy / "alone.xml").getroot())


def main(modules, suite, results):
    results = pathlib.Path(results)
    alone = vitest_alone(modules, suite)
    merged = ET.parse(results / "report.xml").getroot()
    report = json.loads((results / "report.json").read_text())
    problems = []
    if counts(merged) != alone:
        problems.append(f"merged JUnit counts {counts(merged)} != vitest alone {alone} "
                        "(tests, failures, errors, skipped)")
    flagged = [c.get("name") for c in cases(merged) if c.find("flakyFailure") is not None]
    if flagged != ["flaky"]:
        problems.append(f"JUnit flags {flagged} as flaky, expected ['flaky']")
    tests = report.get("tests", [])
    ids = [t["id"] for t in tests]
    if len(ids) != alone[0] or len(set(ids)) != len(ids):
        problems.append(f"JSON report tests {sorted(ids)}: not each of vitest's {alone[0]} once")
    flaky = [t["id"] for t in tests if t["status"] == "flaky"]
    if flaky != [FLAKY]:
        problems.append(f"JSON report marks {flaky} flaky, expected [{FLAKY}]")
    for t in tests:
        if t["status"] == "passed" and t["attempts"] != 1:
            problems.append(f"{t['id']}: passed after {t['attempts']} attempts")
    for p in problems:
        print(f"check_vitest: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
