//! RSpec: examples listed by `rspec --dry-run` on the runner, batches run by example id with
//! RSpec's own JSON report. The Ruby environment (Ruby, rspec-core, the project's gems) is the
//! user's on every machine.
//!
//! Both sides run RSpec through a small runner of ours ([`RUNNER`], shipped to the workers):
//! it reads a batch's example ids (`./spec/a_spec.rb[1:2:1]`, what a user pastes into
//! `rspec` to run one example again, distinct for each `it_behaves_like`) from a file, so that
//! no command line holds them, and adds the formatters whose output is the report: RSpec's
//! JSON, and until that is written a JSON line per example that starts or ends, so that a
//! batch killed part-way still says what finished, and the per-test timeout's watchdog which
//! example it stopped. With a Gemfile it sets up the bundle, as `bundle exec rspec` does. A
//! test is named by its full description in the group of its spec file; a pending or skipped
//! example is skipped; an error outside the examples (a spec file that fails to load) is the
//! error of every test of the batch the report does not mention.

use std::path::Path;

use serde::Deserialize;

use super::process::{Tool, tail};
use super::report::{self, Event, Reported, ReportedCase, seconds_to_ms};
use super::ruby::Script;
use super::{
    Listing, Suite, SuiteError, TestCase, TestStatus, ids_path, shell_quote, shell_words,
    write_lines,
};

/// The runner of RSpec for the listing and the batches (see the module documentation).
const RUNNER: Script = Script {
    file: "cluster_action_rspec.rb",
    text: include_str!("rspec_batch.rb"),
    ruby: Tool {
        program: "ruby",
        install: "install Ruby (Debian/Ubuntu: `apt-get install ruby`; in CI, ruby/setup-ruby) \
                  and RSpec (`gem install rspec`, or rspec in the project's Gemfile)",
    },
    gem: Tool {
        program: "rspec",
        install: "install it for the Ruby on PATH: `gem install rspec`, or add rspec to the \
                  project's Gemfile and run `bundle install`",
    },
    feature: "rspec/core",
};

/// RSpec's options that take a value as the next word (`rspec --help`, 3.12): the words that
/// are neither options nor paths.
const VALUE_OPTIONS: &[&str] = &[
    "-I",
    "-r",
    "--require",
    "-O",
    "--options",
    "--order",
    "--seed",
    "--failure-exit-code",
    "--error-exit-code",
    "--drb-port",
    "-f",
    "--format",
    "-o",
    "--out",
    "--deprecation-out",
    "-P",
    "--pattern",
    "--exclude-pattern",
    "-e",
    "--example",
    "-E",
    "--example-matches",
    "-t",
    "--tag",
    "--default-path",
];

/// RSpec's options whose value is optional: the next word is theirs when it is a number.
const COUNT_OPTIONS: &[&str] = &["-p", "--profile", "--fail-fast"];

/// The batch's own options, after the suite's: every example of the batch runs, whatever a
/// `--fail-fast` of the project's says (the rest would be errors, "not reported").
const BATCH_OPTIONS: &str = "--no-fail-fast";

/// Lists the suite's examples in `dir` with `--dry-run`, writing [`RUNNER`] (to ship) and
/// the listing's report under `work`.
pub(super) fn list(suite: &Suite, dir: &Path, work: &Path) -> Result<Listing, SuiteError> {
    let report = work.join("listing.json");
    let mut args = vec![
        String::new(),
        report.display().to_string(),
        "--dry-run".into(),
    ];
    args.extend(suite.args.iter().cloned());
    let shown = || {
        std::iter::once("rspec --dry-run".to_owned())
            .chain(suite.args.iter().map(|a| shell_quote(a)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match RUNNER.run_listing(suite, dir, work, &args) {
        Ok(_) => {}
        Err(SuiteError::ListFailed {
            status,
            stderr_tail,
            ..
        }) => {
            // RSpec writes a spec file's load error to its formatters: to the report here.
            let outside = std::fs::read(&report)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Report>(&bytes).ok())
                .map(|report| report.outside_errors())
                .filter(|text| !text.is_empty());
            return Err(SuiteError::ListFailed {
                suite: suite.name.clone(),
                command: shown(),
                status,
                stderr_tail: outside.map_or(stderr_tail, |text| tail(&text)),
            });
        }
        Err(e) => return Err(e),
    }
    let bytes = std::fs::read(&report).map_err(|source| SuiteError::Io {
        path: report.clone(),
        source,
    })?;
    let listed: Report = serde_json::from_slice(&bytes).map_err(|e| SuiteError::BadListing {
        suite: suite.name.clone(),
        command: shown(),
        why: format!("its JSON report does not read ({e})"),
    })?;
    let tests = listed
        .examples
        .into_iter()
        .map(|example| {
            let file = spec_file(&example.id).to_owned();
            TestCase {
                group: file.clone(),
                name: example.full_description,
                file: Some(file),
                id: example.id,
            }
        })
        .collect();
    let mut listing = Listing::new(suite, tests);
    listing.ship.push(RUNNER.shipped(suite, work));
    listing.run_args = options(&suite.args);
    Ok(listing)
}

/// The spec file of an example id: what comes before its scoped id (`[1:2:1]`).
fn spec_file(id: &str) -> &str {
    match id.rfind('[') {
        Some(at) if id.ends_with(']') => &id[..at],
        _ => id,
    }
}

/// The options among the suite's arguments, with their values: what every batch passes on.
/// The paths (files, directories, `file:line`, ids) selected what was listed; a batch names
/// its examples itself.
fn options(args: &[String]) -> Vec<String> {
    let mut kept = Vec::new();
    let mut at = 0;
    while let Some(word) = args.get(at) {
        if word == "--" {
            break;
        }
        let next = args.get(at + 1);
        let takes_next = VALUE_OPTIONS.contains(&word.as_str())
            || (COUNT_OPTIONS.contains(&word.as_str())
                && next.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())));
        if word.starts_with('-') && word.len() > 1 {
            kept.push(word.clone());
            if takes_next && let Some(value) = next {
                kept.push(value.clone());
                at += 1;
            }
        }
        at += 1;
    }
    kept
}

/// Runs [`RUNNER`] on the batch's ids with the suite's options, then [`BATCH_OPTIONS`].
pub(super) fn batch_command(listing: &Listing, batch: &[TestCase]) -> String {
    format!(
        "{}{} {} \"${}\" {} {BATCH_OPTIONS}\n",
        write_lines(
            &ids_path(&listing.suite),
            batch.iter().map(|c| c.id.as_str())
        ),
        RUNNER.batch_words(&listing.suite),
        ids_path(&listing.suite),
        super::REPORT_ENV,
        shell_words(&listing.run_args),
    )
}

/// RSpec's JSON report (`--format json`), as far as it is read.
#[derive(Debug, Deserialize)]
struct Report {
    /// What RSpec said besides the examples: the run's options, errors outside examples.
    #[serde(default)]
    messages: Vec<String>,
    /// The examples it ran (or listed).
    examples: Vec<Example>,
    /// Its counts.
    summary: Summary,
}

/// The counts of RSpec's JSON report.
#[derive(Debug, Deserialize)]
struct Summary {
    /// Errors outside examples: a spec file that failed to load, a failing `before(:suite)`.
    #[serde(default)]
    errors_outside_of_examples_count: u64,
}

/// One example of RSpec's JSON report, or a line of [`RUNNER`]'s progress.
#[derive(Debug, Deserialize)]
struct Example {
    /// Its id.
    id: String,
    /// Its group's descriptions and its own.
    #[serde(default)]
    full_description: String,
    /// `passed`, `failed` or `pending`.
    status: String,
    /// Seconds.
    run_time: Option<f64>,
    /// Why it is pending or skipped.
    pending_message: Option<String>,
    /// Why it failed.
    exception: Option<Exception>,
}

/// The exception of a failed example.
#[derive(Debug, Deserialize)]
struct Exception {
    /// Its class.
    class: String,
    /// Its message.
    message: String,
    /// Where it was raised.
    #[serde(default)]
    backtrace: Option<Vec<String>>,
}

impl Report {
    /// Its messages about errors outside examples, or nothing when there were none (the
    /// messages then only say the run's options).
    fn outside_errors(&self) -> String {
        if self.summary.errors_outside_of_examples_count == 0 {
            return String::new();
        }
        self.messages
            .iter()
            .map(|m| m.trim())
            .filter(|m| !m.is_empty() && !m.starts_with("Run options:"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Example {
    /// What it says of its test.
    fn case(&self) -> ReportedCase {
        let (status, message, output) = match (self.status.as_str(), &self.exception) {
            ("passed", _) => (TestStatus::Passed, None, String::new()),
            ("pending", _) => (
                TestStatus::Skipped,
                self.pending_message.clone(),
                String::new(),
            ),
            ("failed", Some(e)) => {
                let first = e.message.lines().map(str::trim).find(|l| !l.is_empty());
                let backtrace = e.backtrace.iter().flatten();
                let own = backtrace
                    .filter(|line| !line.contains("/lib/rspec/") && !line.contains(RUNNER.file));
                let output = std::iter::once(format!("{}: {}", e.class, e.message.trim()))
                    .chain(own.cloned())
                    .collect::<Vec<_>>()
                    .join("\n");
                let message = first.map_or_else(|| e.class.clone(), str::to_owned);
                (TestStatus::Failed, Some(message), output)
            }
            ("failed", None) => (TestStatus::Failed, None, String::new()),
            (other, _) => (
                TestStatus::Error,
                Some(format!("RSpec reported status '{other}'")),
                String::new(),
            ),
        };
        ReportedCase {
            status,
            duration_ms: self.run_time.map_or(0, seconds_to_ms),
            message,
            output,
        }
    }
}

/// What a line of [`RUNNER`]'s progress says: an example started (`{"started": ID}`) or
/// ended (an example as RSpec's JSON has it).
fn progress_event(line: &str) -> Option<Event> {
    #[derive(Deserialize)]
    struct Started {
        started: String,
    }
    if let Ok(example) = serde_json::from_str::<Example>(line) {
        let case = example.case();
        return Some(Event::Finished(example.id, case));
    }
    let started = serde_json::from_str::<Started>(line).ok()?;
    Some(Event::Started(started.started))
}

/// The results in a batch's report: RSpec's JSON when it finished (complete; an error outside
/// examples is the error of each test of `batch` it does not mention), else the runner's
/// progress lines (incomplete: the tests they do not mention run again, but for the one the
/// watchdog stopped at the per-test timeout).
pub(super) fn parse(bytes: &[u8], batch: &[TestCase]) -> Reported {
    let Ok(report) = serde_json::from_slice::<Report>(bytes) else {
        return report::events(bytes, progress_event).0;
    };
    let mut reported = Reported {
        complete: true,
        ..Reported::default()
    };
    for example in &report.examples {
        reported.insert(example.id.clone(), example.case());
    }
    let outside = report.outside_errors();
    if !outside.is_empty() {
        reported.error_unreported(batch.iter().map(|case| case.id.as_str()), &outside);
    }
    reported
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn options_reach_the_batches_with_their_values_and_paths_do_not() {
        let args = strings(&[
            "spec/models",
            "-I",
            "lib",
            "--tag",
            "~slow",
            "./spec/a_spec.rb[1:2]",
            "--format=doc",
            "-p",
            "5",
            "spec/b_spec.rb:3",
            "--profile",
            "spec/c",
            "-rhelper",
            "--",
            "-e",
        ]);
        assert_eq!(
            options(&args),
            strings(&[
                "-I",
                "lib",
                "--tag",
                "~slow",
                "--format=doc",
                "-p",
                "5",
                "--profile",
                "-rhelper"
            ])
        );
    }

    #[test]
    fn an_example_id_names_its_spec_file() {
        assert_eq!(spec_file("./spec/a_spec.rb[1:2:1]"), "./spec/a_spec.rb");
        assert_eq!(
            spec_file("./spec/x[1]/a_spec.rb[1:1]"),
            "./spec/x[1]/a_spec.rb"
        );
        assert_eq!(spec_file("./spec/a_spec.rb"), "./spec/a_spec.rb");
    }

    fn case(id: &str) -> TestCase {
        TestCase {
            id: id.into(),
            group: spec_file(id).into(),
            name: id.into(),
            file: None,
        }
    }

    const FAILED: &str = r#"{"id":"./spec/a_spec.rb[1:2]","full_description":"A fails","status":"failed","run_time":0.5,"pending_message":null,"exception":{"class":"RSpec::Expectations::ExpectationNotMetError","message":"\nexpected: 5\n     got: 4\n","backtrace":["/gems/rspec-expectations-3.12.1/lib/rspec/expectations/fail_with.rb:35:in `fail_with'","./spec/a_spec.rb:9:in `block (2 levels)'"]}}"#;

    #[test]
    fn a_whole_report_gives_statuses_messages_and_times() {
        let report = format!(
            r#"{{"version":"3.12.0","messages":["Run options: include {{:ids=>{{}}}}"],"examples":[
{{"id":"./spec/a_spec.rb[1:1]","full_description":"A adds","status":"passed","run_time":1.25,"pending_message":null}},
{FAILED},
{{"id":"./spec/a_spec.rb[1:3]","full_description":"A skips","status":"pending","run_time":0.0,"pending_message":"not here"}}],
"summary":{{"duration":1.0,"example_count":3,"failure_count":1,"pending_count":1,"errors_outside_of_examples_count":0}}}}"#
        );
        let batch = [
            case("./spec/a_spec.rb[1:1]"),
            case("./spec/a_spec.rb[1:2]"),
            case("./spec/a_spec.rb[1:3]"),
            case("./spec/a_spec.rb[1:4]"),
        ];
        let results = parse(report.as_bytes(), &batch).results(&batch, |c| c.id.clone());
        let got: Vec<_> = results
            .iter()
            .map(|r| (r.status, r.message.as_deref(), r.duration_ms))
            .collect();
        assert_eq!(
            got,
            [
                (TestStatus::Passed, None, 1250),
                (TestStatus::Failed, Some("expected: 5"), 500),
                (TestStatus::Skipped, Some("not here"), 0),
                (
                    TestStatus::Error,
                    Some(super::super::result::NOT_REPORTED),
                    0
                ),
            ]
        );
        assert_eq!(
            results[1].output,
            "RSpec::Expectations::ExpectationNotMetError: expected: 5\n     got: 4\n\
             ./spec/a_spec.rb:9:in `block (2 levels)'"
        );
    }

    #[test]
    fn an_error_outside_examples_is_the_error_of_the_tests_not_reported() {
        let report = r#"{"version":"3.12.0","messages":["Run options: include {:ids=>{}}","\nAn error occurred while loading ./spec/b_spec.rb.\nFailure/Error: raise \"boom\"\n"],"examples":[{"id":"./spec/a_spec.rb[1:1]","full_description":"A adds","status":"passed","run_time":0.1,"pending_message":null}],"summary":{"errors_outside_of_examples_count":1}}"#;
        let batch = [case("./spec/a_spec.rb[1:1]"), case("./spec/b_spec.rb[1:1]")];
        let results = parse(report.as_bytes(), &batch).results(&batch, |c| c.id.clone());
        assert_eq!(results[0].status, TestStatus::Passed);
        assert_eq!(results[1].status, TestStatus::Error);
        assert_eq!(
            results[1].message.as_deref(),
            Some("An error occurred while loading ./spec/b_spec.rb.")
        );
        assert!(results[1].output.contains("raise \"boom\""), "{results:?}");
    }

    #[test]
    fn progress_lines_keep_what_finished_and_leave_the_rest_not_run() {
        let progress = format!(
            "{}\n{FAILED}\n{{\"id\":\"./spec/a_spec.rb[1:",
            r#"{"id":"./spec/a_spec.rb[1:1]","full_description":"A adds","status":"passed","run_time":0.1,"pending_message":null}"#
        );
        let batch = [
            case("./spec/a_spec.rb[1:1]"),
            case("./spec/a_spec.rb[1:2]"),
            case("./spec/a_spec.rb[1:3]"),
        ];
        let results = parse(progress.as_bytes(), &batch).results(&batch, |c| c.id.clone());
        let statuses: Vec<_> = results.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [TestStatus::Passed, TestStatus::Failed, TestStatus::NotRun]
        );
    }

    #[test]
    fn a_batch_holds_its_ids_in_a_here_document_and_its_options_after_the_suites() {
        let suite = Suite {
            name: "rspec".into(),
            framework: super::super::Framework::Rspec,
            args: strings(&["spec/", "--fail-fast", "--tag", "it's"]),
        };
        let ids = ["./spec/a b_spec.rb[1:1]", "./spec/$x_spec.rb[1:2]"];
        let batch: Vec<TestCase> = ids.iter().map(|id| case(id)).collect();
        let mut listing = Listing::new(&suite, batch.clone());
        listing.run_args = options(&suite.args);
        let command = listing.batch_command(&batch);
        assert!(
            command.contains(&format!("\n{}\n{}\n", ids[0], ids[1])),
            "{command}"
        );
        let run = command.lines().last().unwrap();
        assert!(
            run.ends_with(r#""$CLUSTER_JUNIT" --fail-fast --tag 'it'\''s' --no-fail-fast"#),
            "{run}"
        );
    }
}
