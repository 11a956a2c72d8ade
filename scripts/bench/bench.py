"""The benchmarks of scripts/bench.sh: a cluster of real processes (serve, broker, workers,
runner: what `cluster-action local` starts, started one by one here so that each process's
memory and the service's request counters can be read) on this machine.

    python3 scripts/bench/bench.py BINARY OUT_JSON OUT_MD [--quick] [--only SCENARIO,...]

Prints a table, writes the figures to OUT_JSON and rewrites OUT_MD (BENCHMARKS.md; "-" for
none). --only runs just the named scenarios and updates just their figures in OUT_MD (dispatch, balance, latency, suite,
suite_short, suite_short_github, suite_heavy, github_latency, layer, memory, idle).
Standard library only.
"""
import hashlib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

# The stream flags `cluster-action local` gives its workers, asked from the binary itself
# (`selftest local-flags`, built from the constants in src/cli/common.rs) in main().
LOCAL_FLAGS = []

# A latency model closer to GitHub's artifact service than a constant (an assumption, not a
# measurement of github.com): a lognormal delay with a median of 150 ms (95th percentile about
# 340 ms) and 1 % of requests taking 2 s, seeded so runs see the same delays.
GITHUB_LATENCY = ["--latency-ms", "150", "--latency-sigma", "0.5", "--latency-tail-ms", "2000",
                  "--latency-tail-rate", "0.01", "--seed", "20261201"]


def rss_mib(pid, field="VmHWM"):
    """Peak (VmHWM) or current (VmRSS) resident memory of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class Cluster:
    """serve + broker + N workers, as separate processes; `run` submits a manifest."""

    def __init__(self, binary, workdir, workers=4, slots=2, latency_ms=0, flags=None,
                 broker=True, serve_args=None, log=None, tools=None):
        self.bin, self.dir = binary, Path(workdir)
        self.log = log
        # A directory put first on every process's PATH (the Python with pytest, for suites).
        self.tools = tools
        self.flags = list(LOCAL_FLAGS if flags is None else flags)
        self.procs = []
        serve_args = serve_args if serve_args is not None else ["--latency-ms", str(latency_ms)]
        # Its blobs go under the scenario's directory, removed with it even when serve is killed.
        blobs = ["--data-dir", str(self.dir / "serve-data")]
        self.serve = self._spawn("serve", [binary, "serve"] + blobs + serve_args,
                                 env=os.environ, stdout=subprocess.PIPE)
        first = self.serve.stdout.readline().decode().strip()
        if not first.startswith("ACTIONS_RESULTS_URL="):
            raise RuntimeError(f"serve printed {first!r}")
        self.url = first.split("=", 1)[1]
        self.broker = None
        if broker:
            self.broker = self._spawn("broker", [binary, "broker", "--idle-timeout", "1h"] + self.flags,
                                      env=self.env("broker"))
        self.workers = [self.add_worker(i, slots) for i in range(workers)]

    def env(self, job):
        token = subprocess.check_output([self.bin, "token", "--run", "bench", "--job", job], text=True).strip()
        env = dict(os.environ, ACTIONS_RESULTS_URL=self.url, ACTIONS_RUNTIME_TOKEN=token)
        if self.log:
            env["RUST_LOG"] = self.log
        if self.tools:
            env["PATH"] = f"{self.tools}:{env.get('PATH', '')}"
        return env

    def events(self, message):
        """The fields of every `message` event logged at info level, from all process logs."""
        found = []
        for log in sorted(self.dir.glob("*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if f" {message} " in line + " ":
                    found.append({k: v for k, v in re.findall(r"(\w+)=(\S+)", line)})
        return found

    def _spawn(self, name, argv, env, stdout=subprocess.DEVNULL):
        log = open(self.dir / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=log)
        self.procs.append(proc)
        return proc

    def add_worker(self, i, slots):
        cache = self.dir / f"worker-{i}"
        return self._spawn(f"worker-{i}", [self.bin, "worker", "--slots", str(slots), "--name", f"worker-{i}",
                                           "--cache-dir", str(cache / "cache"), "--work-dir", str(cache / "work")]
                           + self.flags, env=self.env(f"worker-{i}"))

    def stats(self):
        with urllib.request.urlopen(self.url + "_stats") as r:
            return json.load(r)

    def run(self, manifest, extra=(), sample=(), suite=(), cwd=None):
        """Runs `run MANIFEST` (or, with no manifest, `run ... SUITE`: a suite flag and its
        arguments, which go last) in `cwd`; returns (exit code, wall seconds, report, peak MiB
        per sampled pid)."""
        report = self.dir / "report.json"
        argv = [self.bin, "run"] + ([str(manifest)] if manifest else []) + ["--report-json", str(report)] \
            + list(extra) + self.flags
        if self.broker is None:
            # The runner's own slots would change what each scenario's workers measure.
            argv += ["--embed-broker", "--slots", "0"]
        argv += list(suite)
        start = time.monotonic()
        proc = subprocess.Popen(argv, env=self.env("runner"), stdout=subprocess.DEVNULL, cwd=cwd,
                                stderr=open(self.dir / "runner.log", "ab"))
        peaks = {}
        while proc.poll() is None:
            for name, pid in list(sample) + [("runner", proc.pid)]:
                value = rss_mib(pid)
                if value is not None:
                    peaks[name] = max(peaks.get(name, 0), value)
            time.sleep(0.05)
        wall = time.monotonic() - start
        data = json.loads(report.read_text()) if report.exists() else None
        return proc.returncode, wall, data, peaks

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()


@contextmanager
def cluster(binary, **kw):
    with tempfile.TemporaryDirectory(prefix="ca-bench-") as d:
        c = Cluster(binary, d, **kw)
        try:
            yield c
        finally:
            c.close()


def manifest(path, jobs, layers=None):
    """Writes a manifest: jobs are dicts with name, run and optional estimate/layers."""
    lines = []
    if layers:
        lines.append("layers:")
        for name, paths in layers.items():
            lines += [f"  {name}:", f"    paths: [{', '.join(paths)}]"]
    lines.append("jobs:")
    for job in jobs:
        lines.append(f"  - name: {job['name']}")
        lines.append(f"    run: {json.dumps(job['run'])}")
        if "estimate" in job:
            lines.append(f"    estimate: {job['estimate']}ms")
        if "layers" in job:
            lines.append(f"    layers: [{', '.join(job['layers'])}]")
    Path(path).write_text("\n".join(lines) + "\n")
    return path


def delta(before, after, key):
    return after[key] - before[key]


def dispatch(binary, n, tmp, results):
    path = manifest(tmp / "dispatch.yml", [{"name": f"j{i}", "run": "true"} for i in range(n)])
    for latency, key in [(0, "dispatch_jobs_per_s"), (100, "dispatch_jobs_per_s_latency100")]:
        with cluster(binary, latency_ms=latency) as c:
            before = c.stats()
            code, wall, report, _ = c.run(path, ["--stop-cluster"])
            after = c.stats()
            assert code == 0 and report["summary"]["passed"] == n, f"dispatch run failed ({code})"
            results[key] = round(n / wall, 1)
            if latency == 0:
                results["twirp_calls_per_job"] = round(delta(before, after, "twirp_total") / n, 2)
                results["blob_requests_per_job"] = round(delta(before, after, "blob_total") / n, 2)
    start = time.monotonic()
    subprocess.run(["xargs", "-P", "8", "-n", "1", "sh", "-c", "true"], input="x\n" * n, text=True, check=True,
                   stdout=subprocess.DEVNULL)
    results["xargs_jobs_per_s"] = round(n / (time.monotonic() - start), 1)


def lognormal_durations(n, total_s, seed=20261122):
    rng = random.Random(seed)
    raw = [rng.lognormvariate(0.0, 1.0) for _ in range(n)]
    scale = total_s / sum(raw)
    return [max(0.01, d * scale) for d in raw]


def makespan_of(shards):
    return max(sum(s) for s in shards)


def balance(binary, n, total_s, tmp, results):
    durations = lognormal_durations(n, total_s)
    measured = None
    for estimates, key in [(False, "balance_ratio_no_estimates"), (True, "balance_ratio_estimates")]:
        jobs = []
        for i, d in enumerate(durations):
            job = {"name": f"b{i:03}", "run": f"sleep {d:.3f}"}
            if estimates:
                job["estimate"] = int(d * 1000)
            jobs.append(job)
        path = manifest(tmp / f"balance-{estimates}.yml", jobs)
        with cluster(binary) as c:
            code, wall, report, _ = c.run(path, ["--stop-cluster"])
        assert code == 0, f"balance run failed ({code})"
        took = {j["name"]: j["duration_ms"] / 1000 for j in report["jobs"]}
        work = [took[f"b{i:03}"] for i in range(n)]
        lb = max(sum(work) / 8, max(work))
        results[key] = round(wall / lb, 3)
        if not estimates:
            measured = work
            results["_balance_lb_s"] = round(lb, 2)
            results["_balance_makespan_no_estimates_s"] = round(wall, 2)
        else:
            results["_balance_makespan_estimates_s"] = round(wall, 2)
    lb = max(sum(measured) / 8, max(measured))
    rr = [[d for i, d in enumerate(measured) if i % 8 == k] for k in range(8)]
    hashed = [[] for _ in range(8)]
    for i, d in enumerate(measured):
        h = int.from_bytes(hashlib.sha256(f"b{i:03}".encode()).digest()[:8], "big")
        hashed[h % 8].append(d)
    results["balance_ratio_static_count"] = round(makespan_of(rr) / lb, 3)
    results["balance_ratio_static_hash"] = round(makespan_of(hashed) / lb, 3)


def pytest_tools():
    """The directories of CLUSTER_TEST_TOOLS, put first on PATH for the suite scenario: there
    `python` has pytest (scripts/bench.sh installs it and sets the variable)."""
    tools = os.environ.get("CLUSTER_TEST_TOOLS", "")
    python = shutil.which("python", path=tools) if tools else None
    ok = python is not None and \
        subprocess.run([python, "-m", "pytest", "--version"], capture_output=True).returncode == 0
    if not ok:
        sys.exit(f"bench.py: suite needs python with pytest in CLUSTER_TEST_TOOLS ({tools or 'unset'}); "
                 "run the benchmarks with scripts/bench.sh, which installs it")
    return tools


def pytest_suite(root, durations, per_file=20):
    """Writes a real pytest suite under `root`: test i sleeps durations[i] seconds, 20 tests a
    file in tests/; returns the node ids in collection order."""
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    ids = []
    for f in range(0, len(durations), per_file):
        name = f"tests/test_m{f // per_file:02}.py"
        body = ["import time", ""]
        for i in range(f, min(f + per_file, len(durations))):
            body += ["", f"def test_{i:03}():", f"    time.sleep({durations[i]:.3f})", ""]
            ids.append(f"{name}::test_{i:03}")
        (root / name).write_text("\n".join(body))
    return ids


def suite_scenario(binary, n, total_s, tmp, results, name="suite", flags=None):
    """A pytest suite of n tests with lognormal durations (seed 20261201) scaled to total_s
    seconds of sleep, on 4 workers x 2 slots: without history, with the history the first run
    wrote, and as nextest-style static `count:k/8` shards run as 8 jobs. 480 s of tests is a
    minute on 8 slots: a suite worth spreading; a run's fixed cost (listing, the first
    dispatch, the last results, about 2 s here) is reported apart as `suite_overhead_*_s`.
    `name` prefixes its figures (`suite_short`: the same at 96 s, where those costs weigh most;
    `suite_short_github`: that one with the processes' `flags` at GitHub's defaults, `--poll-max
    1s` and the rest, instead of `local`'s, as a cluster of a workflow's jobs polls)."""
    tools = pytest_tools()
    root = tmp / name
    durations = lognormal_durations(n, total_s, seed=20261201)
    ids = pytest_suite(root, durations)
    timings = tmp / f"{name}-timings.json"
    slots = 8
    measured = None
    for key, extra in [("no_history", ["--write-timings", str(timings)]), ("history", ["--timings", str(timings)])]:
        with cluster(binary, tools=tools, flags=flags) as c:
            # The runner is told the cluster's size, as a workflow tells it the matrix's.
            code, wall, report, _ = c.run(None, ["--stop-cluster", "--expect-workers", "4"] + extra,
                                          suite=["--pytest", "tests"], cwd=root)
            # What the run asked of the artifact service: its polls, uploads and downloads.
            results[f"_{name}_blob_requests_{key}"] = c.stats()["blob_total"]
        assert code == 0, f"{name} run ({key}) failed ({code})"
        took = {t["id"]: t["duration_ms"] / 1000 for t in report["tests"]}
        assert sorted(took) == sorted(ids) and all(t["status"] == "passed" for t in report["tests"]), \
            f"{name} run ({key}): not every test passed once"
        lb = max(sum(took.values()) / slots, max(took.values()))
        results[f"{name}_ratio_{key}"] = round(wall / lb, 3)
        results[f"_{name}_makespan_{key}_s"] = round(wall, 2)
        # What the run adds to its tests' own time: listing, start, batches' framework starts, end.
        results[f"_{name}_overhead_{key}_s"] = round(wall - lb, 2)
        if measured is None:
            measured = [took[i] for i in ids]
            results[f"_{name}_lb_s"] = round(lb, 2)
            results[f"_{name}_longest_test_s"] = round(max(measured), 2)
            results[f"_{name}_work_s"] = round(sum(measured), 1)
    # nextest's `--partition count:k/N`: test i (in listing order) goes to shard i mod N.
    shards = [[i for j, i in enumerate(ids) if j % slots == k] for k in range(slots)]
    jobs = [{"name": f"count-{k + 1}-of-{slots}", "layers": ["suite"],
             "run": "python -m pytest -q " + " ".join(shard)} for k, shard in enumerate(shards)]
    path = manifest(root / "static.yml", jobs, layers={"suite": ["tests", "pytest.ini"]})
    with cluster(binary, tools=tools, flags=flags) as c:
        code, wall, report, _ = c.run(path, ["--stop-cluster"])
    assert code == 0 and report["summary"]["passed"] == slots, f"static shards failed ({code})"
    lb = max(sum(measured) / slots, max(measured))
    results[f"{name}_ratio_static_count"] = round(wall / lb, 3)
    results[f"_{name}_makespan_static_count_s"] = round(wall, 2)
    sums = [sum(measured[j] for j in range(k, n, slots)) for k in range(slots)]
    results[f"_{name}_ratio_static_count_simulated"] = round(max(sums) / lb, 3)


def heavy_suite(root, n, total_s, slots, files=16, seed=20261206):
    """Writes a heavy-tailed pytest suite under `root`: n tests in `files` files of 4 to 24
    tests each (seeded), one test (at a seeded position) lasting a quarter of a slot's share
    (total_s / slots / 4), the others lognormal (sigma 1) making up the rest of total_s; every
    file sleeps 0.1 to 0.5 s when imported (its collection cost). Returns the node ids in
    collection order and the long test's id."""
    rng = random.Random(seed)
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    weights = [rng.uniform(4, 24) for _ in range(files)]
    counts = [max(1, round(w * n / sum(weights))) for w in weights]
    counts[-1] += n - sum(counts)
    long_s = total_s / slots / 4
    raw = [rng.lognormvariate(0.0, 1.0) for _ in range(n - 1)]
    rest = [r * (total_s - long_s) / sum(raw) for r in raw]
    long_at = rng.randrange(n)
    durations = rest[:long_at] + [long_s] + rest[long_at:]
    ids, i = [], 0
    for f, count in enumerate(counts):
        name = f"tests/test_h{f:02}.py"
        body = ["import time", "", f"time.sleep({rng.uniform(0.1, 0.5):.3f})  # the file's collection cost", ""]
        for _ in range(count):
            body += ["", f"def test_{i:03}():", f"    time.sleep({durations[i]:.3f})", ""]
            ids.append(f"{name}::test_{i:03}")
            i += 1
        (root / name).write_text("\n".join(body))
    return ids, ids[long_at]


def suite_heavy(binary, n, total_s, tmp, results):
    """A heavy-tailed pytest suite (heavy_suite) on `cluster-action local --workers 2 --slots 2`
    without history and with the history that run wrote, beside `pytest -n 4` (pytest-xdist,
    load scheduling) on the same 4 slots of this machine. Each ratio is a wall time over
    xdist's, the processes' whole lives (listing, start-up and reporting included)."""
    tools = pytest_tools()
    root = tmp / "suite_heavy"
    workers, per_worker = 2, 2
    slots = workers * per_worker
    ids, long_id = heavy_suite(root, n, total_s, slots)
    env = dict(os.environ, PATH=f"{tools}:{os.environ.get('PATH', '')}")
    start = time.monotonic()
    xdist = subprocess.run(["python", "-m", "pytest", "-q", "-n", str(slots), "tests"], cwd=root, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    xdist_s = time.monotonic() - start
    assert xdist.returncode == 0, f"pytest -n {slots} failed:\n{xdist.stdout[-2000:]}"
    results["_suite_heavy_xdist_s"] = round(xdist_s, 2)
    timings = tmp / "suite-heavy-timings.json"
    after = tmp / "suite-heavy-timings-after.json"
    report = tmp / "suite-heavy-report.json"
    for key, extra in [("first", ["--write-timings", str(timings)]),
                       ("history", ["--timings", str(timings), "--write-timings", str(after)])]:
        argv = [binary, "local", "--workers", str(workers), "--slots", str(per_worker),
                "--report-json", str(report)] + extra + ["--pytest", "tests"]
        start = time.monotonic()
        code = subprocess.run(argv, cwd=root, env=env, stdout=subprocess.DEVNULL,
                              stderr=open(tmp / f"suite-heavy-{key}.log", "wb")).returncode
        wall = time.monotonic() - start
        assert code == 0, f"suite_heavy run ({key}) failed ({code}); see its log"
        tests = json.loads(report.read_text())["tests"]
        took = {t["id"]: t["duration_ms"] / 1000 for t in tests}
        assert sorted(took) == sorted(ids) and all(t["status"] == "passed" for t in tests), \
            f"suite_heavy run ({key}): not every test passed once"
        results[f"suite_heavy_ratio_xdist_{key}"] = round(wall / xdist_s, 3)
        results[f"_suite_heavy_{key}_s"] = round(wall, 2)
        if key == "first":
            lb = max(sum(took.values()) / slots, max(took.values()))
            results["_suite_heavy_work_s"] = round(sum(took.values()), 1)
            results["_suite_heavy_longest_test_s"] = round(took[long_id], 2)
            results["_suite_heavy_long_test_position"] = ids.index(long_id)
            results["_suite_heavy_lb_s"] = round(lb, 2)
    results["_suite_heavy_xdist_ratio_lb"] = round(xdist_s / results["_suite_heavy_lb_s"], 3)
    # The batches each run measured (those that ran all their tests; the history keeps them):
    # how many, and what one cost beyond its tests on average.
    first = [s for b in json.loads(timings.read_text()).get("batches", []) for s in b["samples"]]
    both = [s for b in json.loads(after.read_text()).get("batches", []) for s in b["samples"]]
    for key, samples in [("first", first), ("history", both[len(first):])]:
        results[f"_suite_heavy_batches_{key}"] = len(samples)
        if samples:
            results[f"_suite_heavy_batch_overhead_{key}_s"] = \
                round(sum(s["overhead_ms"] for s in samples) / len(samples) / 1000, 2)


def latency_hiding(binary, n, tmp, results):
    path = manifest(tmp / "latency.yml", [{"name": f"l{i}", "run": "sleep 0.5"} for i in range(n)])
    with cluster(binary, latency_ms=200) as c:
        code, wall, report, _ = c.run(path, ["--stop-cluster"])
    assert code == 0, f"latency run failed ({code})"
    busy = sum(j["duration_ms"] for j in report["jobs"]) / 1000
    results["utilisation_latency200"] = round(busy / (8 * wall), 3)


def github_latency(binary, n, tmp, results):
    """Slot utilisation for n jobs of 0.2-5 s on 4 workers x 2 slots under GITHUB_LATENCY."""
    rng = random.Random(20261201)
    seconds = [round(rng.uniform(0.2, 5.0), 1) for _ in range(n)]
    path = manifest(tmp / "github-latency.yml",
                    [{"name": f"g{i}", "run": f"sleep {s}"} for i, s in enumerate(seconds)])
    with cluster(binary, serve_args=GITHUB_LATENCY) as c:
        code, wall, report, _ = c.run(path, ["--stop-cluster"])
    assert code == 0, f"github-latency run failed ({code})"
    busy = sum(j["duration_ms"] for j in report["jobs"]) / 1000
    results["utilisation_github_latency"] = round(busy / (8 * wall), 3)
    results["_github_latency_work_s"] = round(sum(seconds), 1)
    results["_github_latency_lower_bound_s"] = round(max(sum(seconds) / 8, max(seconds)), 1)
    results["_github_latency_wall_s"] = round(wall, 1)


def layer_distribution(binary, mib, tmp, results):
    data = tmp / "layer"
    data.mkdir()
    big = data / "big.bin"
    with open(big, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1024 * 1024))
    start = time.monotonic()
    shutil.copyfile(big, tmp / "big.copy")
    os.sync()
    cp_s = time.monotonic() - start
    (tmp / "big.copy").unlink()
    jobs = [{"name": f"u{i}", "run": f"test $(stat -c %s big.bin) -eq {mib * 1024 * 1024}", "layers": ["big"]}
            for i in range(16)]
    path = manifest(data / "layer.yml", jobs, layers={"big": ["big.bin"]})
    # Info-level timings of the layer path: packed, uploaded (runner), fetched, materialized.
    with cluster(binary, workers=4, slots=1, log="warn,cluster_action::layer=info") as c:
        before = c.stats()
        code, wall, report, _ = c.run(path, ["--stop-cluster"])
        after = c.stats()
        packed, uploaded = c.events("layer packed"), c.events("layer uploaded")
        fetched, materialized = c.events("layer fetched"), c.events("job directory materialized")
    assert code == 0, f"layer run failed ({code})"
    size = mib * 1024 * 1024
    workers = {j["worker"] for j in report["jobs"]}
    results["layer_upload_ratio"] = round(delta(before, after, "blob_bytes_in") / size, 3)
    results["layer_downloads_per_worker"] = round(delta(before, after, "blob_bytes_out") / size / len(workers), 2)
    results["layer_time_vs_cp"] = round(wall / cp_s, 1)
    results["_layer_mib"] = mib
    results["_layer_run_s"] = round(wall, 2)
    results["_layer_cp_s"] = round(cp_s, 3)
    results["_layer_workers_used"] = len(workers)

    def seconds(events, field, combine=max):
        values = [int(e[field]) / 1000 for e in events if field in e]
        return round(combine(values), 2) if values else None
    # Where the time goes: the runner packs, then uploads; each worker then downloads and
    # extracts at once (extract_ms is the extractor's own time, not its waiting for bytes),
    # then copies the tree into each job's private directory.
    results["_layer_pack_s"] = seconds(packed, "ms")
    results["_layer_upload_s"] = seconds(uploaded, "ms")
    results["_layer_download_s_slowest_worker"] = seconds(fetched, "download_ms")
    results["_layer_extract_busy_s_slowest_worker"] = seconds(fetched, "extract_ms")
    results["_layer_fetch_s_slowest_worker"] = seconds(fetched, "total_ms")
    results["_layer_materialize_s_per_job"] = seconds(materialized, "ms", lambda v: sum(v) / len(v))
    results["_layer_materialize_s_all_jobs"] = seconds(materialized, "ms", sum)
    # The same jobs without the layer: what starting, dispatching and reporting cost anyway.
    bare = manifest(data / "bare.yml", [{"name": j["name"], "run": "true"} for j in jobs])
    with cluster(binary, workers=4, slots=1) as c:
        code, bare_wall, _, _ = c.run(bare, ["--stop-cluster"])
    assert code == 0, f"layer baseline run failed ({code})"
    results["_layer_run_without_layer_s"] = round(bare_wall, 2)


def memory(binary, n, tmp, results):
    path = manifest(tmp / "memory.yml", [{"name": f"m{i}", "run": "true"} for i in range(n)])
    with cluster(binary, workers=0) as c:
        code, wall, report, peaks = c.run(path, ["--worker-wait", "5s"], sample=[("broker", c.broker.pid)])
        assert code == 3, f"the runner without workers should exit 3, got {code}"
        results["broker_rss_mib_100k" if n == 100_000 else f"broker_rss_mib_{n}"] = round(peaks["broker"], 1)
        results["runner_rss_mib_100k" if n == 100_000 else f"runner_rss_mib_{n}"] = round(peaks["runner"], 1)
    with cluster(binary, workers=1) as c:
        time.sleep(5)  # a benchmark settling period, not synchronisation
        results["worker_idle_rss_mib"] = round(rss_mib(c.workers[0].pid), 1)


def idle(binary, settle, seconds, results):
    """Requests of a broker and 4 workers waiting for work, counted after `settle` seconds of
    idle (the streams slow their polls after a minute without a message)."""
    for flags, suffix in [([], ""), (LOCAL_FLAGS, "_local_timings")]:
        with cluster(binary, workers=4, flags=flags) as c:
            time.sleep(settle)  # the idle time before counting is the scenario
            before = c.stats()
            time.sleep(seconds)
            after = c.stats()
        per_min = 60 / seconds
        results["idle_twirp_calls_per_min" + suffix] = round(delta(before, after, "twirp_total") * per_min, 1)
        results["idle_blob_requests_per_min" + suffix] = round(delta(before, after, "blob_total") * per_min, 1)


def main():
    global LOCAL_FLAGS
    binary, out_json, out_md = sys.argv[1:4]
    binary = os.path.abspath(binary)  # the suite scenario's runner runs in another directory
    rest = sys.argv[4:]
    quick = "--quick" in rest
    only = set(rest[rest.index("--only") + 1].split(",")) if "--only" in rest else None
    LOCAL_FLAGS = subprocess.check_output([binary, "selftest", "local-flags"], text=True).split()
    size = dict(dispatch=200, balance=(60, 20), latency=40, github_latency=40, layer=20, memory=10_000,
                idle=(3, 10), suite=(60, 15), suite_short=(60, 5), suite_heavy=(60, 16)) if quick else \
        dict(dispatch=2000, balance=(300, 120), latency=200, github_latency=300, layer=200, memory=100_000,
             idle=(65, 60), suite=(400, 480), suite_short=(400, 96), suite_heavy=(200, 120))
    results = {}
    timings = {}
    with tempfile.TemporaryDirectory(prefix="ca-bench-") as d:
        tmp = Path(d)
        scenarios = [
            ("dispatch", lambda: dispatch(binary, size["dispatch"], tmp, results)),
            ("balance", lambda: balance(binary, *size["balance"], tmp, results)),
            ("latency", lambda: latency_hiding(binary, size["latency"], tmp, results)),
            ("suite", lambda: suite_scenario(binary, *size["suite"], tmp, results)),
            ("suite_short", lambda: suite_scenario(binary, *size["suite_short"], tmp, results, "suite_short")),
            ("suite_short_github", lambda: suite_scenario(binary, *size["suite_short"], tmp, results,
                                                          "suite_short_github", flags=[])),
            ("suite_heavy", lambda: suite_heavy(binary, *size["suite_heavy"], tmp, results)),
            ("github_latency", lambda: github_latency(binary, size["github_latency"], tmp, results)),
            ("layer", lambda: layer_distribution(binary, size["layer"], tmp, results)),
            ("memory", lambda: memory(binary, size["memory"], tmp, results)),
            ("idle", lambda: idle(binary, *size["idle"], results)),
        ]
        unknown = (only or set()) - set(dict(scenarios))
        if unknown:
            sys.exit(f"bench.py: --only {','.join(sorted(unknown))}: no such scenario (one of {', '.join(dict(scenarios))})")
        for name, fn in scenarios:
            if only is not None and name not in only:
                continue
            start = time.monotonic()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            fn()
            timings[name] = round(time.monotonic() - start, 1)
    figures = {k: v for k, v in results.items() if not k.startswith("_")}
    details = {k[1:]: v for k, v in results.items() if k.startswith("_")}
    machine = {
        "cpus": os.cpu_count(),
        "cpu": next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                     if l.startswith("model name")), platform.processor()),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    Path(out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(out_json).write_text(json.dumps({**figures, "details": details, "machine": machine,
                                          "quick": quick, "seconds_per_scenario": timings}, indent=2) + "\n")
    width = max(len(k) for k in figures)
    for k, v in figures.items():
        print(f"{k:<{width}}  {v}")
    if out_md != "-":
        if only is None:
            write_markdown(Path(out_md), figures, details, machine, timings, quick)
        else:
            update_markdown(Path(out_md), figures, details, machine, timings)


BEGIN, END = "<!-- figures: written by scripts/bench.sh -->", "<!-- end of figures -->"


def write_markdown(path, figures, details, machine, timings, quick):
    """Rewrites the figures between the markers of BENCHMARKS.md, keeping the text around them."""
    command = "scripts/bench.sh" + (" --quick" if quick else "")
    lines = [BEGIN, "",
             f"Measured {machine['date']} with `{command}` on {machine['cpus']} CPUs ({machine['cpu']}), "
             f"{machine['memory_gib']} GiB, Linux {machine['kernel']}. Seconds per scenario: "
             + ", ".join(f"{k} {v}" for k, v in timings.items()) + ".", "",
             "| figure | value |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in figures.items()]
    lines += ["", "Details:", "", "| detail | value |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in details.items()]
    lines += ["", END]
    block = "\n".join(lines)
    old = path.read_text() if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        path.write_text(head + block + tail)
    else:
        path.write_text(old.rstrip("\n") + "\n\n" + block + "\n")

def update_markdown(path, figures, details, machine, timings):
    """Updates (or adds) the rows of one scenario's figures and details in BENCHMARKS.md's
    figures block, and says under the block's first line when and how they were measured."""
    text = path.read_text()
    head, rest = text.split(BEGIN, 1)
    block, tail = rest.split(END, 1)
    lines = block.split("\n")
    for rows, table_head in [(figures, "| figure | value |"), (details, "| detail | value |")]:
        for key, value in rows.items():
            row = f"| `{key}` | {value} |"
            found = [i for i, l in enumerate(lines) if l.startswith(f"| `{key}` |")]
            if found:
                lines[found[0]] = row
            else:
                end = lines.index(table_head) + 2
                while end < len(lines) and lines[end].startswith("| `"):
                    end += 1
                lines.insert(end, row)
    command = f"scripts/bench.sh --only {','.join(timings)}"
    for name, secs in timings.items():
        note = (f"`{name}` measured {machine['date']} with `{command}` "
                f"({secs} s) on {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB, "
                f"Linux {machine['kernel']}.")
        lines = [l for l in lines if not l.startswith(f"`{name}` measured ")]
        first = next(i for i, l in enumerate(lines) if l.startswith("Measured "))
        lines.insert(first + 1, note)
    path.write_text(head + BEGIN + "\n".join(lines) + END + tail)


if __name__ == "__main__":
    main()
