//! cargo-nextest: the runner builds an archive (`cargo nextest archive`) and lists its tests;
//! workers get the archive and the `cargo-nextest` binary and run a batch from the archive
//! with a filter naming exactly its tests, writing nextest's own JUnit. Workers need no Rust
//! toolchain; the job directory (the suite's layers) stands in for the workspace.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::process::{Tool, output};
use super::report::seconds_to_ms;
use super::{
    Listing, Shipped, Suite, SuiteError, TestCase, TestStatus, here_document, shell_quote,
    ship_dest,
};

/// The nextest binary, run on the runner and shipped to workers.
const NEXTEST: Tool = Tool {
    program: "cargo-nextest",
    install: "install it with `cargo install --locked cargo-nextest` (in CI, a prebuilt binary \
              from taiki-e/install-action is faster)",
};

/// The archive's file name among the shipped files.
const ARCHIVE: &str = "archive.tar.zst";

/// The nextest binary's file name among the shipped files.
const BINARY: &str = "cargo-nextest";

/// The nextest profile a batch runs with, defined by the tool config the batch writes.
const PROFILE: &str = "cluster-action";

/// `cargo nextest list --message-format json`, the parts we read.
#[derive(Deserialize)]
struct List {
    #[serde(rename = "rust-suites")]
    suites: BTreeMap<String, Binary>,
}

/// One test binary of the list.
#[derive(Deserialize)]
struct Binary {
    #[serde(rename = "binary-id")]
    binary_id: String,
    testcases: BTreeMap<String, Listed>,
}

/// One test of a binary.
#[derive(Deserialize)]
struct Listed {
    #[serde(rename = "filter-match")]
    filter_match: FilterMatch,
}

/// Whether the listing's filters (the suite's arguments, `#[ignore]`) select a test.
#[derive(Deserialize)]
struct FilterMatch {
    status: String,
}

/// Archives the workspace in `dir` with the suite's arguments and lists the archive.
pub(super) fn list(suite: &Suite, dir: &Path, work: &Path) -> Result<Listing, SuiteError> {
    let nextest = NEXTEST.find(suite)?;
    let archive = work.join(ARCHIVE);
    let archive_arg = archive.display().to_string();
    let mut args: Vec<String> = ["nextest", "archive", "--archive-file", &archive_arg]
        .map(str::to_owned)
        .to_vec();
    args.extend(suite.args.iter().cloned());
    output(suite, dir, &nextest, &args)?;
    let args: Vec<String> = [
        "nextest",
        "list",
        "--archive-file",
        &archive_arg,
        "--message-format",
        "json",
    ]
    .map(str::to_owned)
    .to_vec();
    let json = output(suite, dir, &nextest, &args)?;
    let listed: List = serde_json::from_slice(&json).map_err(|e| SuiteError::BadListing {
        suite: suite.name.clone(),
        command: "cargo nextest list --message-format json".into(),
        why: e.to_string(),
    })?;
    let tests = listed
        .suites
        .into_values()
        .flat_map(|binary| {
            let id = binary.binary_id;
            binary
                .testcases
                .into_iter()
                .filter(|(_, t)| t.filter_match.status == "matches")
                .map(move |(name, _)| TestCase {
                    id: format!("{id} {name}"),
                    group: id.clone(),
                    name,
                    file: None,
                })
        })
        .collect();
    let mut listing = Listing::new(suite, tests);
    listing.ship = vec![
        Shipped {
            source: archive,
            dest: ship_dest(suite, ARCHIVE),
        },
        Shipped {
            source: nextest,
            dest: ship_dest(suite, BINARY),
        },
    ];
    Ok(listing)
}

/// Runs the batch from the shipped archive with the job directory as the workspace, with no
/// retries of nextest's own (retries are the cluster's). Its status lines stand in for the
/// report until nextest's JUnit replaces it at the end. The filter naming the batch's tests is
/// the profile's `default-filter` in the tool config the batch writes, never an argument
/// (one over 128 KiB cannot be passed).
pub(super) fn batch_command(listing: &Listing, batch: &[TestCase]) -> String {
    let dir = shell_quote(&ship_dest(&listing.suite, "").display().to_string());
    let config = format!(
        "[store]\\ndir = \"%s/store\"\\n[profile.{PROFILE}.junit]\\npath = \"junit.xml\"\\n\
         [profile.{PROFILE}]\\nfail-fast = false\\nretries = 0\\n"
    );
    let filter = format!("default-filter = {}", toml_string(&filter(batch)));
    let (redirect, body) = here_document([filter.as_str()]);
    format!(
        "d=\"$PWD\"/{dir}\n\
         r=\"${REPORT}\"\n\
         printf '{config}' \"$d\" > \"$d/nextest.toml\"\n\
         cat >> \"$d/nextest.toml\" {redirect}\n{body}\
         \"$d/{BINARY}\" nextest run --archive-file \"$d/{ARCHIVE}\" --workspace-remap . \
         --tool-config-file \"cluster-action:$d/nextest.toml\" --profile {PROFILE} \
         --no-tests fail --color never --status-level pass --final-status-level none \
         2>&1 | tee \"$r\"\n\
         status=${{PIPESTATUS[0]}}\n\
         if cp \"$d/store/{PROFILE}/junit.xml\" \"$r.xml\"; then mv \"$r.xml\" \"$r\"; fi\n\
         exit $status\n",
        REPORT = super::REPORT_ENV,
    )
}

/// `text` as a TOML basic string: `"` and `\\` escaped, control characters as `\\uXXXX`.
fn toml_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A status line, `PASS [   0.005s] (2/3) binary-id test::name`: the test's key, status and
/// run time.
pub(super) fn progress_line(line: &str) -> Option<(String, TestStatus, u64)> {
    let (word, rest) = line.trim_start().split_once(' ')?;
    let status = match word {
        "PASS" | "LEAK" => TestStatus::Passed,
        "SKIP" => TestStatus::Skipped,
        "FAIL" | "TIMEOUT" | "ABORT" | "LEAK-FAIL" => TestStatus::Failed,
        _ if word.starts_with("SIG") => TestStatus::Failed,
        _ => return None,
    };
    let (time, rest) = rest.trim_start().strip_prefix('[')?.split_once(']')?;
    let seconds: f64 = time.trim().strip_suffix('s')?.parse().ok()?;
    let mut rest = rest.trim_start();
    if rest.starts_with('(') {
        rest = rest.split_once(") ")?.1;
    }
    let (binary, name) = rest.trim_end().split_once(' ')?;
    Some((format!("{binary} {name}"), status, seconds_to_ms(seconds)))
}

/// A filterset naming exactly `batch`: per binary, `binary_id(=B) & (test(=a) | …)`.
fn filter(batch: &[TestCase]) -> String {
    let mut by_binary: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for case in batch {
        by_binary.entry(&case.group).or_default().push(&case.name);
    }
    by_binary
        .into_iter()
        .map(|(binary, names)| {
            let tests: Vec<String> = names
                .iter()
                .map(|n| format!("test(={})", escape(n)))
                .collect();
            format!("(binary_id(={}) & ({}))", escape(binary), tests.join(" | "))
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A filterset string argument: `\`, `)` and `,` escaped with `\`.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | ')' | ',') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// nextest's JUnit names a test by its binary (the class name) and its name: the key is the
/// test's id.
pub(super) fn junit_key(classname: &str, name: &str) -> Vec<String> {
    vec![format!("{classname} {name}")]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(binary: &str, name: &str) -> TestCase {
        TestCase {
            id: format!("{binary} {name}"),
            group: binary.into(),
            name: name.into(),
            file: None,
        }
    }

    #[test]
    fn status_lines_name_a_test_its_status_and_time() {
        let line = "        PASS [   0.005s] (2/3) suite-fixture::more adds";
        assert_eq!(
            progress_line(line),
            Some(("suite-fixture::more adds".into(), TestStatus::Passed, 5))
        );
        let line = "     SIGKILL [   1.500s] b x::y";
        assert_eq!(progress_line(line).unwrap().1, TestStatus::Failed);
        assert!(progress_line("    Starting 3 tests across 2 binaries").is_none());
        assert!(progress_line("     Summary [   0.111s] 3 tests run: 1 passed").is_none());
    }

    #[test]
    fn the_filter_names_each_test_with_its_binary() {
        let batch = [case("b", "x::y"), case("a", "t"), case("b", "odd,(name)")];
        assert_eq!(
            filter(&batch),
            r"(binary_id(=a) & (test(=t))) | (binary_id(=b) & (test(=x::y) | test(=odd\,(name\))))"
        );
    }
}
