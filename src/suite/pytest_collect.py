"""cluster-action's listing of a pytest suite: loaded with `-p cluster_action_collect`, it
writes the node id of every test pytest collected and kept (after `-k`, `-m`, `--deselect`
and whatever else the arguments, `addopts` and plugins decide), one JSON string a line, to
the file named by CLUSTER_ACTION_COLLECT. What pytest prints, at any verbosity, is not read.
"""

import json
import os


def pytest_collection_finish(session):
    path = os.environ.get("CLUSTER_ACTION_COLLECT")
    if not path:
        return
    with open(path, "w", encoding="utf-8") as out:
        for item in session.items:
            out.write(json.dumps(item.nodeid) + "\n")
