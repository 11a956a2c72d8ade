//! Reports of a run: JSON, JUnit XML, the job summary table, CI log lines and annotations.
