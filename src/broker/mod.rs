//! The broker: accepts workers and runners on an artifact-stream listener and schedules.

pub mod scheduler;
