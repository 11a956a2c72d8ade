"""A batch of a pytest suite handed to the worker's warm session (cluster-action's
pytest_session.py): `python -c THIS IDS REPORT`, with CLUSTER_SESSION naming the session's
control directory. It sends the file of node ids IDS, writes each progress line the session
sends to REPORT (as `pytest -v | tee REPORT` would) and to its output, then replaces REPORT
with the session's JUnit of the batch, marks the session as served (the file `served` in its
control directory: the worker hands it the next batch only then) and exits with pytest's code.
When the session ends before the batch does (a test crashed it), REPORT keeps the progress of
what finished, the end of the session's log is printed, and the exit code is 3.

`python -c THIS --warm [PATH...]` is a warm-up instead: the session is asked to collect the
PATHs (node ids or paths; its own arguments' selection without any) for the batches to come,
which it does after this exits (0), until a batch connects.
"""

import json
import os
import socket
import sys

control = os.environ["CLUSTER_SESSION"]
env = {name: os.environ[name] for name in ("CLUSTER_ATTEMPT", "CLUSTER_JOB_NAME") if name in os.environ}
if sys.argv[1] == "--warm":
    request = {"warm": sys.argv[2:], "env": env}
    report, junit = os.devnull, None
else:
    ids, report = (os.path.abspath(path) for path in sys.argv[1:3])
    junit = report + ".xml"
    request = {"ids": ids, "junit": junit, "env": env}

connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
os.chdir(control)
done = None
with open(report, "w", encoding="utf-8") as progress:
    try:
        connection.connect("socket")
        connection.sendall(json.dumps(request).encode() + b"\n")
        for line in connection.makefile("rb"):
            event = json.loads(line)
            if "line" in event:
                progress.write(event["line"] + "\n")
                progress.flush()
                print(event["line"], flush=True)
            elif "say" in event:
                print(event["say"], flush=True)
            elif "done" in event:
                done = event["done"]
                break
    except OSError as e:
        print(f"[cluster-action: cannot reach the pytest session: {e}]", flush=True)
if done is None:
    try:
        with open("log", "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 4000))
            tail = log.read().decode("utf-8", "replace")
    except OSError:
        tail = ""
    print(tail.rstrip())
    print("[cluster-action: the pytest session ended before the batch did]", flush=True)
    sys.exit(3)
if junit and os.path.exists(junit):
    os.replace(junit, report)
open("served", "w").close()
sys.exit(done)
