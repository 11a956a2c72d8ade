//! The flags of `run` and `local` for test suites: the one-suite shorthand (`--tests FRAMEWORK
//! [ARGS]…`, with `--nextest`, `--pytest` and `--go-test` as its aliases), timing history files,
//! `--flaky-result`, quarantine (`--quarantine`, `--quarantine-file`) and new tests
//! (`--detect-new-flakes`), whose settings are checked as a manifest's are.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use cluster_action::history::HistorySource;
use cluster_action::history::results::RerunMode;
use cluster_action::layer::Listed;
use cluster_action::runner::manifest::{
    DEFAULT_TEST_TIMEOUT, FlakySetting, LayerDef, Manifest, SuiteDef,
};
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

/// `--quarantine`'s mode: quarantine by flake rate, or no quarantine at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuarantineMode {
    /// Every suite quarantines by flake rate (`quarantine: {auto: true}`).
    Auto,
    /// No test is quarantined, whatever the manifest says.
    Off,
}

/// A setting a flag gives every suite, checked: what to set, and to what.
type Setting = (FlakySetting, u32);

/// `--quarantine`, read: its mode and its settings, each over every suite's.
#[derive(Debug, Default, PartialEq, Eq)]
struct QuarantineFlag {
    mode: Option<QuarantineMode>,
    settings: Vec<Setting>,
}

/// The settings a flag takes: each one's name, the form of its value (for errors) and what it
/// sets.
type SettingNames = [(&'static str, &'static str, FlakySetting)];

/// The settings `--quarantine` takes (named as the manifest's keys).
const QUARANTINE_SETTINGS: [(&str, &str, FlakySetting); 3] = [
    ("min-runs", "N", FlakySetting::MinRuns),
    ("flake-rate", "RATE", FlakySetting::FlakeRate),
    ("release-after", "N", FlakySetting::ReleaseAfter),
];

/// `--quarantine` written right, for its errors.
const QUARANTINE_EXAMPLE: &str = "--quarantine auto,min-runs=10,flake-rate=10%,release-after=20";

/// The settings `--detect-new-flakes` takes.
const NEW_TEST_SETTINGS: [(&str, &str, FlakySetting); 2] = [
    ("runs", "N", FlakySetting::NewTestRuns),
    ("share", "SHARE", FlakySetting::NewTestShare),
];

/// `--detect-new-flakes` with settings written right, for its errors.
const NEW_TEST_EXAMPLE: &str = "--detect-new-flakes=runs=3,share=10%";

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
    /// Settings, comma-separated, replace every suite's (the manifest's keys): `min-runs=N`
    /// (runs of history before a rate counts, default 10), `flake-rate=RATE` (quarantined at
    /// or above, default 10%), `release-after=N` (clean runs in a row to leave, default 20, at
    /// most 30); e.g. `--quarantine auto,min-runs=5,flake-rate=20%`.
    #[arg(long, value_name = "auto|off|SETTINGS")]
    pub quarantine: Option<String>,
    /// Quarantine the test ids in FILE (one a line; blank lines and lines starting with `#`
    /// are left out) in every suite, whatever their history.
    #[arg(long, value_name = "FILE")]
    pub quarantine_file: Option<PathBuf>,
    /// Run each test the history has never seen several times (a suite's `new-test-runs`, 3 by
    /// default), on different workers where there are any: outcomes that disagree make it
    /// flaky. At most `new-test-share` (10 %) of a suite's time goes to these repeats.
    /// Settings after `=`, comma-separated, replace every suite's: `runs=N` (2 to 10),
    /// `share=SHARE`; e.g. `--detect-new-flakes=runs=5,share=20%`.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "",
          value_name = "SETTINGS")]
    pub detect_new_flakes: Option<String>,
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
    /// each of its suites: their settings over the suite's.
    pub fn apply_flaky_flags(&self, manifest: &mut Manifest) -> Result<(), Failure> {
        let quarantine = match &self.quarantine {
            Some(text) => quarantine_flag(text)?,
            None => QuarantineFlag::default(),
        };
        let new_tests = match &self.detect_new_flakes {
            Some(text) => Some(new_test_settings(text)?),
            None => None,
        };
        let ids = match &self.quarantine_file {
            Some(path) => quarantine_ids(path)?,
            None => Vec::new(),
        };
        for suite in &mut manifest.suites {
            suite.new_tests.detect |= new_tests.is_some();
            for &(setting, value) in quarantine.settings.iter().chain(new_tests.iter().flatten()) {
                setting.set(value, &mut suite.quarantine, &mut suite.new_tests);
            }
            let policy = &mut suite.quarantine;
            match quarantine.mode {
                Some(QuarantineMode::Auto) => policy.auto = true,
                Some(QuarantineMode::Off) => {
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

/// The value of `flag`, comma-separated: its words (each one of `words`) and its settings
/// (`NAME=VALUE`, one of `names`), checked; `example` is the flag written right.
fn flag_settings<'a>(
    flag: &str,
    text: &'a str,
    (words, names): (&[&str], &SettingNames),
    example: &str,
) -> Result<(Vec<&'a str>, Vec<Setting>), Failure> {
    let mut given = Vec::new();
    let mut settings = Vec::new();
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        if words.contains(&part) {
            given.push(part);
        } else if let Some(&(_, _, setting)) = names.iter().find(|(n, ..)| *n == name.trim()) {
            let value = setting.parse(value).ok_or_else(|| {
                Failure::bad_input(format!(
                    "{flag}: '{part}': {} cannot be '{}': {}",
                    name.trim(),
                    value.trim(),
                    setting.hint()
                ))
            })?;
            settings.push((setting, value));
        } else {
            let forms = words
                .iter()
                .map(|word| word.to_string())
                .chain(names.iter().map(|(name, form, _)| format!("{name}={form}")));
            return Err(Failure::bad_input(format!(
                "{flag}: '{part}' is none of {}: e.g. `{example}`",
                forms.collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok((given, settings))
}

/// `--quarantine TEXT`: `auto` or `off`, and/or settings.
fn quarantine_flag(text: &str) -> Result<QuarantineFlag, Failure> {
    let flag = "--quarantine";
    let known = (&["auto", "off"][..], &QUARANTINE_SETTINGS[..]);
    let (words, settings) = flag_settings(flag, text, known, QUARANTINE_EXAMPLE)?;
    let refuse = |why: &str| {
        Failure::bad_input(format!(
            "{flag}: '{text}' {why}: give auto or off and/or settings, e.g. `{QUARANTINE_EXAMPLE}`"
        ))
    };
    let mode = match words[..] {
        [] if settings.is_empty() => return Err(refuse("says nothing")),
        [] => None,
        ["auto"] => Some(QuarantineMode::Auto),
        ["off"] if settings.is_empty() => Some(QuarantineMode::Off),
        ["off"] => return Err(refuse("gives settings with off, which quarantines nothing")),
        _ => return Err(refuse("gives more than one of auto and off")),
    };
    Ok(QuarantineFlag { mode, settings })
}

/// `--detect-new-flakes=TEXT`: its settings (none when bare).
fn new_test_settings(text: &str) -> Result<Vec<Setting>, Failure> {
    let known = (&[][..], &NEW_TEST_SETTINGS[..]);
    let (_, settings) = flag_settings("--detect-new-flakes", text, known, NEW_TEST_EXAMPLE)?;
    Ok(settings)
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

    /// The suite flags beside a manifest, as `run` and `local` take them.
    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[command(flatten)]
        suites: SuiteArgs,
        manifest: Option<PathBuf>,
    }

    /// `args` parsed as the command line gives them.
    fn parsed(args: &[&str]) -> Flags {
        <Flags as clap::Parser>::try_parse_from(["ca"].iter().chain(args)).unwrap()
    }

    /// The message of a refusal.
    fn refused(result: Result<impl std::fmt::Debug, Failure>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn quarantine_takes_auto_or_off_and_the_manifests_settings() {
        use FlakySetting::*;
        let auto = quarantine_flag("auto").unwrap();
        assert_eq!(
            (auto.mode, auto.settings),
            (Some(QuarantineMode::Auto), vec![])
        );
        assert_eq!(
            quarantine_flag("off").unwrap().mode,
            Some(QuarantineMode::Off)
        );
        let all = quarantine_flag("auto, min-runs=5,flake-rate=20%,release-after=10").unwrap();
        assert_eq!(all.mode, Some(QuarantineMode::Auto));
        assert_eq!(
            all.settings,
            [(MinRuns, 5), (FlakeRate, 2_000), (ReleaseAfter, 10)]
        );
        let alone = quarantine_flag("flake-rate=0.25").unwrap();
        assert_eq!(
            (alone.mode, alone.settings),
            (None, vec![(FlakeRate, 2_500)])
        );
    }

    #[test]
    fn detect_new_flakes_takes_runs_and_share_or_nothing() {
        assert_eq!(new_test_settings("").unwrap(), []);
        assert_eq!(
            new_test_settings("runs=5,share=20%").unwrap(),
            [
                (FlakySetting::NewTestRuns, 5),
                (FlakySetting::NewTestShare, 2_000)
            ]
        );
    }

    #[test]
    fn bad_settings_name_the_flag_the_part_and_the_form() {
        let quarantine = |text| refused(quarantine_flag(text));
        let new_tests = |text| refused(new_test_settings(text));
        let cases = [
            (
                quarantine("auto,min-runs=0"),
                "--quarantine: 'min-runs=0': min-runs cannot be '0': give how many runs of history",
            ),
            (
                quarantine("flake-rate=lots"),
                "flake-rate cannot be 'lots': give a percentage above 0 and at most 100%",
            ),
            (
                quarantine("release-after=31"),
                "release-after cannot be '31': give 1 to 30 clean runs",
            ),
            (quarantine("min-runs="), "min-runs cannot be ''"),
            (
                quarantine("sometimes"),
                "--quarantine: 'sometimes' is none of auto, off, min-runs=N, flake-rate=RATE, release-after=N: e.g. `--quarantine auto,min-runs=10",
            ),
            (
                quarantine("auto,min-run=5"),
                "'min-run=5' is none of auto, off",
            ),
            (
                quarantine("auto,off"),
                "--quarantine: 'auto,off' gives more than one of auto and off: give auto or off",
            ),
            (
                quarantine("off,min-runs=3"),
                "gives settings with off, which quarantines nothing",
            ),
            (quarantine(" , "), "says nothing"),
            (
                new_tests("runs=1"),
                "--detect-new-flakes: 'runs=1': runs cannot be '1': give how many times a new test runs in all, 2 to 10",
            ),
            (
                new_tests("share=0%"),
                "share cannot be '0%': give a percentage above 0",
            ),
            (
                new_tests("true"),
                "--detect-new-flakes: 'true' is none of runs=N, share=SHARE: e.g. `--detect-new-flakes=runs=3,share=10%`",
            ),
            (
                new_tests("new-test-runs=5"),
                "'new-test-runs=5' is none of runs=N",
            ),
        ];
        for (message, error) in cases {
            assert!(message.contains(error), "{error}: {message}");
        }
    }

    #[test]
    fn detect_new_flakes_takes_settings_only_after_an_equals_sign() {
        let bare = parsed(&["--detect-new-flakes", "m.yml"]);
        assert_eq!(bare.suites.detect_new_flakes.as_deref(), Some(""));
        assert_eq!(bare.manifest, Some(PathBuf::from("m.yml")));
        let before = parsed(&["--detect-new-flakes", "--pytest", "-k", "x"]);
        assert_eq!(before.suites.detect_new_flakes.as_deref(), Some(""));
        assert_eq!(before.suites.pytest, Some(vec!["-k".into(), "x".into()]));
        let set = parsed(&["--detect-new-flakes=runs=5", "m.yml"]);
        assert_eq!(set.suites.detect_new_flakes.as_deref(), Some("runs=5"));
        assert_eq!(set.manifest, Some(PathBuf::from("m.yml")));
        assert_eq!(parsed(&["m.yml"]).suites.detect_new_flakes, None);
    }

    #[test]
    fn flag_settings_replace_every_suites_and_bad_ones_are_bad_input() {
        let flags = parsed(&[
            "--quarantine",
            "min-runs=3,flake-rate=20%",
            "--detect-new-flakes=runs=5",
            "--pytest",
        ]);
        let mut manifest = flags.suites.manifest().unwrap();
        manifest.suites[0].quarantine.release_after = 7;
        flags.suites.apply_flaky_flags(&mut manifest).unwrap();
        let suite = &manifest.suites[0];
        let quarantine = &suite.quarantine;
        assert!(!quarantine.auto, "settings alone leave auto as it was");
        let rate = (quarantine.min_runs, quarantine.flake_rate_bp);
        assert_eq!((rate, quarantine.release_after), ((3, 2_000), 7));
        let new_tests = &suite.new_tests;
        let default_share = cluster_action::suite::new_tests::NewTestPolicy::default().share_bp;
        assert_eq!(
            (new_tests.detect, new_tests.runs, new_tests.share_bp),
            (true, 5, default_share)
        );
        let bad = parsed(&["--quarantine", "auto,flake-rate=200%", "--pytest"]);
        let mut manifest = bad.suites.manifest().unwrap();
        let failure = bad.suites.apply_flaky_flags(&mut manifest).unwrap_err();
        assert_eq!(failure.exit_code(), super::super::exit::BAD_INPUT);
    }
}
