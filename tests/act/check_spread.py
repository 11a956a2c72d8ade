"""Checks what a cluster run of tests/act/spread/cluster.yml left for the act tests:
every job of the manifest passed exactly once, the work was spread over more than one worker,
and each job's outputs came back naming the job and the worker the report names. With
--runner-works, the runner ran jobs too (its own worker, named `<runner>-runner`: auto's
instance 0 with slots).

    python3 check_spread.py MANIFEST REPORT_JSON OUTPUTS_DIR [--runner-works]
"""
import json
import pathlib
import re
import sys


def main(manifest, report_path, outputs, *flags):
    runner_works = "--runner-works" in flags
    names = re.findall(r"^  - name: (\S+)$", pathlib.Path(manifest).read_text(), re.M)
    report = json.loads(pathlib.Path(report_path).read_text())
    problems = []
    seen = [job["name"] for job in report["jobs"]]
    if sorted(seen) != sorted(names):
        problems.append(f"report jobs {sorted(seen)} != manifest jobs {sorted(names)}")
    summary = report["summary"]
    if (summary["total"], summary["passed"]) != (len(names), len(names)):
        problems.append(f"summary {summary} is not {len(names)} passed of {len(names)}")
    workers = set()
    for job in report["jobs"]:
        name = job["name"]
        if job["status"] != "passed" or job["attempts"] != 1:
            problems.append(f"{name}: status {job['status']}, attempts {job['attempts']}")
        workers.add(job["worker"])
        out = pathlib.Path(outputs) / name / "out"
        try:
            recorded = (out / "worker.txt").read_text()
            job_name = (out / "name.txt").read_text()
        except OSError as e:
            problems.append(f"{name}: outputs missing: {e}")
            continue
        if recorded != job["worker"] or job_name != name:
            problems.append(
                f"{name}: outputs say job {job_name!r} on {recorded!r}, report says {job['worker']!r}"
            )
    if len(workers) < 2:
        problems.append(f"all jobs ran on one worker: {workers}")
    on_runner = [w for w in workers if w.endswith("-runner")]
    if runner_works and not on_runner:
        problems.append(f"no job ran on the runner's own worker (instance 0): {sorted(workers)}")
    if not runner_works and on_runner:
        problems.append(f"jobs ran on a runner without slots: {on_runner}")
    for p in problems:
        print(f"check_spread: {p}")
    if not problems:
        print(f"check_spread: {len(names)} jobs passed once each on {len(workers)} workers, outputs match")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
