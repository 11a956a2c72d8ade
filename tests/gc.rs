//! `cluster-action gc` against `cluster-action serve`: it deletes what clusters leave (names of
//! the cluster's exact grammar) and never a user's artifact that merely looks alike (`ca.crt`,
//! `ca-layer-notes`).

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use cluster_action::layer::{Digest, artifact_name};
use cluster_action::store::{ArtifactStore, StoreConfig};
use common::cluster::{Scratch, Service, block_on, token};

/// A store client acting as job `job` of the run the service's jobs belong to.
fn store(service: &Service, job: &str) -> ArtifactStore {
    let cfg = StoreConfig::new(&service.url, &token("test-run", job)).unwrap();
    ArtifactStore::new(cfg).unwrap()
}

/// The names the run's artifacts are listed under.
fn listed(service: &Service) -> BTreeSet<String> {
    let listed = block_on(store(service, "anyone").list(None)).unwrap();
    listed.into_iter().map(|a| a.name).collect()
}

/// Uploads one small artifact per name, as job `earlier` of the run.
fn upload(service: &Service, scratch: &Scratch, names: &[String]) {
    let store = store(service, "earlier").with_retention(None);
    for name in names {
        let file = scratch.write(&format!("uploads/{name}"), name);
        block_on(store.upload_file(name, &file, &"0".repeat(64))).unwrap();
    }
}

/// A user's own artifacts whose names start as the cluster's do.
const USERS: [&str; 8] = [
    "ca.crt",
    "ca.pem",
    "ca-layer-notes",
    "ca.c.1.notes",
    "ca.c.1.listen.bak",
    "ca.c.1.0123456789abcdef.up.first",
    "ca-history-of-the-project",
    "ca-results-summary",
];

#[test]
fn gc_deletes_cluster_leftovers_and_never_a_user_s_look_alike() {
    let scratch = Scratch::new();
    let service = Service::up(&scratch);
    let layer = artifact_name(&Digest("ab".repeat(32)));
    let leftovers = [
        "ca.c.1.listen".to_string(),
        "ca.c.1.closed".into(),
        "ca.c.1.0123456789abcdef.up.0".into(),
        "ca.other_cluster-2.3.fedcba9876543210.down.12".into(),
        layer.clone(),
        format!("{layer}.00112233aabbccdd"),
    ];
    let reports = [
        "ca-timings-c-ci.yml".to_string(),
        "ca-results-c-1".into(),
        format!("ca-history-{}", "0f".repeat(16)),
    ];
    let users: Vec<String> = USERS.map(String::from).to_vec();
    upload(&service, &scratch, &leftovers);
    upload(&service, &scratch, &reports);
    upload(&service, &scratch, &users);

    let mut gc = service.start(&scratch, "gc", "gc");
    gc.expect_exit(0);
    assert!(
        gc.stderr().contains("gc: deleted 6 artifact(s)"),
        "{}",
        gc.stderr()
    );
    let kept: BTreeSet<String> = users.iter().chain(&reports).cloned().collect();
    assert_eq!(listed(&service), kept);

    // Reports go too with `--keep none`; a user's artifacts still stay.
    let mut gc = service.start(&scratch, "gc", "gc --keep none");
    gc.expect_exit(0);
    assert_eq!(listed(&service), users.into_iter().collect());
}
