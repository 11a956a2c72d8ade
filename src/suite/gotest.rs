//! go test: the runner lists each package's tests (`go test -list .`) and builds its test
//! binary once (`go test -c`); workers run the binaries (no Go toolchain needed) with
//! `-test.run '^(A|B)$' -test.v`, and the verbose output, which the testing package streams
//! test by test, is the report: a batch killed part-way still tells which tests finished.
//!
//! The suite's `args` are `go` build flags (in the `-flag=value` form) and package patterns.
//! Each binary runs in its package's directory when the job directory has it (tests read
//! `testdata/` relative to it), else in the job directory.

use std::path::Path;

use super::process::{Tool, output};
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

/// The line a batch writes before a package's output; the import path follows.
const PACKAGE_MARK: &str = "cluster-action package: ";

/// The line a batch writes when every binary has exited.
const END_MARK: &str = "cluster-action: batch finished";

/// Lists the packages the suite's patterns name and their tests, building each test binary.
pub(super) fn list(suite: &Suite, dir: &Path, work: &Path) -> Result<Listing, SuiteError> {
    let go = GO.find(suite)?;
    let flags: Vec<String> = suite
        .args
        .iter()
        .filter(|a| a.starts_with('-'))
        .cloned()
        .collect();
    let mut args = vec![
        "list".to_owned(),
        "-f".into(),
        "{{.ImportPath}}\t{{.Dir}}".into(),
    ];
    args.extend(suite.args.iter().cloned());
    let packages = String::from_utf8_lossy(&output(suite, dir, &go, &args)?).into_owned();
    let root = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut listing = Listing::new(suite, Vec::new());
    for line in packages.lines().filter(|l| !l.trim().is_empty()) {
        let (package, package_dir) = line.split_once('\t').unwrap_or((line, ""));
        let mut args = vec!["test".to_owned(), "-list".into(), ".".into()];
        args.extend(flags.iter().cloned());
        args.push(package.to_owned());
        let names = String::from_utf8_lossy(&output(suite, dir, &go, &args)?).into_owned();
        let tests: Vec<TestCase> = names
            .lines()
            .filter(|name| is_test_name(name))
            .map(|name| TestCase {
                id: format!("{package} {name}"),
                group: package.to_owned(),
                name: name.to_owned(),
                file: None,
            })
            .collect();
        if tests.is_empty() {
            continue;
        }
        let binary = format!("{}.test", ship_name(package));
        let source = work.join(&binary);
        let mut args = vec!["test".to_owned(), "-c".into(), "-o".into()];
        args.push(source.display().to_string());
        args.extend(flags.iter().cloned());
        args.push(package.to_owned());
        output(suite, dir, &go, &args)?;
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
    Ok(listing)
}

/// A name `-test.run` selects: a test, example or fuzz test (benchmarks do not run).
fn is_test_name(name: &str) -> bool {
    ["Test", "Example", "Fuzz"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The longest `-test.run` pattern one run of a test binary gets: a package with more of the
/// batch's tests runs its binary once per pattern of this size (the kernel refuses a longer
/// argument than 128 KiB, and a long alternation is slow to match).
const LONGEST_PATTERN: usize = 16 * 1024;

/// Runs each package's binary on its tests of the batch, all output to the report file: once
/// per pattern of at most [`LONGEST_PATTERN`] bytes, the patterns read from a here-document.
pub(super) fn batch_command(listing: &Listing, batch: &[TestCase]) -> String {
    let report = super::REPORT_ENV;
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
             (cd {} 2>/dev/null; exec \"$d/{binary}\" -test.v -test.run \"$run\" 3<&-) >> \"${report}\" 2>&1\n\
             done 3{redirect}\n{body}",
            shell_quote(&format!("{PACKAGE_MARK}{package}")),
            shell_quote(package_dir),
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

/// The key of `case` in what [`parse`] reports.
pub(super) fn case_key(case: &TestCase) -> String {
    case.id.clone()
}

/// Reads the verbose output of a batch's binaries: `=== RUN`/`=== CONT` say whose output
/// follows, `--- PASS/FAIL/SKIP: Name (1.50s)` end a test (subtests count towards their
/// test), a package's final `PASS` or `FAIL` closes it. Lines may carry test2json's `\x16`
/// marker. The report is complete when every package was closed and the batch finished.
pub(super) fn parse(bytes: &[u8]) -> Reported {
    let text = String::from_utf8_lossy(bytes);
    let mut reported = Reported::default();
    let mut package = String::new();
    let mut closed = true;
    let mut finished = false;
    let mut current: Option<String> = None;
    let mut outputs: std::collections::HashMap<String, String> = Default::default();
    for raw in text.lines() {
        let line = raw.trim_start_matches('\u{16}');
        if let Some(next) = line.strip_prefix(PACKAGE_MARK) {
            package = next.to_owned();
            closed = false;
            current = None;
        } else if line == END_MARK {
            finished = true;
        } else if let Some(name) = event(line, "=== RUN").or_else(|| event(line, "=== CONT")) {
            current = Some(top_level(name).to_owned());
        } else if let Some((status, name, seconds)) = result(line) {
            if !name.contains('/') {
                let output = outputs.remove(name).unwrap_or_default();
                let message = (status == TestStatus::Failed)
                    .then(|| output.lines().last().unwrap_or("failed").trim().to_owned());
                let case = ReportedCase {
                    status,
                    duration_ms: seconds_to_ms(seconds),
                    message,
                    output,
                };
                reported.insert(format!("{package} {name}"), case);
            }
        } else if line == "PASS" || line == "FAIL" {
            closed = true;
        } else if let Some(name) = &current {
            let output = outputs.entry(name.clone()).or_default();
            output.push_str(line);
            output.push('\n');
        }
    }
    reported.complete = closed && finished;
    reported
}

/// The test name of an `=== ACTION Name` line.
fn event<'a>(line: &'a str, action: &str) -> Option<&'a str> {
    let name = line.strip_prefix(action)?.trim();
    (!name.is_empty() && !name.contains(' ')).then_some(name)
}

/// The top-level test of a (sub)test name.
fn top_level(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

/// A `--- STATUS: Name (1.50s)` line, at any indentation.
fn result(line: &str) -> Option<(TestStatus, &str, f64)> {
    let rest = line.trim_start().strip_prefix("--- ")?;
    let (word, rest) = rest.split_once(": ")?;
    let status = match word {
        "PASS" => TestStatus::Passed,
        "FAIL" => TestStatus::Failed,
        "SKIP" => TestStatus::Skipped,
        _ => return None,
    };
    let (name, time) = rest.split_once(" (")?;
    let seconds = time.strip_suffix("s)")?.parse().ok()?;
    Some((status, name, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "cluster-action package: p\n\
        === RUN   TestA\n\
        --- PASS: TestA (1.50s)\n\
        === RUN   TestB\n\
        \u{16}=== RUN   TestB/sub\n\
        \x20   b_test.go:9: boom\n\
        \x20   --- FAIL: TestB/sub (0.00s)\n\
        --- FAIL: TestB (0.01s)\n\
        FAIL\n";

    #[test]
    fn reads_results_output_and_completeness() {
        let whole = format!("{OUTPUT}{END_MARK}\n");
        let reported = parse(whole.as_bytes());
        assert!(reported.complete);
        let a = &reported.cases["p TestA"];
        assert_eq!((a.status, a.duration_ms), (TestStatus::Passed, 1500));
        let b = &reported.cases["p TestB"];
        assert_eq!(b.status, TestStatus::Failed);
        assert_eq!(b.message.as_deref(), Some("b_test.go:9: boom"));
        assert!(!reported.cases.contains_key("p TestB/sub"));
    }

    #[test]
    fn output_cut_short_is_incomplete() {
        let cut = &OUTPUT[..OUTPUT.find("--- FAIL: TestB ").unwrap()];
        let reported = parse(cut.as_bytes());
        assert!(!reported.complete);
        assert_eq!(reported.cases.len(), 1);
        assert!(!parse(OUTPUT.as_bytes()).complete, "no end mark");
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
    fn only_runnable_names_are_tests() {
        assert!(is_test_name("TestA") && is_test_name("ExampleX") && is_test_name("FuzzY"));
        assert!(!is_test_name("BenchmarkZ") && !is_test_name("ok  \tpkg\t0.1s"));
    }
}
