//! The `cluster-action` command line.

fn main() {}
