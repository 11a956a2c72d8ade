//! The runner: reads a manifest, submits its jobs to the broker, follows progress, brings
//! back outputs and reports.

pub mod machine;
pub mod manifest;
pub mod progress;
pub mod report;
pub mod session;
pub mod suite_run;
pub mod warm_up;
