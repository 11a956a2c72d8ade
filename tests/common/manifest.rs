//! Manifests for the end-to-end tests: YAML text of jobs and defaults, and the files of the
//! `data` layer several of them use.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::cluster::Scratch;

/// `text` as a double-quoted YAML scalar (JSON's escapes are YAML's too).
pub fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// The `run` of a `command` suite that reports every test it is given as passed.
pub const REPORT_EACH_PASSED: &str = r#"{ echo '<testsuite>'; for t in "$@"; do echo "<testcase name='$t'/>"; done; echo '</testsuite>'; } > "$CLUSTER_JUNIT""#;

/// A manifest of one `command` suite, `r`, of the tests `ids`, its batches running the shell
/// script `run` with their tests' ids as arguments.
pub fn command_suite(ids: &[&str], run: &str) -> String {
    let list = quoted(&format!("printf '{}\\n'", ids.join("\\n")));
    let run = quoted(run);
    format!("suites:\n  - name: r\n    framework: command\n    list: {list}\n    run: {run}\n")
}

/// A manifest head whose `defaults` give every job `$VAR`, the directory `dir` (more
/// `defaults` keys may follow, indented by two spaces).
pub fn defaults_env(var: &str, dir: &Path) -> String {
    let dir = quoted(dir.to_str().unwrap());
    format!("defaults:\n  env: {{ {var}: {dir} }}\n")
}

/// A manifest: `head` (defaults, layers), then one job per `(name, run, extra keys)`.
pub fn manifest(head: &str, jobs: &[(String, String, String)]) -> String {
    let mut text = format!("{head}jobs:\n");
    for (name, run, extra) in jobs {
        text.push_str(&format!("  - name: {name}\n    run: {}\n", quoted(run)));
        for line in extra.lines() {
            text.push_str(&format!("    {line}\n"));
        }
    }
    text
}

/// Writes the files of the `data` layer: text files, a binary file and an executable script
/// checking them (`./data/check.sh K SHA256`); returns the binary file's SHA-256 in hex.
pub fn write_data_layer(scratch: &Scratch) -> String {
    for k in 0..10 {
        scratch.write(&format!("data/f{k}.txt"), format!("layer-content-{k}\n"));
    }
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    scratch.write("data/sub/bytes.bin", &bytes);
    let check = scratch.write(
        "data/check.sh",
        "#!/bin/bash\n\
         set -e\n\
         test \"$(cat data/f$1.txt)\" = \"layer-content-$1\"\n\
         test \"$(sha256sum < data/sub/bytes.bin)\" = \"$2  -\"\n",
    );
    fs::set_permissions(&check, fs::Permissions::from_mode(0o755)).unwrap();
    hex::encode(Sha256::digest(&bytes))
}
