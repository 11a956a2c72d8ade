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
/// the watchdog: a background loop that checks the report every second and, once it has not
/// grown for `timeout` (rounded up to whole seconds), appends the mark and signals the batch's
/// shell, which ends at once (exit 124; the worker then kills what is left of its process
/// group). A batch that ends by itself ends the loop: the watchdog adds no time to it.
pub(super) fn guard(command: &str, timeout: Duration) -> String {
    let seconds = timeout.as_millis().div_ceil(1000).max(1);
    let report = super::REPORT_ENV;
    format!(
        "trap 'exit 124' USR1\n\
         ( {command}\n) &\n\
         run=$!\n\
         (\n\
         \x20 size=-1\n\
         \x20 since=$SECONDS\n\
         \x20 while kill -0 \"$run\" 2>/dev/null; do\n\
         \x20   now=$(wc -c 2>/dev/null < \"${report}\" || echo 0)\n\
         \x20   if [ \"$now\" != \"$size\" ]; then size=$now; since=$SECONDS\n\
         \x20   elif [ $((SECONDS - since)) -ge {seconds} ]; then\n\
         \x20     printf '\\n%s %s\\n' '{MARK}' {seconds} >> \"${report}\"\n\
         \x20     kill -USR1 $$\n\
         \x20     exit\n\
         \x20   fi\n\
         \x20   sleep 1\n\
         \x20 done\n\
         ) &\n\
         watch=$!\n\
         wait \"$run\"\n\
         status=$?\n\
         kill \"$watch\" 2>/dev/null\n\
         exit $status\n"
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
