//! The manifest and commands file as a user writes them: what is accepted, how defaults apply,
//! and what each mistake is called (with file, line and column) before anything runs.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cluster_action::layer::Digest;
use cluster_action::proto::JobIndex;
use cluster_action::runner::manifest::{
    self, DEFAULT_RETRIES, DEFAULT_TIMEOUT, Manifest, ManifestError, from_commands, load,
};

/// A project directory with a few files for layers to name.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "bin/app",
        "fixtures/a.txt",
        "fixtures/b.txt",
        "fixtures/sub/c.txt",
        "fixtures/.hidden",
    ] {
        let path = dir.path().join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, file).unwrap();
    }
    dir
}

fn parse_in(dir: &Path, yaml: &str) -> Result<Manifest, ManifestError> {
    manifest::parse(yaml, Path::new("jobs.yml"), dir)
}

fn parse(yaml: &str) -> Manifest {
    let dir = project();
    parse_in(dir.path(), yaml).unwrap_or_else(|e| panic!("{e}"))
}

/// The full error message for `yaml`, which must be refused.
fn refuse(yaml: &str) -> String {
    let dir = project();
    match parse_in(dir.path(), yaml) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

fn assert_has(message: &str, expected: &str) {
    assert!(
        message.contains(expected),
        "expected {expected:?} in:\n{message}"
    );
}

#[test]
fn jobs_inherit_defaults_and_override_them() {
    let m = parse(
        "\
defaults:
  timeout: 10m
  retries: 2
  env: { A: from-defaults, B: from-defaults }
  layers: [app]
layers:
  app: { paths: [bin/app] }
  data: { paths: [fixtures] }
jobs:
  - name: inherits
    run: ./bin/app
  - name: overrides
    run: ./bin/app --fast
    timeout: 90
    retries: 0
    env: { B: from-job, C: '1.10' }
    layers: [data, app]
    estimate: 1h30m
    outputs: [reports/*.xml]
  - name: no-layers
    run: 'true'
    layers: []
",
    );
    let [inherits, overrides, bare] = &m.jobs[..] else {
        panic!("{:?}", m.jobs)
    };
    assert_eq!(inherits.timeout, Duration::from_secs(600));
    assert_eq!(inherits.retries, 2);
    assert_eq!(inherits.layers, ["app"]);
    assert_eq!(inherits.env["A"], "from-defaults");
    assert_eq!(inherits.estimate, None);
    assert!(inherits.outputs.is_empty());

    assert_eq!(overrides.timeout, Duration::from_secs(90));
    assert_eq!(overrides.retries, 0);
    assert_eq!(overrides.layers, ["data", "app"]);
    let env: Vec<(&str, &str)> = overrides
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [("A", "from-defaults"), ("B", "from-job"), ("C", "1.10")]
    );
    assert_eq!(overrides.estimate, Some(Duration::from_secs(5400)));
    assert_eq!(overrides.outputs, ["reports/*.xml"]);

    assert!(bare.layers.is_empty());
}

#[test]
fn unset_settings_take_the_documented_defaults() {
    let m = parse("jobs: [{name: a, run: 'true'}]");
    let job = &m.jobs[0];
    assert_eq!(job.timeout, DEFAULT_TIMEOUT);
    assert_eq!(DEFAULT_TIMEOUT, Duration::from_secs(30 * 60));
    assert_eq!(job.retries, DEFAULT_RETRIES);
    assert_eq!(DEFAULT_RETRIES, 0);
    assert!(job.env.is_empty() && job.layers.is_empty() && m.layers.is_empty());
}

#[test]
fn scalars_are_taken_as_written() {
    let m = parse("jobs: [{name: 007, run: echo 1, env: {N: 1, B: true, F: 1.10, E: ''}}]");
    let job = &m.jobs[0];
    assert_eq!(job.name, "007");
    assert_eq!(job.env["N"], "1");
    assert_eq!(job.env["B"], "true");
    assert_eq!(job.env["F"], "1.10");
    assert_eq!(job.env["E"], "");
}

#[test]
fn layer_globs_expand_relative_to_the_manifest_directory() {
    let m = parse(
        "\
layers:
  files: { paths: ['fixtures/*.txt', 'fixtures/sub/*', bin/app, 'fixtures/a.txt'] }
  dir: { paths: [fixtures, ./bin] }
  hidden: { paths: ['fixtures/.h*'] }
  deep: { paths: ['**/c.txt'] }
  all: { paths: ['.'] }
jobs: [{name: a, run: 'true', layers: [files]}]
",
    );
    let paths = |name: &str| -> Vec<PathBuf> { m.layers[name].paths.clone() };
    assert_eq!(
        paths("files"),
        [
            "bin/app",
            "fixtures/a.txt",
            "fixtures/b.txt",
            "fixtures/sub/c.txt"
        ]
        .map(PathBuf::from),
        "expanded, relative, sorted, without duplicates"
    );
    assert_eq!(paths("dir"), ["bin", "fixtures"].map(PathBuf::from));
    assert_eq!(paths("hidden"), [PathBuf::from("fixtures/.hidden")]);
    assert_eq!(paths("deep"), [PathBuf::from("fixtures/sub/c.txt")]);
    assert_eq!(paths("all"), [PathBuf::from(".")]);
}

#[test]
fn an_empty_base_dir_means_the_current_directory() {
    let m = manifest::parse(
        "layers: {src: {paths: [src/lib.rs, 'tests/']}}\njobs: [{name: a, run: 'true'}]",
        Path::new("jobs.yml"),
        Path::new(""),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.base_dir, Path::new("."));
    assert_eq!(
        m.layers["src"].paths,
        ["src/lib.rs", "tests"].map(PathBuf::from)
    );
}

#[test]
fn load_resolves_layers_against_the_manifest_directory_not_the_current_one() {
    let dir = project();
    let file = dir.path().join("ci/jobs.yml");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::create_dir_all(dir.path().join("ci/tools")).unwrap();
    fs::write(dir.path().join("ci/tools/x.sh"), "").unwrap();
    fs::write(
        &file,
        "layers: {tools: {paths: [tools]}}\njobs: [{name: a, run: 'true'}]\n",
    )
    .unwrap();
    let m = load(&file).unwrap();
    assert_eq!(m.path, file);
    assert_eq!(m.base_dir, dir.path().join("ci"));
    assert_eq!(m.layers["tools"].paths, [PathBuf::from("tools")]);
}

#[test]
fn a_missing_file_is_named() {
    let err = load(Path::new("/nonexistent/jobs.yml")).unwrap_err();
    assert!(matches!(err, ManifestError::Read { .. }));
    assert_has(&err.to_string(), "cannot read /nonexistent/jobs.yml");
}

#[test]
fn unknown_keys_are_refused_with_their_location_and_the_allowed_keys() {
    let err = refuse("jobs:\n  - name: a\n    run: 'true'\n    timout: 5m\n");
    assert_has(&err, "jobs.yml:4:5: jobs[0]: unknown field `timout`");
    assert_has(&err, "`timeout`");
    assert_has(&err, "hint: check the spelling");

    let err = refuse("default:\n  retries: 1\njobs: [{name: a, run: 'true'}]\n");
    assert_has(
        &err,
        "jobs.yml:1:1: unknown field `default`, expected one of",
    );
    let err = refuse("layers: {app: {path: [bin]}}\njobs: [{name: a, run: 'true'}]\n");
    assert_has(&err, "unknown field `path`");
}

#[test]
fn duplicate_job_names_point_at_both_definitions() {
    let err = refuse(
        "\
jobs:
  - name: unit-1
    run: 'true'
  - name: unit-2
    run: 'true'
  - name: unit-1
    run: 'false'
",
    );
    assert_has(
        &err,
        "jobs.yml:6:11: job 'unit-1' is defined twice (first at line 2)",
    );
    assert_has(&err, "hint: job names must be unique");
}

#[test]
fn keys_written_twice_are_refused() {
    let err = refuse(
        "layers:\n  app: {paths: [bin]}\n  app: {paths: [fixtures]}\njobs: [{name: a, run: 'true'}]\n",
    );
    assert_has(&err, "jobs.yml:3:3: layers: key 'app' is written twice");
    let err = refuse("jobs: [{name: a, run: 'true', env: {K: 1, K: 2}}]");
    assert_has(&err, "key 'K' is written twice");
    let err = refuse("jobs:\n  - name: a\n    name: b\n    run: 'true'\n");
    assert_has(&err, "jobs.yml:2:5: jobs[0]: duplicate field `name`");
    assert_has(&err, "hint: remove one of them");
}

#[test]
fn missing_or_empty_run_and_name_are_refused() {
    let err = refuse(
        "\
jobs:
  - name: blank
    run: '  '
  - name: absent
  - run: 'true'
  - name: ''
    run: 'true'
  - name: \"tab\\there\"
    run: 'true'
",
    );
    assert_has(
        &err,
        "jobs.yml:3:10: job 'blank' has an empty `run` command",
    );
    assert_has(&err, "jobs.yml:4:5: job 'absent' has no `run` command");
    assert_has(&err, "jobs.yml:5:5: job #3 has no name");
    assert_has(&err, "jobs.yml:6:11: job #4 has an empty name");
    assert_has(
        &err,
        "jobs.yml:8:11: job #5 has a name with a control character: \"tab\\there\"",
    );
}

#[test]
fn bad_durations_say_which_forms_are_accepted() {
    let err = refuse(
        "\
defaults:
  timeout: 10 minutes
jobs:
  - name: a
    run: 'true'
    estimate: 1.5s
  - name: b
    run: 'true'
    timeout: 0s
",
    );
    assert_has(
        &err,
        "jobs.yml:2:12: defaults has a bad timeout: invalid duration '10 minutes': use a \
         whole number with a unit (500ms, 30s, 10m, 1h)",
    );
    assert_has(&err, "1h30m");
    assert_has(
        &err,
        "jobs.yml:6:15: job 'a' has a bad estimate: invalid duration '1.5s'",
    );
    assert_has(&err, "jobs.yml:9:14: job 'b' has a timeout of zero");
}

#[test]
fn undefined_layers_are_named_with_the_defined_ones() {
    let err = refuse(
        "\
defaults:
  layers: [app, missing-default]
layers:
  app: {paths: [bin]}
  data: {paths: [fixtures]}
jobs:
  - name: a
    run: 'true'
    layers: [app, dta]
",
    );
    assert_has(
        &err,
        "jobs.yml:2:17: defaults uses layer 'missing-default', which is not defined",
    );
    assert_has(
        &err,
        "jobs.yml:9:19: job 'a' uses layer 'dta', which is not defined",
    );
    assert_has(&err, "(defined: app, data)");
}

#[test]
fn layer_paths_must_exist_and_stay_inside_the_manifest_directory() {
    let err = refuse(
        "\
layers:
  app:
    paths:
      - target/release/myapp
      - /etc/passwd
      - ../secrets
      - fixtures/../../x
      - 'fixtures/[a'
      - ''
  empty: {paths: []}
jobs: [{name: a, run: 'true'}]
",
    );
    assert_has(
        &err,
        "jobs.yml:4:9: layer 'app': 'target/release/myapp' matches nothing in",
    );
    assert_has(
        &err,
        "jobs.yml:5:9: layer 'app': path '/etc/passwd' is absolute",
    );
    assert_has(
        &err,
        "jobs.yml:6:9: layer 'app': path '../secrets' uses '..'",
    );
    assert_has(
        &err,
        "jobs.yml:7:9: layer 'app': path 'fixtures/../../x' uses '..'",
    );
    assert_has(
        &err,
        "jobs.yml:8:9: layer 'app': 'fixtures/[a' is not a valid glob",
    );
    assert_has(&err, "jobs.yml:9:9: layer 'app' has an empty path");
    assert_has(&err, "jobs.yml:10:18: layer 'empty' lists no paths");
}

#[test]
fn outputs_must_stay_inside_the_job_directory() {
    let err = refuse("jobs: [{name: a, run: 'true', outputs: [/tmp/x, ../y, 'ok/*.xml']}]");
    assert_has(&err, "job 'a' output: path '/tmp/x' is absolute");
    assert_has(&err, "job 'a' output: path '../y' uses '..'");
    assert!(!err.contains("ok/*.xml"), "{err}");
}

#[test]
fn invalid_environment_variable_names_are_refused() {
    let err = refuse("jobs: [{name: a, run: 'true', env: {'A=B': x}}]");
    assert_has(
        &err,
        "job 'a' has an invalid environment variable name \"A=B\"",
    );
}

#[test]
fn a_manifest_without_jobs_is_refused() {
    for yaml in ["", "# nothing yet\n", "jobs: []\n", "layers: {}\n"] {
        let err = refuse(yaml);
        assert_has(&err, "jobs.yml");
        assert_has(&err, "the manifest defines no jobs");
        assert_has(&err, "hint: add at least one entry under `jobs:`");
    }
    assert_has(
        &refuse("jobs: []\n"),
        "jobs.yml:1:7: the manifest defines no jobs",
    );
}

#[test]
fn yaml_syntax_and_type_errors_have_locations() {
    let err = refuse("jobs:\n  - name: a\n  run: x\n");
    assert_has(&err, "jobs.yml:3:3: did not find expected '-' indicator");
    let err = refuse("jobs:\n  - name: a\n    run: 'true'\n    retries: -1\n");
    assert_has(
        &err,
        "jobs.yml:4:14: jobs[0].retries: invalid type: integer `-1`",
    );
    assert_has(&err, "hint: retries is a whole number, 0 or more");
    let err = refuse("- just a list\n");
    assert_has(&err, "jobs.yml:1:1: invalid type: sequence");
}

#[test]
fn every_problem_is_reported_at_once_in_document_order() {
    let err = refuse(
        "\
jobs:
  - name: b
    run: ''
  - name: a
    run: 'true'
    timeout: soon
  - name: a
    run: 'true'
    layers: [nope]
",
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("  hint")).collect();
    assert_eq!(
        lines,
        [
            "jobs.yml:3:10: job 'b' has an empty `run` command",
            "jobs.yml:6:14: job 'a' has a bad timeout: invalid duration 'soon': use a whole \
             number with a unit (500ms, 30s, 10m, 1h), units combined largest first (1h30m, \
             2m15s), or a plain number of seconds (90)",
            "jobs.yml:7:11: job 'a' is defined twice (first at line 4)",
            "jobs.yml:9:14: job 'a' uses layer 'nope', which is not defined",
        ]
    );
}

#[test]
fn many_problems_are_capped_and_counted() {
    let mut yaml = String::from("jobs:\n");
    for i in 0..50 {
        yaml.push_str(&format!("  - name: j{i}\n    run: ''\n"));
    }
    let err = refuse(&yaml);
    assert_eq!(err.matches("has an empty `run` command").count(), 20);
    assert_has(&err, "... and 30 more problems in jobs.yml");
    let ManifestError::Invalid {
        problems, omitted, ..
    } = parse_in(project().path(), &yaml).unwrap_err()
    else {
        panic!()
    };
    assert_eq!((problems.len(), omitted), (20, 30));
    assert_eq!(problems[0].location.map(|l| l.line), Some(3));
}

#[test]
fn a_job_becomes_the_spec_the_broker_receives() {
    let m = parse(
        "\
layers: {app: {paths: [bin]}, data: {paths: [fixtures]}}
jobs:
  - name: unit-1
    run: ./bin/app
    layers: [app, data]
    timeout: 1m30s
    retries: 3
    env: {K: v}
    outputs: [out/*]
    estimate: 500ms
",
    );
    let digests = [Digest("aa".into()), Digest("bb".into())];
    let submission = m.jobs[0].to_spec(JobIndex(7), &digests);
    assert_eq!(submission.index, JobIndex(7));
    let spec = submission.spec;
    assert_eq!(spec.name, "unit-1");
    assert_eq!(spec.run, "./bin/app");
    assert_eq!(spec.layers, digests);
    assert_eq!(spec.timeout_ms, 90_000);
    assert_eq!(spec.retries, 3);
    assert_eq!(spec.env, BTreeMap::from([("K".into(), "v".into())]));
    assert_eq!(spec.outputs, ["out/*"]);
    assert_eq!(spec.estimate_ms, Some(500));
}

#[test]
fn a_commands_file_gives_one_job_per_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("commands.txt");
    let long = format!("echo {}", "x".repeat(100));
    fs::write(
        &file,
        format!("# setup\ncargo test -p foo\n\n   \n  echo a && echo b  \r\n{long}\n#done\n"),
    )
    .unwrap();
    let m = from_commands(&file).unwrap();
    let names: Vec<&str> = m.jobs.iter().map(|j| j.name.as_str()).collect();
    let cut = format!("L6: {}…", &long[..55]);
    assert_eq!(
        names,
        [
            "L2: cargo test -p foo",
            "L5: echo a && echo b",
            cut.as_str()
        ]
    );
    assert_eq!(names[2].chars().count(), 60);
    assert_eq!(m.jobs[1].run, "echo a && echo b");
    assert_eq!(m.jobs[2].run, long);
    assert!(m.layers.is_empty() && m.jobs.iter().all(|j| j.layers.is_empty()));
    assert_eq!(m.jobs[0].timeout, DEFAULT_TIMEOUT);
    assert_eq!(m.base_dir, dir.path());
}

#[test]
fn an_empty_commands_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("commands.txt");
    fs::write(&file, "# nothing\n\n").unwrap();
    let err = from_commands(&file).unwrap_err().to_string();
    assert_has(&err, "commands.txt: the commands file lists no commands");
    assert_has(&err, "hint: write one shell command per line");
}

/// The quickstart example is valid, and every job passes when run the way a worker runs it:
/// in a fresh directory holding its layers, with `bash -c` and the job's environment.
#[test]
fn the_quickstart_example_is_valid_and_all_its_jobs_pass() {
    let m = load(Path::new("examples/quickstart/cluster.yml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.jobs.len(), 12);
    for job in &m.jobs {
        let dir = tempfile::tempdir().unwrap();
        for layer in &job.layers {
            for path in &m.layers[layer].paths {
                copy(&m.base_dir.join(path), &dir.path().join(path));
            }
        }
        let run = Command::new("bash")
            .arg("-c")
            .arg(&job.run)
            .envs(&job.env)
            .env("PAUSE", "0")
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}: {}{}",
            job.name,
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        for pattern in &job.outputs {
            let pattern = format!("{}/{pattern}", dir.path().display());
            assert!(
                glob::glob(&pattern).unwrap().next().is_some(),
                "{}: no output matches {pattern}",
                job.name
            );
        }
    }
}

/// Copies a file or a directory tree.
fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, to).unwrap();
    }
}

#[test]
fn aliases_that_expand_beyond_the_limit_are_refused_before_they_are_expanded() {
    // 1 MiB behind one anchor, used 300 times: a 1 MB file standing for 300 MiB.
    let big = "x".repeat(1 << 20);
    let aliases = vec!["*big"; 300].join(", ");
    let yaml = format!(
        "defaults:\n  env: {{BIG: &big '{big}'}}\njobs:\n  - name: a\n    run: 'true'\n    \
         outputs: [{aliases}]\n"
    );
    let err = refuse(&yaml);
    assert_has(
        &err,
        "with its aliases (*name) expanded, the manifest stands for more than",
    );
    assert_has(&err, "hint: use each anchor (&name) fewer times");
}

#[test]
fn anchors_within_the_limit_are_expanded() {
    let mut yaml = String::from("x-common: &common {A: '1', B: two}\njobs:\n");
    for i in 0..2_000 {
        yaml.push_str(&format!("  - {{name: j{i}, run: 'true', env: *common}}\n"));
    }
    // `x-common` is not a manifest key: the anchor must sit where the schema allows it.
    let yaml = yaml.replacen("x-common: &common {A: '1', B: two}\njobs:\n", "jobs:\n", 1);
    let yaml = yaml.replacen("env: *common}", "env: &common {A: '1', B: two}}", 1);
    let m = parse(&yaml);
    assert_eq!(m.jobs.len(), 2_000);
    assert_eq!(m.jobs[1_999].env["B"], "two");
}

#[test]
fn deeply_nested_flow_collections_are_refused_at_once() {
    // 200 KB of '[' kept the parser busy for over 30 s (its time grows with depth × length).
    let yaml = format!("jobs: {}\n", "[".repeat(200_000));
    let err = refuse(&yaml);
    assert_has(
        &err,
        "jobs.yml:1:39: flow collections ('[' and '{') nest more than 32 deep",
    );
    let yaml = format!(
        "jobs:\n  - name: a\n    run: {}x{}\n",
        "[".repeat(40),
        "]".repeat(40)
    );
    assert_has(&refuse(&yaml), "jobs.yml:3:42: flow collections");
}

#[test]
fn a_nul_character_in_a_command_is_refused() {
    let err = refuse("jobs:\n  - name: a\n    run: \"echo a\\0b\"\n");
    assert_has(
        &err,
        "jobs.yml:3:10: job 'a' has a `run` command with a NUL character",
    );
}

#[test]
fn commands_and_values_over_128_kib_are_refused() {
    let long = "x".repeat(128 * 1024);
    let err = refuse(&format!(
        "jobs:\n  - name: a\n    run: echo {long}\n  - name: b\n    run: 'true'\n    env: {{V: {long}}}\n"
    ));
    assert_has(
        &err,
        "jobs.yml:3:10: job 'a' has a `run` command of 131077 bytes, over the 128 KiB",
    );
    assert_has(
        &err,
        "jobs.yml:6:14: job 'b' sets V to a value of 131072 bytes",
    );
    let fits = "x".repeat(128 * 1024 - 4);
    let m = parse(&format!(
        "jobs: [{{name: a, run: 'true', env: {{V: {fits}}}}}]"
    ));
    assert_eq!(m.jobs[0].env["V"].len(), fits.len());
}

#[test]
fn a_null_environment_value_is_refused_and_a_quoted_tilde_is_text() {
    let err = refuse(
        "defaults:\n  env: {A: ~}\njobs:\n  - name: a\n    run: 'true'\n    env:\n      B:\n",
    );
    assert_has(
        &err,
        "jobs.yml:2:12: defaults leaves A without a value (null)",
    );
    assert_has(
        &err,
        "jobs.yml:7:9: job 'a' leaves B without a value (null)",
    );
    assert_has(&err, "hint: write A: \"\" for an empty value");
    let m = parse("jobs: [{name: a, run: 'true', env: {A: '~', B: ''}}]");
    assert_eq!(m.jobs[0].env["A"], "~");
    assert_eq!(m.jobs[0].env["B"], "");
}

#[test]
fn a_commands_file_with_a_nul_or_an_overlong_line_is_refused_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("commands.txt");
    let long = "y".repeat(128 * 1024);
    fs::write(&path, format!("echo ok\necho a\0b\n# fine\necho {long}\n")).unwrap();
    let err = from_commands(&path).unwrap_err().to_string();
    let shown = path.display();
    assert_has(
        &err,
        &format!("{shown}:2:1: the command with a NUL character"),
    );
    assert_has(&err, &format!("{shown}:4:1: the command of 131077 bytes"));
}

#[test]
fn a_layer_with_a_symlink_leaving_it_is_refused_at_validation() {
    let dir = project();
    std::os::unix::fs::symlink("/etc", dir.path().join("fixtures/etc")).unwrap();
    let err = parse_in(
        dir.path(),
        "layers:\n  data:\n    paths: [fixtures]\njobs: [{name: a, run: 'true'}]\n",
    )
    .unwrap_err()
    .to_string();
    assert_has(&err, "jobs.yml:3:12: layer 'data': cannot use");
    assert_has(&err, "the symlink target '/etc' is absolute");
}

#[test]
fn layer_globs_do_not_follow_symlink_loops() {
    let dir = project();
    for link in ["fixtures/a", "fixtures/b"] {
        std::os::unix::fs::symlink(".", dir.path().join(link)).unwrap();
    }
    let root = dir.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    // The `glob` crate followed the links: `a/b/a/b/...` without end.
    std::thread::spawn(move || {
        let yaml =
            "layers:\n  data: {paths: ['fixtures/**/*.txt']}\njobs: [{name: a, run: 'true'}]\n";
        let _ = tx.send(parse_in(&root, yaml).map(|m| m.layers["data"].paths.clone()));
    });
    let paths = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("expanding the layer glob hung")
        .unwrap_or_else(|e| panic!("{e}"));
    let expected = ["fixtures/a.txt", "fixtures/b.txt", "fixtures/sub/c.txt"];
    assert_eq!(paths, expected.map(PathBuf::from));
}

#[test]
fn layer_paths_resolving_outside_the_manifest_directory_need_allow_outside() {
    let dir = project();
    let elsewhere = tempfile::tempdir().unwrap();
    fs::write(elsewhere.path().join("lib.txt"), "lib").unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("vendor")).unwrap();
    let layers = "layers:\n  v:\n    paths: [vendor, vendor/lib.txt]\n";
    let jobs = "jobs: [{name: a, run: 'true', layers: [v]}]\n";
    let err = parse_in(dir.path(), &format!("{layers}{jobs}"))
        .unwrap_err()
        .to_string();
    let real = elsewhere.path().canonicalize().unwrap();
    assert_has(
        &err,
        &format!(
            "jobs.yml:3:13: layer 'v': 'vendor' resolves to {}, outside the manifest's directory",
            real.display()
        ),
    );
    assert_has(
        &err,
        "jobs.yml:3:21: layer 'v': 'vendor/lib.txt' resolves to",
    );
    assert_has(&err, "hint: copy it inside, or set `allow-outside: true`");
    let allowed = format!("{layers}    allow-outside: true\n{jobs}");
    let m = parse_in(dir.path(), &allowed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        m.layers["v"].paths,
        [PathBuf::from("vendor"), PathBuf::from("vendor/lib.txt")]
    );
}

#[test]
fn quarantine_settings_merge_over_the_defaults_and_bad_ones_have_locations() {
    let manifest = parse(
        "defaults:\n  quarantine:\n    auto: true\n    flake-rate: 20%\n    tests: [a]\nsuites:\n  - name: s\n    framework: command\n    list: 'true'\n    run: 'true'\n    quarantine:\n      min-runs: 5\n      release-after: 3\n      tests: [b]\n  - name: t\n    framework: command\n    list: 'true'\n    run: 'true'\n",
    );
    let s = &manifest.suites[0].quarantine;
    assert!(s.auto);
    assert_eq!(
        (s.min_runs, s.flake_rate_bp, s.release_after),
        (5, 2_000, 3)
    );
    assert_eq!(s.tests.iter().collect::<Vec<_>>(), ["a", "b"]);
    assert!(!manifest.suites[0].new_tests.detect);
    let t = &manifest.suites[1].quarantine;
    assert_eq!((t.min_runs, t.release_after), (10, 20));
    assert_eq!(t.tests.len(), 1);

    let err = refuse(
        "defaults:\n  quarantine:\n    flake-rate: lots\nsuites:\n  - name: s\n    framework: command\n    list: 'true'\n    run: 'true'\n    quarantine:\n      release-after: 31\n      min-runs: 0\n      tests: ['']\n      when: never\n",
    );
    assert_has(
        &err,
        "jobs.yml:13:7: suites[0].quarantine: unknown field `when`",
    );
    let err = refuse(
        "defaults:\n  quarantine:\n    flake-rate: lots\nsuites:\n  - name: s\n    framework: command\n    list: 'true'\n    run: 'true'\n    quarantine:\n      release-after: 31\n      min-runs: 0\n      tests: ['']\n",
    );
    assert_has(
        &err,
        "jobs.yml:3:17: defaults has a quarantine flake-rate 'lots' that is not a rate",
    );
    assert_has(
        &err,
        "jobs.yml:10:22: suite 's' has a quarantine release-after of 31",
    );
    assert_has(
        &err,
        "jobs.yml:11:17: suite 's' has a quarantine min-runs of 0",
    );
    assert_has(
        &err,
        "jobs.yml:12:15: suite 's' quarantines an empty test id",
    );
}

#[test]
fn new_test_detection_merges_over_the_defaults_and_bad_values_have_locations() {
    let manifest = parse(
        "defaults:\n  detect-new-flakes: true\n  new-test-share: 25%\nsuites:\n  - name: s\n    framework: command\n    list: 'true'\n    run: 'true'\n    new-test-runs: 5\n  - name: t\n    framework: command\n    list: 'true'\n    run: 'true'\n    detect-new-flakes: false\n",
    );
    let s = manifest.suites[0].new_tests;
    assert!(s.detect);
    assert_eq!((s.runs, s.share_bp), (5, 2_500));
    let t = manifest.suites[1].new_tests;
    assert!(!t.detect);
    assert_eq!((t.runs, t.share_bp), (3, 2_500));
    let err = refuse(
        "defaults:\n  new-test-share: none\nsuites:\n  - name: s\n    framework: command\n    list: 'true'\n    run: 'true'\n    new-test-runs: 1\n",
    );
    assert_has(
        &err,
        "jobs.yml:2:19: defaults has a new-test-share 'none' that is not a share",
    );
    assert_has(&err, "jobs.yml:8:20: suite 's' has new-test-runs 1");
}
