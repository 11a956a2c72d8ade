//! Minitest: tests listed by loading the suite's test files and asking Minitest for its
//! runnable classes and their methods, batches that run exactly their tests, results from a
//! reporter of ours. The Ruby environment (Ruby, minitest 5.x, the project's gems) is the
//! user's on every machine; nothing beyond Minitest is needed.
//!
//! Both sides run through a small runner of ours ([`RUNNER`], shipped to the workers; its
//! header says what the suite's arguments mean). A test's id is Minitest's own name of it,
//! `Class#method` (what Minitest prints of a failure, and what `-n` takes), its group its class
//! and its name its method; the listing also says which test file defined it, and a batch
//! loads only its tests' files. A batch keeps, of each runnable class, only the methods its ids
//! name (not a `-n` pattern, which could match a neighbour), and its reporter writes a JSON
//! line per test that starts (for the per-test timeout's watchdog) and ends (an unexpected
//! exception is an error, a skip skipped), a line per test file that failed to load (the error
//! of each of the batch's tests left unreported), and a last line once Minitest is done: a
//! report without it was cut short. A batch runs one test at a time, as every framework's
//! batch takes one slot ([`ONE_PER_SLOT`]).

use std::path::Path;

use serde::Deserialize;

use super::process::Tool;
use super::report::{self, Event, Reported, ReportedCase, seconds_to_ms};
use super::ruby::Script;
use super::{
    Listing, Suite, SuiteError, TestCase, TestStatus, ids_path, job_path, shell_words, write_lines,
};

/// The runner of Minitest for the listing and the batches (see the module documentation).
const RUNNER: Script = Script {
    file: "cluster_action_minitest.rb",
    text: include_str!("minitest_batch.rb"),
    ruby: Tool {
        program: "ruby",
        install: "install Ruby (Debian/Ubuntu: `apt-get install ruby`; in CI, ruby/setup-ruby), \
                  which comes with Minitest",
    },
    gem: Tool {
        program: "minitest",
        install: "install it for the Ruby on PATH: `gem install minitest`, or add minitest to \
                  the project's Gemfile and run `bundle install`",
    },
    feature: "minitest",
};

/// The file, beside the batch's ids, naming the test files a batch loads, one a line.
const FILES_FILE: &str = "files";

/// One test of the listing, as [`RUNNER`] writes it.
#[derive(Debug, Deserialize)]
struct Listed {
    /// `Class#method`.
    id: String,
    /// The runnable class.
    class: String,
    /// The method.
    method: String,
    /// The test file whose loading defined it.
    file: String,
}

/// Lists the suite's tests in `dir`, writing [`RUNNER`] (to ship) and its listing under
/// `work`.
pub(super) fn list(suite: &Suite, dir: &Path, work: &Path) -> Result<Listing, SuiteError> {
    let out = work.join("listing.jsonl");
    let mut args = vec!["list".to_owned(), out.display().to_string()];
    args.extend(suite.args.iter().cloned());
    RUNNER.run_listing(suite, dir, work, &args)?;
    let text = std::fs::read_to_string(&out).map_err(|source| SuiteError::Io {
        path: out.clone(),
        source,
    })?;
    let mut tests = Vec::new();
    for line in text.lines() {
        let listed: Listed = serde_json::from_str(line).map_err(|e| SuiteError::BadListing {
            suite: suite.name.clone(),
            command: format!("ruby {} list", RUNNER.file),
            why: format!("a line that does not read ({e}): {line}"),
        })?;
        tests.push(TestCase {
            id: listed.id,
            group: listed.class,
            name: listed.method,
            file: Some(listed.file),
        });
    }
    let mut listing = Listing::new(suite, tests);
    listing.ship.push(RUNNER.shipped(suite, work));
    // The runner reads the suite's arguments itself: a batch ignores the paths among them.
    listing.run_args = suite.args.clone();
    Ok(listing)
}

/// The batch's parallelism unless the suite's environment sets it: one thread for
/// `parallelize_me!` tests (`MT_CPU`) and no forked workers for Rails' `parallelize`
/// (`PARALLEL_WORKERS`), so that a batch takes one slot as every framework's does.
const ONE_PER_SLOT: &str =
    "export MT_CPU=\"${MT_CPU:-1}\" PARALLEL_WORKERS=\"${PARALLEL_WORKERS:-1}\"\n";

/// Runs [`RUNNER`] on the batch's ids and their test files, with the suite's arguments, one
/// thread or process of tests at a time ([`ONE_PER_SLOT`]).
pub(super) fn batch_command(listing: &Listing, batch: &[TestCase]) -> String {
    let suite = &listing.suite;
    let mut files: Vec<&str> = batch.iter().filter_map(|c| c.file.as_deref()).collect();
    files.sort_unstable();
    files.dedup();
    format!(
        "{}{}{ONE_PER_SLOT}{} run {} {} \"${}\" {}\n",
        write_lines(&ids_path(suite), batch.iter().map(|c| c.id.as_str())),
        write_lines(&job_path(suite, FILES_FILE), files),
        RUNNER.batch_words(suite),
        ids_path(suite),
        job_path(suite, FILES_FILE),
        super::REPORT_ENV,
        shell_words(&listing.run_args),
    )
}

/// A line of a batch's report.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Line {
    /// A finished test's id.
    id: Option<String>,
    /// `passed`, `failed`, `error` or `skipped`.
    status: String,
    /// Seconds.
    time: f64,
    /// Why it failed or was skipped.
    message: Option<String>,
    /// Its failures in full.
    output: String,
    /// A test that started.
    started: Option<String>,
    /// A test file that failed to load, and why.
    error: Option<String>,
    /// Minitest is done.
    done: bool,
}

impl Line {
    /// What it says of its test.
    fn case(&self) -> ReportedCase {
        let status = match self.status.as_str() {
            "passed" => TestStatus::Passed,
            "failed" => TestStatus::Failed,
            "skipped" => TestStatus::Skipped,
            _ => TestStatus::Error,
        };
        let message = self.message.as_deref().and_then(|m| {
            let first = m.lines().map(str::trim).find(|l| !l.is_empty());
            first.map(str::to_owned)
        });
        ReportedCase {
            status,
            duration_ms: seconds_to_ms(self.time),
            message,
            output: self.output.clone(),
        }
    }
}

/// What a line of a batch's report says.
fn event(text: &str) -> Option<Event> {
    let line = serde_json::from_str::<Line>(text).ok()?;
    Some(if let Some(id) = &line.id {
        Event::Finished(id.clone(), line.case())
    } else if let Some(id) = line.started {
        Event::Started(id)
    } else if let Some(error) = line.error {
        Event::Outside(error)
    } else if line.done {
        Event::Done
    } else {
        return None;
    })
}

/// The results in a batch's report (see the module documentation): whole once its last line
/// is there, and then a test file's load error is the error of each test of `batch` the
/// report does not mention.
pub(super) fn parse(bytes: &[u8], batch: &[TestCase]) -> Reported {
    let (mut reported, errors) = report::events(bytes, event);
    if reported.complete && !errors.is_empty() {
        reported.error_unreported(batch.iter().map(|c| c.id.as_str()), &errors.join("\n\n"));
    }
    reported
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: &str, file: &str) -> TestCase {
        let (class, method) = id.split_once('#').unwrap();
        TestCase {
            id: id.into(),
            group: class.into(),
            name: method.into(),
            file: Some(file.into()),
        }
    }

    const LINES: &str = r#"{"id":"A#test_ok","status":"passed","time":1.5,"message":null,"output":""}
{"id":"A#test_bad","status":"failed","time":0.01,"message":"two and two make four.\nExpected: 5","output":"Failure: two and two make four.\nExpected: 5\ntest/a_test.rb:9"}
{"id":"A#test_raises","status":"error","time":0,"message":"ArgumentError: boom\n    test/a_test.rb:12","output":"Error: ArgumentError: boom"}
{"id":"A#test_skip","status":"skipped","time":0,"message":"not here","output":"Skipped: not here"}
"#;

    fn batch() -> Vec<TestCase> {
        [
            "A#test_ok",
            "A#test_bad",
            "A#test_raises",
            "A#test_skip",
            "B#test_broken",
        ]
        .iter()
        .map(|id| case(id, "test/a_test.rb"))
        .collect()
    }

    #[test]
    fn a_finished_report_gives_each_status_and_its_message() {
        let report = format!(
            "{LINES}{}\n{}\n",
            r#"{"error":"cannot load test/b_test.rb: RuntimeError: broken\ntest/b_test.rb:1"}"#,
            r#"{"done":true}"#
        );
        let batch = batch();
        let results = parse(report.as_bytes(), &batch).results(&batch, |c| c.id.clone());
        let got: Vec<_> = results
            .iter()
            .map(|r| (r.status, r.message.as_deref(), r.duration_ms))
            .collect();
        assert_eq!(
            got,
            [
                (TestStatus::Passed, None, 1500),
                (TestStatus::Failed, Some("two and two make four."), 10),
                (TestStatus::Error, Some("ArgumentError: boom"), 0),
                (TestStatus::Skipped, Some("not here"), 0),
                (
                    TestStatus::Error,
                    Some("cannot load test/b_test.rb: RuntimeError: broken"),
                    0
                ),
            ]
        );
        assert!(results[4].output.ends_with("test/b_test.rb:1"));
    }

    #[test]
    fn a_report_without_its_last_line_leaves_the_rest_not_run() {
        let batch = batch();
        let results = parse(LINES.as_bytes(), &batch).results(&batch, |c| c.id.clone());
        assert_eq!(results[1].status, TestStatus::Failed);
        assert_eq!(results[4].status, TestStatus::NotRun);
    }

    #[test]
    fn a_batch_writes_its_ids_and_their_files_each_once() {
        let suite = Suite {
            name: "minitest".into(),
            framework: super::super::Framework::Minitest,
            args: vec!["-n".into(), "/it's/".into()],
        };
        let batch = vec![
            case("A#test_$x y", "test/a_test.rb"),
            case("B#test_z", "test/b c_test.rb"),
            case("A#test_w", "test/a_test.rb"),
        ];
        let mut listing = Listing::new(&suite, batch.clone());
        listing.run_args = suite.args.clone();
        let command = listing.batch_command(&batch);
        assert!(
            command.contains("\nA#test_$x y\nB#test_z\nA#test_w\n"),
            "{command}"
        );
        assert!(
            command.contains("\ntest/a_test.rb\ntest/b c_test.rb\nCLUSTER_ACTION_END\n"),
            "{command}"
        );
        let run = command.lines().last().unwrap();
        assert!(
            run.ends_with(r#" "$CLUSTER_JUNIT" -n '/it'\''s/'"#),
            "{run}"
        );
    }
}
