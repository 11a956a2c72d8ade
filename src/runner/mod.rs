//! The runner: reads a manifest, submits its jobs to the broker, follows progress, brings
//! back outputs and reports.

pub mod duration;
pub mod machine;
pub mod manifest;
pub mod outputs_dir;
pub mod progress;
pub mod report;
pub mod session;
pub mod suite_run;
