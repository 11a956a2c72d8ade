//! What the tests of one framework's suites (tests/suite_rspec.rs, tests/suite_minitest.rs)
//! share: a run refused with the words a user needs (Ruby or its framework missing), a second run that finds every test of the
//! first run's timing history under the same id, and a worker killed by a test it runs.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::local::{LocalRun, local};

/// Asserts that a `local` run was refused as bad input (exit 2) with each of `words` in its
/// standard error.
pub fn assert_refused(run: &LocalRun, words: &[&str]) {
    assert_eq!(run.code, 2, "{}", run.stderr);
    for word in words {
        assert!(
            run.stderr.contains(word),
            "{word:?} not in:\n{}",
            run.stderr
        );
    }
}

/// Asserts that `local` with `args` in `dir` is refused naming what is missing and how to
/// install it, without Ruby on PATH, and with a Ruby whose gems do not hold `gem`.
pub fn assert_refused_without_ruby_or_its_gem(dir: &Path, gem: &str, args: &[&str]) {
    let run = local(dir).env("PATH", "/nonexistent").args(args).run();
    assert_refused(&run, &["`ruby` is not installed", "ruby/setup-ruby"]);
    let no_gems = tempfile::tempdir().unwrap();
    let no_gems = no_gems.path().to_str().unwrap();
    let run = local(dir)
        .env("GEM_PATH", no_gems)
        .env("GEM_HOME", no_gems)
        .args(args)
        .run();
    let missing = format!("`{gem}` is not installed");
    let install = format!("`gem install {gem}`");
    assert_refused(&run, &[&missing, "cannot load it", &install]);
}

/// The durations the timing history file at `path` holds, by test id.
pub fn recorded_durations(path: &Path) -> BTreeMap<String, Vec<u64>> {
    let history: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    history["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let ms = t["durations_ms"].as_array().unwrap();
            let ms = ms.iter().map(|d| d.as_u64().unwrap()).collect();
            (t["id"].as_str().unwrap().to_owned(), ms)
        })
        .collect()
}

/// Runs `local` with `args` in `dir` once more, reading and writing the timing history
/// `timings` a first run wrote, in which `slow` took a second: asserts that the second run
/// found every test of the history by its id (each then has a duration of both runs).
pub fn assert_second_run_adds_to_the_history(
    dir: &Path,
    timings: &Path,
    slow: &str,
    args: &[&str],
) {
    let first = recorded_durations(timings);
    assert!(first[slow][0] >= 900, "{first:?}");
    let path = timings.to_str().unwrap();
    let again = local(dir)
        .args(&["--timings", path, "--write-timings", path])
        .args(args)
        .run();
    assert_eq!(again.code, 1, "a test fails again: {}", again.stderr);
    let second = recorded_durations(timings);
    assert_eq!(
        second.keys().collect::<Vec<_>>(),
        first.keys().collect::<Vec<_>>()
    );
    for (id, ms) in &second {
        assert_eq!(ms.len(), 2, "{id} measured in both runs: {second:?}");
    }
}

/// Runs `local` with `args` on two workers in `dir`, one of whose tests runs
/// [`ruby_killing_its_worker_once`] with `marker`: asserts that a worker was killed and that the
/// tests `ids`, all of the suite, still each passed once.
pub fn assert_a_killed_worker_loses_no_test(
    dir: &Path,
    marker: &Path,
    args: &[&str],
    ids: &[&str],
) {
    let run = local(dir)
        .workers(2)
        .args(&["--peer-timeout", "3s"])
        .args(args)
        .run();
    assert!(marker.exists(), "a worker was killed");
    let want: BTreeMap<String, String> = ids
        .iter()
        .map(|id| (id.to_string(), "passed".to_owned()))
        .collect();
    assert_eq!(run.statuses(), want, "{}", run.stderr);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// Ruby statements that, the first time they run (they make the directory `marker`), SIGKILL
/// the worker running them mid-batch (the first `cluster-action` among their process's
/// ancestors) and wait for the batch to be lost with it.
pub fn ruby_killing_its_worker_once(marker: &Path) -> String {
    format!(
        r#"if (Dir.mkdir({marker:?}) rescue nil)
  pid = Process.pid
  while pid > 1
    pid = File.read("/proc/#{{pid}}/stat").split(") ").last.split[1].to_i
    next unless File.read("/proc/#{{pid}}/comm").strip == "cluster-action"

    Process.kill(:KILL, pid)
    sleep 5
    break
  end
end
"#,
        marker = marker.display().to_string()
    )
}
