//! The flags of `run` and `local` for test suites: the one-suite shorthand (`--tests FRAMEWORK
//! [ARGS]…`, with `--nextest`, `--pytest` and `--go-test` as its aliases), timing history files,
//! `--flaky-result` and quarantine (`--quarantine`, `--quarantine-file`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use cluster_action::history::HistorySource;
use cluster_action::history::results::RerunMode;
use cluster_action::layer::Listed;
use cluster_action::runner::manifest::{DEFAULT_TEST_TIMEOUT, LayerDef, Manifest, SuiteDef};
use cluster_action::runner::report::FlakyResult;
use cluster_action::suite::{Framework, Suite};

use super::exit::Failure;

/// `--flaky-result`: whether a test that passed only on a retry passes the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlakyArg {
    /// It passes (and is flagged).
    Pass,
    /// It fails the run.
    Fail,
}

/// `--quarantine`: quarantine by flake rate, or no quarantine at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QuarantineArg {
    /// Every suite quarantines by flake rate (`quarantine: {auto: true}`).
    Auto,
    /// No test is quarantined, whatever the manifest says.
    Off,
}

/// The most a `--quarantine-file` may weigh.
const MAX_QUARANTINE_FILE_BYTES: u64 = 4 << 20;

/// Suite flags, shared by `run` and `local`.
#[derive(Debug, Args)]
pub struct SuiteArgs {
    /// Instead of a manifest: one suite of this directory, run by FRAMEWORK (nextest, pytest,
    /// go, ...: a manifest's `framework:` names) with ARGS for its listing and its batches, e.g.
    /// `--tests pytest tests/` or `--tests go ./...`. The directory is shipped to the workers.
    /// Give it last: it takes every argument after it. `--nextest ARGS`, `--pytest ARGS` and
    /// `--go-test ARGS` are `--tests nextest ARGS`, `--tests pytest ARGS`, `--tests go ARGS`.
    #[arg(long, num_args = 1.., allow_hyphen_values = true, value_name = "FRAMEWORK [ARGS]",
          conflicts_with_all = ["nextest", "pytest", "go_test"])]
    pub tests: Option<Vec<String>>,
    /// Instead of a manifest: one nextest suite of this directory, with these arguments for
    /// `cargo nextest list`/`run` (e.g. `--nextest --workspace`); the directory is shipped to
    /// the workers beside the archive. Give it last: it takes every argument after it.
    #[arg(long, num_args = 0.., allow_hyphen_values = true, value_name = "ARGS",
          conflicts_with_all = ["pytest", "go_test"])]
    pub nextest: Option<Vec<String>>,
    /// Instead of a manifest: one pytest suite of this directory (e.g. `--pytest tests/`); the
    /// directory is shipped to the workers. Give it last.
    #[arg(long, num_args = 0.., allow_hyphen_values = true, value_name = "ARGS",
          conflicts_with = "go_test")]
    pub pytest: Option<Vec<String>>,
    /// Instead of a manifest: one go test suite of these packages (default `./...`); the
    /// directory is shipped to the workers. Give it last.
    #[arg(long, num_args = 0.., allow_hyphen_values = true, value_name = "PKGS")]
    pub go_test: Option<Vec<String>>,
    /// Retries of a failed test, for the shorthands.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub test_retries: u32,
    /// Whether a test that passed only on a retry passes the run.
    #[arg(long, value_enum, default_value = "pass", value_name = "pass|fail")]
    pub flaky_result: FlakyArg,
    /// Read test estimates from FILE (a `ca-timings` document; a missing file is a first run).
    #[arg(long, value_name = "FILE")]
    pub timings: Option<PathBuf>,
    /// Write the timing history, this run's durations added, to FILE at the end.
    #[arg(long, value_name = "FILE")]
    pub write_timings: Option<PathBuf>,
    /// `auto`: every suite quarantines tests by flake rate (a quarantined test runs, but its
    /// failure does not fail the run); `off`: none is quarantined, whatever the manifest says.
    #[arg(long, value_enum, value_name = "auto|off")]
    pub quarantine: Option<QuarantineArg>,
    /// Quarantine the test ids in FILE (one a line; blank lines and lines starting with `#`
    /// are left out) in every suite, whatever their history.
    #[arg(long, value_name = "FILE")]
    pub quarantine_file: Option<PathBuf>,
    /// Run each test the history has never seen several times (a suite's `new-test-runs`, 3 by
    /// default), on different workers where there are any: outcomes that disagree make it
    /// flaky. At most `new-test-share` (10 %) of a suite's time goes to these repeats.
    #[arg(long)]
    pub detect_new_flakes: bool,
    /// On a re-run (GITHUB_RUN_ATTEMPT above 1): `failed` runs only the tests that failed or
    /// never ran before, `all` every test.
    #[arg(long, default_value = "failed", value_name = "failed|all")]
    pub rerun: RerunMode,
}

/// The framework `--tests NAME` names; `command` and unknown names are bad input.
fn tests_framework(name: &str) -> Result<Framework, Failure> {
    let listed: Vec<&str> = Framework::NAMES
        .into_iter()
        .filter(|n| *n != "command")
        .collect();
    Framework::named(name).ok_or_else(|| {
        Failure::bad_input(if name == "command" {
            "--tests: a `command` suite needs its `list` and `run` commands: write it in a \
             manifest's `suites:`"
                .to_owned()
        } else {
            format!(
                "--tests: '{name}' is not a test framework: give one of {} first, e.g. \
                 `--tests pytest tests/`",
                listed.join(", ")
            )
        })
    })
}

impl SuiteArgs {
    /// The one-suite manifest of the shorthand given, for the current directory.
    pub fn manifest(&self) -> Result<Manifest, Failure> {
        let (framework, args, flag) = match (&self.tests, &self.nextest, &self.pytest) {
            (Some(given), _, _) => {
                let (name, args) = match given.split_first() {
                    Some((name, args)) => (name.as_str(), args),
                    None => ("", &[][..]),
                };
                (tests_framework(name)?, args.to_vec(), "--tests")
            }
            (_, Some(args), _) => (Framework::Nextest, args.clone(), "--nextest"),
            (_, _, Some(args)) => (Framework::Pytest, args.clone(), "--pytest"),
            _ => match &self.go_test {
                Some(args) => (Framework::Go, args.clone(), "--go-test"),
                None => {
                    return Err(Failure::bad_input(
                        "give a MANIFEST, --commands FILE or a suite",
                    ));
                }
            },
        };
        let base_dir =
            std::env::current_dir().map_err(Failure::io("cannot read the current directory"))?;
        // The batches run in the source directory (nextest remaps its workspace onto it).
        let layers = BTreeMap::from([(
            "checkout".to_string(),
            LayerDef {
                paths: vec![PathBuf::from(".")],
                listed: Listed::Entries,
            },
        )]);
        let split = framework.default_split();
        let session = framework.keeps_sessions();
        let suite = SuiteDef {
            suite: Suite {
                name: framework.name().to_string(),
                framework,
                args,
            },
            layers: layers.keys().cloned().collect(),
            batch: None,
            retries: self.test_retries,
            split,
            timeout: DEFAULT_TEST_TIMEOUT,
            env: BTreeMap::new(),
            secret_env: Default::default(),
            isolation: Default::default(),
            session,
            quarantine: Default::default(),
            new_tests: Default::default(),
        };
        Ok(Manifest {
            path: PathBuf::from(flag),
            base_dir,
            layers,
            jobs: Vec::new(),
            suites: vec![suite],
            defaults: Default::default(),
        })
    }

    /// `manifest` with `--quarantine`, `--quarantine-file` and `--detect-new-flakes` applied to
    /// each of its suites.
    pub fn apply_flaky_flags(&self, manifest: &mut Manifest) -> Result<(), Failure> {
        let ids = match &self.quarantine_file {
            Some(path) => quarantine_ids(path)?,
            None => Vec::new(),
        };
        for suite in &mut manifest.suites {
            suite.new_tests.detect |= self.detect_new_flakes;
            let policy = &mut suite.quarantine;
            match self.quarantine {
                Some(QuarantineArg::Auto) => policy.auto = true,
                Some(QuarantineArg::Off) => {
                    policy.auto = false;
                    policy.tests.clear();
                    continue;
                }
                None => {}
            }
            policy.tests.extend(ids.iter().cloned());
        }
        Ok(())
    }

    /// The `--flaky-result` rule.
    pub fn flaky(&self) -> FlakyResult {
        match self.flaky_result {
            FlakyArg::Pass => FlakyResult::Pass,
            FlakyArg::Fail => FlakyResult::Fail,
        }
    }

    /// Where the run's history is read from and written to, for `cluster`.
    pub fn history_source(&self, cluster: &str) -> HistorySource {
        HistorySource {
            timings_file: self.timings.clone(),
            write_timings: self.write_timings.clone(),
            cluster: cluster.to_owned(),
        }
    }
}

/// The ids of a `--quarantine-file`: one a line, blank lines and `#` comments left out.
fn quarantine_ids(path: &std::path::Path) -> Result<Vec<String>, Failure> {
    let bytes = cluster_action::input_file::read_bounded(path, MAX_QUARANTINE_FILE_BYTES)
        .map_err(|e| Failure::bad_input(format!("--quarantine-file {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Failure::bad_input(format!(
            "--quarantine-file {} is not UTF-8 text: give one test id a line",
            path.display()
        ))
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarantine_file_gives_one_id_a_line_without_blanks_or_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.txt");
        std::fs::write(&path, "# flaky on CI\ntests/a.py::test_x\n\n  b::c  \n").unwrap();
        assert_eq!(
            quarantine_ids(&path).unwrap(),
            ["tests/a.py::test_x", "b::c"]
        );
        let err = quarantine_ids(&dir.path().join("none")).unwrap_err();
        assert!(err.to_string().contains("--quarantine-file"), "{err}");
    }
}
