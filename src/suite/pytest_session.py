"""cluster-action's pytest session: one pytest process that stays up on a worker's slot and
runs the batches it is handed, so that a batch costs its tests and not a start of Python, an
import of pytest and a collection of its files.

Run as `python -c THIS ARGS...` in the session's directory with CLUSTER_SESSION naming its
control directory. It listens on the unix socket `socket` there, writes `ready` to its
standard output once it does, then sends its own output (pytest's terminal, what is printed
between tests) to the file `log` there. Each connection is one batch: a JSON line
{"ids": FILE, "junit": PATH, "env": {NAME: VALUE}} in; out, one JSON line per event: {"line":
TEXT} (a progress line as `pytest -v` prints them: the node id when a test starts, the node id
and pytest's word when a phase of it reports one), {"say": TEXT} (why something of the batch
could not run: a file that failed to collect) and last {"done": EXIT_CODE}, after pytest's own
JUnit of the batch's tests is at PATH. A warm-up, {"warm": [PATH...], "env": {...}}, is
answered {"done": 0} at once; then, until a batch connects, the session collects the PATHs
(node ids or paths; its own arguments' selection without any) as a `pytest` of them would,
and keeps their tests for the batches. A batch that connects meanwhile stops it after the file
being imported: the files imported so far stay imported, and each batch collects what it
needs as without a warm-up, only faster.

Files are collected when a batch first needs them and kept, with the collectors above them,
for the batches after: a conftest's fixtures stay attached to the directory that was
collected. Within a batch, tests run in pytest's order as a `pytest` of its files would run
them; after its last test everything but the session is torn down (module, class and package
fixtures end with the batch, as they do with a `pytest` per batch), while session-scoped
fixtures stay up for the session's life. SIGTERM ends the session as Ctrl-C ends pytest:
session fixtures are torn down.
"""

import json
import os
import select
import signal
import socket
import sys

import pytest

control = os.environ["CLUSTER_SESSION"]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
# A unix socket's path is at most about 100 bytes: bound by its name in its directory.
here = os.getcwd()
os.chdir(control)
listener.bind("socket")
os.chdir(here)
listener.listen(1)
log = os.open(os.path.join(control, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
ready = os.dup(1)
os.dup2(log, 1)
os.dup2(log, 2)
os.close(log)
os.write(ready, b"ready\n")
os.close(ready)


def interrupt(signum, frame):
    raise KeyboardInterrupt()


signal.signal(signal.SIGTERM, interrupt)


def keep_collected(session):
    """Makes `session` keep what it collected from one collection to the next: pytest clears
    its caches at each, and would make new directory collectors, to which the fixtures of
    conftests it imported already would not be attached."""
    base = type(session)
    paths = {}
    cache = {}

    class Kept(base):
        def _collect_path(self, path, path_cache):
            if path not in paths:
                paths[path] = base._collect_path(self, path, path_cache)
            return paths[path]

        @property
        def _collection_cache(self):
            return cache

        @_collection_cache.setter
        def _collection_cache(self, value):
            pass

    session.__class__ = Kept


class SessionEnd:
    """The next item for the last test of a batch: tear down all but the session."""

    def __init__(self, session):
        self.session = session

    def listchain(self):
        return [self.session]


class Interrupted(Exception):
    """A batch connected while the session was warming up."""


def batch_waiting():
    """Whether a batch is waiting to connect."""
    return bool(select.select([listener], [], [], 0)[0])


class Batch:
    """One connection: its events go to the client while it listens."""

    def __init__(self, connection):
        self.out = connection.makefile("wb")
        self.gone = False

    def send(self, **event):
        if self.gone:
            return
        try:
            self.out.write(json.dumps(event).encode() + b"\n")
            self.out.flush()
        except OSError:
            self.gone = True


class Session:
    def __init__(self):
        self.items = {}
        self.collected = set()
        self.batch = None
        self.order = 0
        # The paths a warm-up asked for, until the session collected them (or was interrupted).
        self.warm_up = None
        self.warmed = False
        self.warming = False

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config):
        # The session writes one JUnit per batch, none of its own.
        from _pytest import junitxml

        xml = config.stash.get(junitxml.xml_key, None)
        if xml is not None:
            del config.stash[junitxml.xml_key]
            config.pluginmanager.unregister(xml)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session):
        session.items = []
        keep_collected(session)
        return True

    def pytest_collectreport(self, report):
        if report.failed and self.batch is not None:
            self.batch.send(say=f"{report.nodeid}: {report.longreprtext}")
        if self.warming and batch_waiting():
            raise Interrupted()

    def pytest_runtest_logstart(self, nodeid):
        if self.batch is not None:
            self.batch.send(line=nodeid)

    def pytest_runtest_logreport(self, report):
        if self.batch is None:
            return
        config = self.config
        _, _, word = config.hook.pytest_report_teststatus(report=report, config=config)
        if isinstance(word, tuple):
            word = word[0]
        if word:
            self.batch.send(line=f"{report.nodeid} {word}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session):
        self.config = session.config
        while True:
            if self.warm_up is not None and not batch_waiting():
                self.warm(session, self.warm_up)
                self.warm_up = None
            connection, _ = listener.accept()
            with connection:
                self.serve(session, connection)

    def collect(self, session, files):
        """Collects `files` (and what they need above them), each on its own, so that a file
        that is not there spoils no other; one that gave no test (it is not there, it failed
        to import) is tried again by the next batch that needs it, which then says why too."""
        for file in files:
            try:
                items = session.perform_collect([file])
            except pytest.UsageError as e:
                self.batch.send(say=str(e))
                items = []
            for item in items:
                self.order += 1
                self.items.setdefault(item.nodeid, (self.order, item))
            if items:
                self.collected.add(file)

    def warm(self, session, paths):
        """Collects `paths` at once, as a `pytest` of them would, and keeps their tests: a
        file that gave tests is not collected again; one that gave none (it failed to import)
        is left for the batch that needs it, which then says why. Interrupted by a batch, it
        keeps no test (pytest's hooks that see the collected tests did not run), but the
        modules imported stay imported."""
        self.warming = True
        try:
            items = session.perform_collect(paths or None)
        except (Interrupted, pytest.UsageError):
            return
        finally:
            self.warming = False
        for item in items:
            self.order += 1
            self.items.setdefault(item.nodeid, (self.order, item))
            self.collected.add(item.nodeid.split("::", 1)[0])

    def serve(self, session, connection):
        with connection.makefile("rb") as lines:
            request = json.loads(lines.readline())
        self.batch = batch = Batch(connection)
        try:
            os.environ.update(request["env"])
            if "warm" in request:
                if not self.warmed:
                    self.warmed = True
                    self.warm_up = request["warm"]
                batch.send(done=0)
                return
            with open(request["ids"], encoding="utf-8", newline="") as ids:
                tests = list(dict.fromkeys(ids.read().split("\n")[:-1]))
            files = list(dict.fromkeys(test.split("::", 1)[0] for test in tests))
            self.collect(session, [file for file in files if file not in self.collected])
            rank = {file: at for at, file in enumerate(files)}
            found = [self.items[test] for test in tests if test in self.items]
            found.sort(key=lambda pair: (rank[pair[1].nodeid.split("::", 1)[0]], pair[0]))
            items = [item for _, item in found]
            code = self.run(session, items, request["junit"])
            batch.send(done=code)
        finally:
            self.batch = None

    def run(self, session, items, junit):
        """Runs `items` as one batch, with pytest's JUnit of them at `junit`."""
        from _pytest import junitxml

        config = session.config
        xml = junitxml.LogXML(
            junit,
            config.option.junitprefix,
            config.getini("junit_suite_name"),
            config.getini("junit_logging"),
            config.getini("junit_duration_report"),
            config.getini("junit_family"),
            config.getini("junit_log_passing_tests"),
        )
        config.stash[junitxml.xml_key] = xml
        config.pluginmanager.register(xml)
        xml.pytest_sessionstart()
        session.testsfailed = 0
        session.shouldfail = session.shouldstop = False
        try:
            for at, item in enumerate(items):
                last = at + 1 == len(items) or self.batch.gone
                nextitem = SessionEnd(session) if last else items[at + 1]
                config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
                if last or session.shouldfail or session.shouldstop:
                    break
            if len(session._setupstate.stack) > 1:
                # Stopped early (-x, the client gone): what the batch set up ends with it.
                try:
                    session._setupstate.teardown_exact(SessionEnd(session))
                except Exception as e:
                    self.batch.send(say=f"error tearing down after the batch stopped: {e!r}")
        finally:
            xml.pytest_sessionfinish()
            config.pluginmanager.unregister(xml)
            del config.stash[junitxml.xml_key]
        if not items:
            return 5
        return 1 if session.testsfailed else 0


sys.exit(pytest.main(sys.argv[1:], plugins=[Session()]))
