//! The per-test timeout of a batch: a watchdog in the batch's shell that stops the framework
//! when its report (the progress it streams until its JUnit replaces it) has not grown for
//! the suite's `timeout`, and says so in the report, so that the test then running is
//! `timed_out` while the tests it finished keep their results.
//!
//! A test's progress line is written when it ends, so a report that stays the same for the
//! whole timeout means that the running test has run at least that long.

use std::time::Duration;

/// The line the watchdog appends to the report, followed by the timeout in seconds.
const MARK: &str = "[cluster-action: no test finished for the per-test timeout]";

/// `command` (a batch's `bash -c` script, writing its report to `$CLUSTER_JUNIT`) run under
/// the watchdog: checked every second, it ends the batch (exit 124; the worker then kills
/// what is left of its process group) once the report has not grown for `timeout`, rounded
/// up to whole seconds.
pub(super) fn guard(command: &str, timeout: Duration) -> String {
    let seconds = timeout.as_millis().div_ceil(1000).max(1);
    let report = super::REPORT_ENV;
    format!(
        "( {command}\n) &\n\
         run=$!\n\
         size=-1\n\
         since=$SECONDS\n\
         while kill -0 \"$run\" 2>/dev/null; do\n\
         \x20 now=$(wc -c 2>/dev/null < \"${report}\" || echo 0)\n\
         \x20 if [ \"$now\" != \"$size\" ]; then size=$now; since=$SECONDS\n\
         \x20 elif [ $((SECONDS - since)) -ge {seconds} ]; then\n\
         \x20   printf '\\n%s %s\\n' '{MARK}' {seconds} >> \"${report}\"\n\
         \x20   exit 124\n\
         \x20 fi\n\
         \x20 sleep 1\n\
         done\n\
         wait \"$run\"\n"
    )
}

/// The timeout in seconds, when `line` is the watchdog's mark.
pub(super) fn stopped_after(line: &str) -> Option<u64> {
    line.strip_prefix(MARK)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_names_the_timeout() {
        let script = guard("true", Duration::from_millis(2500));
        assert!(script.contains(&format!("'{MARK}' 3 >>")), "{script}");
        assert_eq!(stopped_after(&format!("{MARK} 3")), Some(3));
        assert_eq!(stopped_after("tests/a.py::t PASSED"), None);
    }
}
