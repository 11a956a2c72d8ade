"""Checks what a `tests: pytest` cluster run left for the act tests against pytest run alone on
this machine: the merged JUnit has one <testcase> per collected test (named `file::name` by node
id), and its counts of tests, failures, errors and skips equal those of pytest's own JUnit for
the whole suite; the flaky test (test_flaky fails on CLUSTER_ATTEMPT=1 only) is flagged, in the
JSON report and with a <flakyFailure> in the JUnit, and is the only flaky one; every test is in
the JSON report once and passed tests ran once; the step's outputs count what pytest counts.

    python3 check_suite.py PYTHON SUITE_DIR RESULTS_DIR

RESULTS_DIR holds what the workflow handed over: report.json, report.xml (the merged JUnit)
and outputs.json (the action's passed, failed and total outputs).

PYTHON is the interpreter with pytest that the workflow put on PATH; it runs from the
checkout's root (the current directory), as the action does, with the same rootdir.
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET


def pytest_alone(python, suite):
    """Node ids and JUnit counts (tests, failures, errors, skipped) of pytest run alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTER_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    base = [python, "-m", "pytest", "--rootdir=.", suite]
    listed = subprocess.run(base + ["--collect-only", "-q"], env=env, capture_output=True,
                            text=True, check=True).stdout
    ids = [line for line in listed.splitlines() if "::" in line]
    with tempfile.TemporaryDirectory() as tmp:
        junit = pathlib.Path(tmp) / "alone.xml"
        subprocess.run(base + ["-q", f"--junitxml={junit}"], env=env, stdout=subprocess.DEVNULL)
        return ids, counts(ET.parse(junit).getroot())


def cases(root):
    return list(root.iter("testcase"))


def counts(root):
    """(tests, failures, errors, skipped), counted by testcase as tests/suite.rs does."""
    with_child = lambda tag: sum(1 for c in cases(root) if c.find(tag) is not None)
    return len(cases(root)), with_child("failure"), with_child("error"), with_child("skipped")


def main(python, suite, results):
    results = pathlib.Path(results)
    ids, alone = pytest_alone(python, suite)
    merged = ET.parse(results / "report.xml").getroot()
    report = json.loads((results / "report.json").read_text())
    outputs = json.loads((results / "outputs.json").read_text())
    problems = []
    tests, failures, errors, skipped = alone
    # A skipped test is neither passed nor failed; a flaky one passed (--flaky-result pass).
    want = {"passed": str(tests - failures - errors - skipped), "failed": str(failures + errors),
            "total": str(tests)}
    if outputs != want:
        problems.append(f"the step's outputs {outputs} != {want} (from pytest alone)")
    if not ids:
        problems.append("pytest alone collected no tests")
    names = [f"{c.get('classname')}::{c.get('name')}" for c in cases(merged)]
    if sorted(names) != sorted(ids):
        problems.append(f"merged JUnit testcases {sorted(names)} != collected {sorted(ids)}")
    if counts(merged) != alone:
        problems.append(f"merged JUnit counts {counts(merged)} != pytest alone {alone} "
                        "(tests, failures, errors, skipped)")
    flagged = [f"{c.get('classname')}::{c.get('name')}" for c in cases(merged)
               if c.find("flakyFailure") is not None]
    flaky_id = next((i for i in ids if i.endswith("::test_flaky")), None)
    if flagged != [flaky_id]:
        problems.append(f"JUnit flags {flagged} as flaky, expected [{flaky_id}]")
    tests = report.get("tests", [])
    if sorted(t["id"] for t in tests) != sorted(ids):
        problems.append(f"JSON report tests {sorted(t['id'] for t in tests)} != collected {sorted(ids)}")
    flaky = [t["id"] for t in tests if t["status"] == "flaky"]
    if flaky != [flaky_id]:
        problems.append(f"JSON report marks {flaky} flaky, expected [{flaky_id}]")
    for t in tests:
        if t["status"] == "passed" and t["attempts"] != 1:
            problems.append(f"{t['id']}: passed after {t['attempts']} attempts")
    if report.get("test_summary", {}).get("flaky") != 1:
        problems.append(f"test summary {report.get('test_summary')} does not count one flaky test")
    for p in problems:
        print(f"check_suite: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
