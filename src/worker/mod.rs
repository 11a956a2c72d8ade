//! The worker: runs assigned jobs in their own directories and process groups.

pub mod exec;
pub mod output;
