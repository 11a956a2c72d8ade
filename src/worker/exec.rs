//! Running one job attempt: a process group, a time limit, captured output.
