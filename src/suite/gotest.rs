//! go test: the runner builds each package's test binary once (`go test -c`) and lists its
//! tests with it (`-test.list .`), and builds `test2json` of the same toolchain; workers run the
//! binaries (no Go toolchain needed) under `test2json -t -p PKG BIN -test.v -test.run
//! '^(A|B)$'`, and its JSON events, which stream test by test, are the report: a batch killed
//! part-way still tells which tests finished.
//!
//! A result is the `pass`, `fail` or `skip` event of a top-level test (subtests count towards
//! their test), never a line of text read back: a test that prints `--- PASS: TestLater` (or
//! drives a nested `go test -v`) must not decide another test's result. From Go 1.20 the
//! binaries run with `-test.v=test2json`, which marks the testing package's own lines, so that
//! only those make events. Go 1.19's test2json reads the text alone, so printed lines can make
//! events; then a result counts only for a test that has started (its `run` event came
//! first), a test's worst result wins (a printed line never turns a failure into a pass), and
//! a binary that exited 0 failed none of its tests (its `fail` events are printed lines).
//!
//! The suite's `args` are `go` build flags (in the `-flag=value` form) and package patterns,
//! `./...` when it names none.
//! Each binary runs in its package's directory when the job directory has it (tests read
//! `testdata/` relative to it), else in the job directory.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::Path;

use serde::Deserialize;

use super::process::{Tool, output, run};
use super::report::{Reported, ReportedCase, seconds_to_ms};
use super::{
    Listing, Shipped, Suite, SuiteError, TestCase, TestStatus, here_document, shell_quote,
    ship_dest, ship_name,
};

/// The Go toolchain, needed on the runner only.
const GO: Tool = Tool {
    program: "go",
    install: "install Go (Debian/Ubuntu: `apt-get install golang-go`; in CI, actions/setup-go)",
};

/// The packages of a suite that names none: every package of the module, as `go test ./...`
/// (a bare `go list` would name only the package in the current directory).
const ALL_PACKAGES: &str = "./...";

/// The converter of test binaries' verbose output into JSON events, shipped beside them.
const TEST2JSON: &str = "test2json";

/// Makes a test binary panic when a test calls `os.Exit(0)`, as `go test` does (from Go 1.16):
/// a binary that exits 0 in the middle of a test must not pass it.
const PANIC_ON_EXIT0: &str = "-test.paniconexit0";

/// The line a batch writes before running a package's binary; the import path follows.
const PACKAGE_MARK: &str = "cluster-action package: ";

/// The line a batch writes when every binary has exited.
const END_MARK: &str = "cluster-action: batch finished";

/// Lists the packages the suite's patterns name and their tests, building each test binary.
pub(super) fn list(suite: &Suite, dir: &Path, work: &Path) -> Result<Listing, SuiteError> {
    let go = GO.find(suite)?;
    let (flags, mut patterns): (Vec<String>, Vec<String>) =
        suite.args.iter().cloned().partition(|a| a.starts_with('-'));
    if patterns.is_empty() {
        patterns.push(ALL_PACKAGES.to_owned());
    }
    let mut args = vec![
        "list".to_owned(),
        "-f".into(),
        "{{.ImportPath}}\t{{.Dir}}".into(),
    ];
    args.extend(flags.iter().cloned());
    args.extend(patterns);
    let packages = String::from_utf8_lossy(&output(suite, dir, &go, &args)?).into_owned();
    let root = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut listing = Listing::new(suite, Vec::new());
    for line in packages.lines().filter(|l| !l.trim().is_empty()) {
        let (package, package_dir) = line.split_once('\t').unwrap_or((line, ""));
        let binary = format!("{}.test", ship_name(package));
        let source = work.join(&binary);
        let tests = package_tests(suite, dir, &go, &flags, (package, package_dir), &source)?;
        if tests.is_empty() {
            continue;
        }
        listing.ship.push(Shipped {
            source,
            dest: ship_dest(suite, &binary),
        });
        let relative = Path::new(package_dir)
            .strip_prefix(&root)
            .map_or_else(|_| ".".to_owned(), |p| p.display().to_string());
        listing.packages.push((package.to_owned(), relative));
        listing.tests.extend(tests);
    }
    if !listing.tests.is_empty() {
        listing.ship.push(test2json(suite, work, &go)?);
        let version = output(suite, dir, &go, &["env".to_owned(), "GOVERSION".into()])?;
        listing.run_args = vec![verbose_flag(&String::from_utf8_lossy(&version)).to_owned()];
    }
    Ok(listing)
}

/// Builds the test binary of `package` (import path; its source directory `package_dir`, empty
/// when `go list` did not say) to `binary` with `go test -c` and the suite's build `flags`,
/// and lists its tests by running it with `-test.list .` in the package's directory, as `go
/// test -list .` does (which would build and link it a second time). A package without test
/// files has no binary (go writes none) and no tests.
fn package_tests(
    suite: &Suite,
    dir: &Path,
    go: &Path,
    flags: &[String],
    (package, package_dir): (&str, &str),
    binary: &Path,
) -> Result<Vec<TestCase>, SuiteError> {
    match std::fs::remove_file(binary) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
            let path = binary.to_path_buf();
            return Err(SuiteError::Io { path, source });
        }
        _ => {}
    }
    let mut args = vec!["test".to_owned(), "-c".into(), "-o".into()];
    args.push(binary.display().to_string());
    args.extend(flags.iter().cloned());
    args.push(package.to_owned());
    output(suite, dir, go, &args)?;
    if !binary.exists() {
        return Ok(Vec::new());
    }
    let run_dir = match package_dir {
        "" => dir,
        package_dir => Path::new(package_dir),
    };
    let list = ["-test.list".to_owned(), ".".into()];
    let names = String::from_utf8_lossy(&output(suite, run_dir, binary, &list)?).into_owned();
    Ok(names
        .lines()
        .filter(|name| is_test_name(name))
        .map(|name| TestCase {
            id: format!("{package} {name}"),
            group: package.to_owned(),
            name: name.to_owned(),
            file: None,
        })
        .collect())
}

/// Builds the toolchain's `test2json` into `work`, to ship beside the test binaries: workers
/// need no Go toolchain. It builds outside the user's module and without their `GOFLAGS` and
/// workspace, which are for their packages (`-mod=vendor` would refuse a command of Go's own).
fn test2json(suite: &Suite, work: &Path, go: &Path) -> Result<Shipped, SuiteError> {
    let source = work.join(TEST2JSON);
    let args = [
        "build".to_owned(),
        "-o".into(),
        source.display().to_string(),
        "cmd/test2json".into(),
    ];
    let env = [("GOFLAGS", OsStr::new("")), ("GOWORK", OsStr::new("off"))];
    run(suite, work, go, &args, &env)?;
    Ok(Shipped {
        source,
        dest: ship_dest(suite, TEST2JSON),
    })
}

/// The verbose flag the test binaries of the toolchain `go env GOVERSION` names take:
/// `-test.v=test2json` from Go 1.20 (the testing package marks its own lines for test2json),
/// plain `-test.v` before, and for a version it cannot read.
fn verbose_flag(version: &str) -> &'static str {
    let minor = version
        .split("go1.")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse::<u32>().ok());
    match minor {
        Some(minor) if minor >= 20 => "-test.v=test2json",
        _ => "-test.v",
    }
}

/// A name `-test.run` selects: a test, example or fuzz test (benchmarks do not run), a Go
/// identifier, whose letters and digits may be any Unicode ones (`TestÄpfel`): a line of `go
/// test -list` that is not one (`ok  pkg  0.1s`) has a space.
fn is_test_name(name: &str) -> bool {
    ["Test", "Example", "Fuzz"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// The longest `-test.run` pattern one run of a test binary gets: a package with more of the
/// batch's tests runs its binary once per pattern of this size (the kernel refuses a longer
/// argument than 128 KiB, and a long alternation is slow to match).
const LONGEST_PATTERN: usize = 16 * 1024;

/// Runs each package's binary on its tests of the batch under test2json, every event to the
/// report file: once per pattern of at most [`LONGEST_PATTERN`] bytes, the patterns read from a
/// here-document.
pub(super) fn batch_command(listing: &Listing, batch: &[TestCase]) -> String {
    let report = super::REPORT_ENV;
    let verbose: Vec<String> = listing.run_args.iter().map(|a| shell_quote(a)).collect();
    let mut command = format!(
        "d=\"$PWD\"/{}\n: > \"${report}\"\n",
        shell_quote(&ship_dest(&listing.suite, "").display().to_string())
    );
    for (package, package_dir) in &listing.packages {
        let names = batch
            .iter()
            .filter(|case| case.group == *package)
            .map(|case| case.name.as_str());
        let patterns = patterns(names);
        if patterns.is_empty() {
            continue;
        }
        let binary = format!("{}.test", ship_name(package));
        let (redirect, body) = here_document(patterns.iter().map(String::as_str));
        command.push_str(&format!(
            "while IFS= read -r run <&3; do\n\
             echo {} >> \"${report}\"\n\
             (cd {} 2>/dev/null; exec \"$d/{TEST2JSON}\" -t -p {} \"$d/{binary}\" {PANIC_ON_EXIT0} {} -test.run \"$run\" 3<&-) \
             >> \"${report}\" 2>&1\n\
             done 3{redirect}\n{body}",
            shell_quote(&format!("{PACKAGE_MARK}{package}")),
            shell_quote(package_dir),
            shell_quote(package),
            verbose.join(" "),
        ));
    }
    command.push_str(&format!(
        "echo {} >> \"${report}\"\n",
        shell_quote(END_MARK)
    ));
    command
}

/// `-test.run` patterns matching exactly `names` (go identifiers: nothing to escape), each
/// at most [`LONGEST_PATTERN`] bytes unless one name alone is longer.
fn patterns<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut patterns = Vec::new();
    let mut alternatives = String::new();
    for name in names {
        if !alternatives.is_empty() && alternatives.len() + name.len() + 5 > LONGEST_PATTERN {
            patterns.push(format!("^({alternatives})$"));
            alternatives.clear();
        }
        if !alternatives.is_empty() {
            alternatives.push('|');
        }
        alternatives.push_str(name);
    }
    if !alternatives.is_empty() {
        patterns.push(format!("^({alternatives})$"));
    }
    patterns
}

/// One event of test2json's output (`go doc cmd/test2json`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Event {
    /// `run`, `pause`, `cont`, `pass`, `fail`, `skip`, `output`, …
    action: String,
    /// The package (`-p`).
    #[serde(default)]
    package: String,
    /// The (sub)test; empty for the package's own events.
    #[serde(default)]
    test: String,
    /// Seconds, on a result.
    #[serde(default)]
    elapsed: f64,
    /// Text the test or the testing package printed.
    #[serde(default)]
    output: String,
}

/// What the events of one package's binary said.
#[derive(Debug, Default)]
struct PackageRun {
    /// Top-level tests that started (a `run` event).
    started: HashSet<String>,
    /// Each started top-level test's results, each with its run time in seconds.
    results: HashMap<String, Vec<(TestStatus, f64)>>,
    /// Each top-level test's output, its subtests' included.
    outputs: HashMap<String, String>,
    /// Whether the testing package printed its final `PASS` or `FAIL`.
    verdict: bool,
    /// How the binary exited, once it has: test2json's event for the package as a whole,
    /// `pass` for exit status 0.
    exited: Option<TestStatus>,
}

impl PackageRun {
    /// Takes in one event of this package.
    fn record(&mut self, event: Event) {
        let status = match event.action.as_str() {
            "pass" => Some(TestStatus::Passed),
            "fail" => Some(TestStatus::Failed),
            "skip" => Some(TestStatus::Skipped),
            _ => None,
        };
        if event.test.is_empty() {
            self.exited = self.exited.or(status);
            let line = event.output.trim_start_matches('\u{16}').trim_end();
            self.verdict |= event.action == "output" && (line == "PASS" || line == "FAIL");
            return;
        }
        let top = top_level(&event.test);
        let is_top = top == event.test;
        match (event.action.as_str(), status) {
            ("run", _) if is_top => {
                self.started.insert(event.test);
            }
            ("output", _) => self
                .outputs
                .entry(top.to_owned())
                .or_default()
                .push_str(&event.output),
            (_, Some(status)) if is_top && self.started.contains(top) => self
                .results
                .entry(event.test)
                .or_default()
                .push((status, event.elapsed)),
            _ => {}
        }
    }

    /// Whether the binary ran to its end: it printed its verdict and exited.
    fn closed(&self) -> bool {
        self.verdict && self.exited.is_some()
    }

    /// Each top-level test's result, by name: the worst of its results, where a binary that
    /// exited 0 failed none of its tests (a `fail` from it comes from a printed line).
    fn cases(self) -> impl Iterator<Item = (String, ReportedCase)> {
        let PackageRun {
            results,
            mut outputs,
            exited,
            ..
        } = self;
        let binary_passed = exited == Some(TestStatus::Passed);
        results.into_iter().map(move |(name, results)| {
            let believed: Vec<(TestStatus, f64)> = results
                .iter()
                .filter(|(status, _)| !(binary_passed && *status == TestStatus::Failed))
                .copied()
                .collect();
            let pool = if believed.is_empty() {
                &results
            } else {
                &believed
            };
            let (status, seconds) = pool
                .iter()
                .copied()
                .max_by_key(|(status, _)| severity(*status))
                .unwrap_or((TestStatus::Error, 0.0));
            let output = outputs.remove(&name).unwrap_or_default();
            let message = (status == TestStatus::Failed).then(|| failure_line(&output));
            let case = ReportedCase {
                status,
                duration_ms: seconds_to_ms(seconds),
                message,
                output,
            };
            (name, case)
        })
    }
}

/// How bad a result is: of several results for one test, the worst counts.
fn severity(status: TestStatus) -> u8 {
    match status {
        TestStatus::Failed => 2,
        TestStatus::Skipped => 1,
        _ => 0,
    }
}

/// Reads test2json's events of a batch's binaries into one result per top-level test, keyed by
/// its id (`package name`; see the module documentation). The report is complete when the
/// batch finished and every package's binary ran to its end.
pub(super) fn parse(bytes: &[u8]) -> Reported {
    let text = String::from_utf8_lossy(bytes);
    // One entry per run of a binary (a package with many tests runs its binary once per
    // pattern): how one run exited says nothing of another's tests.
    let mut runs: Vec<(String, PackageRun)> = Vec::new();
    let mut current: HashMap<String, usize> = HashMap::new();
    let mut finished = false;
    for line in text.lines() {
        if let Some(package) = line.strip_prefix(PACKAGE_MARK) {
            current.insert(package.to_owned(), runs.len());
            runs.push((package.to_owned(), PackageRun::default()));
        } else if line == END_MARK {
            finished = true;
        } else if let Ok(event) = serde_json::from_str::<Event>(line) {
            let run = *current.entry(event.package.clone()).or_insert_with(|| {
                runs.push((event.package.clone(), PackageRun::default()));
                runs.len() - 1
            });
            runs[run].1.record(event);
        }
    }
    let mut reported = Reported {
        complete: finished && runs.iter().all(|(_, run)| run.closed()),
        ..Reported::default()
    };
    for (package, run) in runs {
        for (name, case) in run.cases() {
            reported.insert(format!("{package} {name}"), case);
        }
    }
    reported
}

/// The top-level test of a (sub)test name.
fn top_level(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

/// The line of a failed test's output that says why: its first `panic: ` line when it
/// panicked (the goroutine traces that follow say where, not why), else its last line that is
/// not the testing package's framing (`=== RUN`, `--- FAIL: …`).
fn failure_line(output: &str) -> String {
    let lines = || {
        output
            .lines()
            .map(|line| line.trim_start_matches('\u{16}').trim())
    };
    if let Some(panic) = lines().find(|line| line.starts_with("panic: ")) {
        return panic.to_owned();
    }
    const FRAMING: [&str; 7] = [
        "=== RUN",
        "=== PAUSE",
        "=== CONT",
        "=== NAME",
        "--- PASS:",
        "--- FAIL:",
        "--- SKIP:",
    ];
    lines()
        .rfind(|line| !line.is_empty() && !FRAMING.iter().any(|f| line.starts_with(f)))
        .unwrap_or("failed")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events as Go 1.19's `test2json -t -p p BIN -test.v` writes them (times left out), for
    /// a batch of TestEarlier, which prints `--- PASS: TestLater (0.00s)`, TestLater, which
    /// prints the same line and then fails, and TestSub, whose subtest fails.
    const EVENTS: &str = r#"cluster-action package: p
{"Action":"run","Package":"p","Test":"TestEarlier"}
{"Action":"output","Package":"p","Test":"TestEarlier","Output":"=== RUN   TestEarlier\n"}
{"Action":"output","Package":"p","Test":"TestLater","Output":"--- PASS: TestLater (0.00s)\n"}
{"Action":"pass","Package":"p","Test":"TestLater","Elapsed":0}
{"Action":"output","Package":"p","Test":"TestEarlier","Output":"--- PASS: TestEarlier (1.50s)\n"}
{"Action":"pass","Package":"p","Test":"TestEarlier","Elapsed":1.5}
{"Action":"run","Package":"p","Test":"TestLater"}
{"Action":"output","Package":"p","Test":"TestLater","Output":"=== RUN   TestLater\n"}
{"Action":"output","Package":"p","Test":"TestLater","Output":"--- PASS: TestLater (0.00s)\n"}
{"Action":"pass","Package":"p","Test":"TestLater","Elapsed":0}
{"Action":"output","Package":"p","Test":"TestLater","Output":"    later_test.go:16: it fails\n"}
{"Action":"output","Package":"p","Test":"TestLater","Output":"--- FAIL: TestLater (0.01s)\n"}
{"Action":"fail","Package":"p","Test":"TestLater","Elapsed":0.01}
{"Action":"run","Package":"p","Test":"TestSub"}
{"Action":"output","Package":"p","Test":"TestSub","Output":"=== RUN   TestSub\n"}
{"Action":"run","Package":"p","Test":"TestSub/fails"}
{"Action":"output","Package":"p","Test":"TestSub/fails","Output":"=== RUN   TestSub/fails\n"}
{"Action":"output","Package":"p","Test":"TestSub/fails","Output":"    sub_test.go:9: boom\n"}
{"Action":"output","Package":"p","Test":"TestSub","Output":"--- FAIL: TestSub (0.00s)\n"}
{"Action":"output","Package":"p","Test":"TestSub/fails","Output":"    --- FAIL: TestSub/fails (0.00s)\n"}
{"Action":"fail","Package":"p","Test":"TestSub/fails","Elapsed":0}
{"Action":"fail","Package":"p","Test":"TestSub","Elapsed":0}
{"Action":"output","Package":"p","Output":"FAIL\n"}
{"Action":"fail","Package":"p","Elapsed":0.002}
"#;

    #[test]
    fn each_run_of_a_packages_binary_answers_for_its_own_tests() {
        // A package with many tests runs its binary once per pattern: the first run exited 0,
        // which must not make the second run's real failure a printed line (Go 1.19's
        // test2json also turns a printed `--- PASS:` into a pass event, as here).
        let run = |test: &str, verdict: &str| {
            format!(
                "{PACKAGE_MARK}p\n\
                 {{\"Action\":\"run\",\"Package\":\"p\",\"Test\":\"{test}\"}}\n\
                 {{\"Action\":\"pass\",\"Package\":\"p\",\"Test\":\"{test}\",\"Elapsed\":0}}\n\
                 {{\"Action\":\"{verdict}\",\"Package\":\"p\",\"Test\":\"{test}\",\"Elapsed\":0}}\n\
                 {{\"Action\":\"output\",\"Package\":\"p\",\"Output\":\"{}\\n\"}}\n\
                 {{\"Action\":\"{verdict}\",\"Package\":\"p\",\"Elapsed\":0}}\n",
                verdict.to_uppercase()
            )
        };
        let whole = format!(
            "{}{}{END_MARK}\n",
            run("TestA", "pass"),
            run("TestB", "fail")
        );
        let reported = parse(whole.as_bytes());
        assert!(reported.complete);
        assert_eq!(reported.cases["p TestA"].status, TestStatus::Passed);
        assert_eq!(reported.cases["p TestB"].status, TestStatus::Failed);
    }

    #[test]
    fn results_come_from_the_events_of_started_tests_the_worst_winning() {
        let whole = format!("{EVENTS}{END_MARK}\n");
        let reported = parse(whole.as_bytes());
        assert!(reported.complete);
        let earlier = &reported.cases["p TestEarlier"];
        assert_eq!(
            (earlier.status, earlier.duration_ms),
            (TestStatus::Passed, 1500)
        );
        let later = &reported.cases["p TestLater"];
        assert_eq!(
            (later.status, later.duration_ms),
            (TestStatus::Failed, 10),
            "printed lines decide nothing"
        );
        assert_eq!(later.message.as_deref(), Some("later_test.go:16: it fails"));
        let sub = &reported.cases["p TestSub"];
        assert_eq!(sub.status, TestStatus::Failed);
        assert_eq!(sub.message.as_deref(), Some("sub_test.go:9: boom"));
        assert!(
            sub.output.contains("--- FAIL: TestSub/fails"),
            "{}",
            sub.output
        );
        assert!(!reported.cases.contains_key("p TestSub/fails"));
    }

    #[test]
    fn a_binary_that_exited_0_failed_none_of_its_tests() {
        // TestA prints `--- FAIL: TestB (0.00s)` after TestB passed; the binary exits 0.
        let events = r#"cluster-action package: p
{"Action":"run","Package":"p","Test":"TestB"}
{"Action":"pass","Package":"p","Test":"TestB","Elapsed":0.25}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"fail","Package":"p","Test":"TestB","Elapsed":0}
{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0}
{"Action":"output","Package":"p","Output":"PASS\n"}
{"Action":"pass","Package":"p","Elapsed":0.3}
"#;
        let reported = parse(format!("{events}{END_MARK}\n").as_bytes());
        assert!(reported.complete);
        let b = &reported.cases["p TestB"];
        assert_eq!((b.status, b.duration_ms), (TestStatus::Passed, 250));
        // The same events from a binary that failed: the worst result stands.
        let failed = events.replace(
            r#""Action":"pass","Package":"p","Elapsed""#,
            r#""Action":"fail","Package":"p","Elapsed""#,
        );
        let reported = parse(format!("{failed}{END_MARK}\n").as_bytes());
        assert_eq!(reported.cases["p TestB"].status, TestStatus::Failed);
    }

    #[test]
    fn events_cut_short_are_incomplete() {
        let cut = &EVENTS[..EVENTS
            .find(r#"{"Action":"run","Package":"p","Test":"TestSub"}"#)
            .unwrap()];
        let reported = parse(cut.as_bytes());
        assert!(!reported.complete);
        assert_eq!(reported.cases.len(), 2);
        assert!(!parse(EVENTS.as_bytes()).complete, "no end mark");
        // A binary that died without its verdict (os.Exit, a crash) did not finish its tests.
        let died = EVENTS.replace(r#"{"Action":"output","Package":"p","Output":"FAIL\n"}"#, "");
        assert!(!parse(format!("{died}{END_MARK}\n").as_bytes()).complete);
    }

    #[test]
    fn the_verbose_flag_marks_framing_from_go_1_20() {
        assert_eq!(verbose_flag("go1.19.8\n"), "-test.v");
        assert_eq!(verbose_flag("go1.20"), "-test.v=test2json");
        assert_eq!(verbose_flag("go1.23rc1"), "-test.v=test2json");
        assert_eq!(verbose_flag("devel go1.24-1a2b3c Tue"), "-test.v=test2json");
        assert_eq!(verbose_flag("gccgo"), "-test.v");
    }

    #[test]
    fn patterns_are_bounded_and_name_each_test_once() {
        let names: Vec<String> = (0..5_000).map(|n| format!("Test{n:040}")).collect();
        let made = patterns(names.iter().map(String::as_str));
        assert!(made.len() > 1);
        assert!(made.iter().all(|p| p.len() <= LONGEST_PATTERN));
        let named: Vec<&str> = made
            .iter()
            .flat_map(|p| {
                p.strip_prefix("^(")
                    .unwrap()
                    .strip_suffix(")$")
                    .unwrap()
                    .split('|')
            })
            .collect();
        assert_eq!(named, names);
        assert_eq!(patterns(["TestA", "TestB"]), ["^(TestA|TestB)$"]);
    }

    #[test]
    fn a_panic_says_why_a_test_failed_not_its_last_trace_line() {
        let output = "=== RUN   TestExits\n--- FAIL: TestExits (0.00s)\n\
                      panic: unexpected call to os.Exit(0) during test [recovered]\n\
                      \tpanic: unexpected call to os.Exit(0) during test\n\n\
                      goroutine 6 [running]:\n\
                      \t/usr/lib/go-1.19/src/testing/testing.go:1493 +0x35f\n";
        assert_eq!(
            failure_line(output),
            "panic: unexpected call to os.Exit(0) during test [recovered]"
        );
        assert_eq!(
            failure_line("    a_test.go:3: boom\n--- FAIL: TestA\n"),
            "a_test.go:3: boom"
        );
    }

    #[test]
    fn only_runnable_names_are_tests() {
        assert!(is_test_name("TestA") && is_test_name("ExampleX") && is_test_name("FuzzY"));
        assert!(is_test_name("TestÄpfel") && is_test_name("Test_日本"));
        assert!(!is_test_name("BenchmarkZ") && !is_test_name("ok  \tpkg\t0.1s"));
    }
}
