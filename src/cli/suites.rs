//! The flags of `run` and `local` for test suites: the one-suite shorthand (`--tests FRAMEWORK
//! [ARGS]…`, with `--nextest`, `--pytest` and `--go-test` as its aliases), timing history files
//! and `--flaky-result`.

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
