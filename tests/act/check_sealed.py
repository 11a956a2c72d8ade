"""Checks that the markers of the act scenario "sealed" travelled: every job of the report
passed and its outputs directory holds out/o.txt with exactly the line CONTENT.

    python3 check_sealed.py REPORT_JSON OUTPUTS_DIR CONTENT
"""
import json
import pathlib
import sys


def main(report_path, outputs, content):
    jobs = json.loads(pathlib.Path(report_path).read_text())["jobs"]
    problems = [f"{j['name']}: {j['status']}" for j in jobs if j["status"] != "passed"]
    for job in jobs:
        path = pathlib.Path(outputs) / job["outputs_dir"] / "out" / "o.txt"
        try:
            if path.read_text() != f"{content}\n":
                problems.append(f"{path} holds {path.read_text()!r}, not {content!r}")
        except OSError as e:
            problems.append(f"{job['name']}: outputs missing: {e}")
    if not jobs:
        problems.append("no jobs in the report")
    for p in problems:
        print(f"check_sealed: {p}")
    if not problems:
        print(f"check_sealed: {len(jobs)} jobs passed, their outputs hold the markers")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
