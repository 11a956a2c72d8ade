//! A test's record across runs: how it ended in each of the history's last [`RECORD_RUNS`]
//! runs (passed, failed, flaky: failed then passed within one run), kept as one letter a run so
//! that a suite of 50,000 tests stays a few megabytes, and what follows from it: the flake
//! rate, the runs it was seen in, the last run it was flaky in.

use serde::{Deserialize, Serialize};

use super::results::TestStatus;

/// How many of the history's newest runs a test's record keeps.
pub const RECORD_RUNS: usize = 30;

/// One run of the history: its place in the history's count of runs, and the workflow run
/// it was (none for a local run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRef {
    /// The history's count of runs when it was recorded (1 for the first).
    pub run: u64,
    /// `GITHUB_RUN_ID`, on GitHub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<u64>,
}

impl std::fmt::Display for RunRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.run_id {
            Some(id) => write!(f, "run {id}"),
            None => write!(f, "local run #{}", self.run),
        }
    }
}

/// How a test ended in one run, as its record keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Passed (or was skipped).
    Passed,
    /// Failed every try.
    Failed,
    /// Failed, then passed, within the run.
    Flaky,
    /// Not listed in the run, or never ran to an end.
    Absent,
}

impl RunOutcome {
    /// The outcome of a test's final status in a run.
    pub fn of(status: TestStatus) -> Self {
        match status {
            TestStatus::Passed => Self::Passed,
            TestStatus::Flaky => Self::Flaky,
            TestStatus::Failed | TestStatus::TimedOut => Self::Failed,
            TestStatus::NotRun => Self::Absent,
        }
    }

    /// Its letter in a record.
    fn letter(self) -> char {
        match self {
            Self::Passed => 'p',
            Self::Failed => 'f',
            Self::Flaky => 'k',
            Self::Absent => '.',
        }
    }

    /// The outcome a letter stands for (an unknown letter: absent).
    fn from_letter(letter: char) -> Self {
        match letter {
            'p' => Self::Passed,
            'f' => Self::Failed,
            'k' => Self::Flaky,
            _ => Self::Absent,
        }
    }

    /// Two outcomes of one run (attempts of a re-run): outcomes that disagree are flaky.
    fn merged(self, later: Self) -> Self {
        match (self, later) {
            (Self::Absent, later) => later,
            (earlier, Self::Absent) => earlier,
            (earlier, later) if earlier == later => earlier,
            _ => Self::Flaky,
        }
    }
}

/// A test's outcomes in the history's newest runs, oldest first and aligned on the newest: the
/// last letter is the newest run's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record(String);

impl Record {
    /// A record as its letters were written (cut to the newest [`RECORD_RUNS`]).
    pub fn from_letters(letters: &str) -> Self {
        let mut record = Self(
            letters
                .chars()
                .map(|c| RunOutcome::from_letter(c).letter())
                .collect(),
        );
        record.trim();
        record
    }

    /// Its letters, as written to the history.
    pub fn letters(&self) -> &str {
        &self.0
    }

    /// Adds the outcome of a new run.
    pub fn push(&mut self, outcome: RunOutcome) {
        self.0.push(outcome.letter());
        self.trim();
    }

    /// Merges `outcome` into the newest run's (another attempt of the same run).
    pub fn merge_newest(&mut self, outcome: RunOutcome) {
        let newest = self
            .0
            .pop()
            .map_or(RunOutcome::Absent, RunOutcome::from_letter);
        self.0.push(newest.merged(outcome).letter());
    }

    /// Keeps the newest [`RECORD_RUNS`].
    fn trim(&mut self) {
        let extra = self.0.len().saturating_sub(RECORD_RUNS);
        self.0.drain(..extra);
    }

    /// Its outcomes, newest first.
    fn newest_first(&self) -> impl Iterator<Item = RunOutcome> + '_ {
        self.0.chars().rev().map(RunOutcome::from_letter)
    }

    /// The runs it was seen in (passed, failed or flaky).
    pub fn runs_seen(&self) -> usize {
        self.newest_first()
            .filter(|o| *o != RunOutcome::Absent)
            .count()
    }

    /// The runs it was flaky in.
    pub fn flaky_runs(&self) -> usize {
        self.newest_first()
            .filter(|o| *o == RunOutcome::Flaky)
            .count()
    }

    /// Flaky runs per run seen (0 when never seen).
    pub fn flake_rate(&self) -> f64 {
        match self.runs_seen() {
            0 => 0.0,
            seen => self.flaky_runs() as f64 / seen as f64,
        }
    }

    /// Whether its flake rate is at least `bp` hundredths of a percent (never when not seen).
    pub fn rate_at_least(&self, bp: u32) -> bool {
        let seen = self.runs_seen() as u64;
        seen > 0 && self.flaky_runs() as u64 * 10_000 >= u64::from(bp) * seen
    }

    /// How many runs back (0: the newest) it was last flaky.
    pub fn last_flaky_back(&self) -> Option<usize> {
        self.newest_first().position(|o| o == RunOutcome::Flaky)
    }

    /// The runs it passed cleanly in a row, up to the newest (runs it was absent from do not
    /// break the row).
    pub fn clean_streak(&self) -> usize {
        self.newest_first()
            .filter(|o| *o != RunOutcome::Absent)
            .take_while(|o| *o == RunOutcome::Passed)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flake_rate_counts_flaky_runs_among_the_runs_seen() {
        let record = Record::from_letters("pp.kpf..kp");
        assert_eq!(record.runs_seen(), 7);
        assert_eq!(record.flaky_runs(), 2);
        assert!((record.flake_rate() - 2.0 / 7.0).abs() < 1e-9);
        assert_eq!(record.last_flaky_back(), Some(1));
        assert_eq!(record.clean_streak(), 1);
        assert!(record.rate_at_least(2_857) && !record.rate_at_least(2_858));
        assert!(!Record::default().rate_at_least(0));
        assert_eq!(Record::default().flake_rate(), 0.0);
        assert_eq!(Record::from_letters("kp.p.").clean_streak(), 2);
        assert_eq!(Record::from_letters("ppp").last_flaky_back(), None);
    }

    #[test]
    fn a_record_keeps_the_newest_runs_and_reads_unknown_letters_as_absent() {
        let mut record = Record::default();
        for run in 0..RECORD_RUNS + 5 {
            record.push(if run == 0 {
                RunOutcome::Flaky
            } else {
                RunOutcome::Passed
            });
        }
        assert_eq!(record.letters().len(), RECORD_RUNS);
        assert_eq!(record.flaky_runs(), 0, "the oldest run fell out");
        let long = "k".repeat(RECORD_RUNS + 3);
        assert_eq!(Record::from_letters(&long).letters().len(), RECORD_RUNS);
        assert_eq!(Record::from_letters("pX?f").letters(), "p..f");
    }

    #[test]
    fn outcomes_of_one_run_that_disagree_are_flaky() {
        let mut record = Record::from_letters("pf");
        record.merge_newest(RunOutcome::Passed);
        assert_eq!(record.letters(), "pk");
        let mut record = Record::from_letters("p.");
        record.merge_newest(RunOutcome::Failed);
        assert_eq!(record.letters(), "pf");
        record.merge_newest(RunOutcome::Absent);
        assert_eq!(record.letters(), "pf");
        let mut empty = Record::default();
        empty.merge_newest(RunOutcome::Passed);
        assert_eq!(empty.letters(), "p");
        assert_eq!(
            RunRef {
                run: 3,
                run_id: None
            }
            .to_string(),
            "local run #3"
        );
        assert_eq!(
            RunRef {
                run: 3,
                run_id: Some(99)
            }
            .to_string(),
            "run 99"
        );
    }
}
