//! Layers through the local artifact service (`cluster_action::serve`), as the runner and the
//! workers move them: a big layer published and fetched (read in parallel ranges, extracted as
//! it arrives) comes back identical, a corrupt one leaves nothing in the cache, a server that
//! ignores ranges (act) still delivers, a name held by a dead upload does not block a layer, and
//! a job writing into the cache does not change the next job's files.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cluster_action::layer::{self, Digest, LayerCache, LayerError};
use cluster_action::serve::ServeConfig;
use cluster_action::store::blob::BlobClient;
use cluster_action::store::{ArtifactInfo, ArtifactStore, UploadOutcome};
use common::{entries, guarded, ids, quick_retry, start_service, store, store_at};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;

/// Bytes that neither repeat nor compress (so the layer is stored, and big).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// A tree with a big incompressible file, a compressible one and a small one, packed.
fn packed_layer(dir: &Path) -> (PathBuf, PathBuf, Digest) {
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("big.bin"), noise(9 * 1024 * 1024 + 17, 7)).unwrap();
    fs::write(
        tree.join("sub/text.txt"),
        "compressible line\n".repeat(50_000),
    )
    .unwrap();
    fs::write(tree.join("small"), "x").unwrap();
    let archive = dir.join("layer.tar.gz");
    let digest = layer::pack(&tree, &[PathBuf::from(".")], &archive).unwrap();
    (tree, archive, digest)
}

/// A layer of one small file, `data.txt`, packed in a new directory: the directory (the
/// archive lives as long as it), the archive and its digest.
fn small_layer() -> (TempDir, PathBuf, Digest) {
    let dir = TempDir::new().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("data.txt"), "the layer's bytes\n").unwrap();
    let archive = dir.path().join("layer.tar.gz");
    let digest = layer::pack(&tree, &[PathBuf::from(".")], &archive).unwrap();
    (dir, archive, digest)
}

/// Publishes the layer `archive` with `store`: whether it uploaded it.
async fn publish(store: &ArtifactStore, archive: &Path, digest: &Digest) -> UploadOutcome {
    layer::publish(store, None, archive, digest)
        .await
        .unwrap()
        .outcome
}

/// The `data.txt` of a layer tree or job directory `dir`.
fn data_txt(dir: &Path) -> String {
    fs::read_to_string(dir.join("data.txt")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_layer_is_published_once_and_fetched_identically() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let dir = TempDir::new().unwrap();
        let (tree, archive, digest) = packed_layer(dir.path());
        let packed = fs::metadata(&archive).unwrap().len();
        assert!(
            packed < 9 * 1024 * 1024 + 200_000,
            "the text is deflated and the noise stored: {packed} bytes"
        );
        let runner = store(&service, "runner");
        assert_eq!(
            publish(&runner, &archive, &digest).await,
            UploadOutcome::Uploaded
        );
        assert_eq!(
            publish(&runner, &archive, &digest).await,
            UploadOutcome::AlreadyPresent
        );

        let cache_dir = dir.path().join("cache");
        let cache = LayerCache::open(&cache_dir).unwrap();
        let worker = store(&service, "worker");
        // Two jobs asking at once get one tree from one download.
        let (a, b) = tokio::join!(cache.fetch(&worker, &digest), cache.fetch(&worker, &digest));
        let fetched = a.unwrap();
        assert_eq!(b.unwrap(), fetched);
        for file in ["big.bin", "sub/text.txt", "small"] {
            assert!(
                fs::read(fetched.join(file)).unwrap() == fs::read(tree.join(file)).unwrap(),
                "{file} differs"
            );
        }
        assert_eq!(entries(&cache_dir), [digest.0.as_str()]);
        let sent = service.stats().blob_bytes_out;
        assert!(
            sent >= packed && sent < 2 * packed,
            "one download of {packed} bytes, not {sent}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_layer_is_refused_and_leaves_no_cache_entry() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let (dir, archive, digest) = small_layer();
        // Someone stores other bytes under the layer's name: one flipped byte in the middle.
        let mut bytes = fs::read(&archive).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        let forger = store(&service, "forger");
        let name = layer::artifact_name(&digest);
        let url = forger.create_artifact(&name).await.unwrap();
        BlobClient::new(quick_retry())
            .put_block_blob(&name, &url, Bytes::from(bytes.clone()))
            .await
            .unwrap();
        forger
            .finalize_artifact(&name, bytes.len() as u64, None)
            .await
            .unwrap();

        let cache_dir = dir.path().join("cache");
        let cache = LayerCache::open(&cache_dir).unwrap();
        match cache.fetch(&store(&service, "worker"), &digest).await {
            Err(LayerError::HashMismatch { expected, actual }) => {
                assert_eq!(expected, digest.0);
                assert_ne!(actual, digest.0);
            }
            other => panic!("expected a hash mismatch, got {other:?}"),
        }
        assert!(entries(&cache_dir).is_empty(), "{:?}", entries(&cache_dir));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_whose_name_a_dead_upload_holds_is_still_published_and_fetched() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let (dir, archive, digest) = small_layer();
        // An upload that died after CreateArtifact: the name is taken, nothing is finalized.
        store(&service, "crashed")
            .create_artifact(&layer::artifact_name(&digest))
            .await
            .unwrap();

        let runner = store(&service, "runner");
        assert_eq!(
            publish(&runner, &archive, &digest).await,
            UploadOutcome::Uploaded
        );
        let cache_dir = dir.path().join("cache");
        let fetched = LayerCache::open(&cache_dir)
            .unwrap()
            .fetch(&store(&service, "worker"), &digest)
            .await
            .unwrap();
        assert_eq!(data_txt(&fetched), "the layer's bytes\n");
        // A later publisher finds the copy at once: no second copy, no wait for the dead one.
        let creates = service.stats().twirp.get("CreateArtifact").copied();
        assert_eq!(
            publish(&store(&service, "other"), &archive, &digest).await,
            UploadOutcome::AlreadyPresent
        );
        assert_eq!(
            service.stats().twirp.get("CreateArtifact").copied(),
            creates.map(|n| n + 1),
            "one create (refused), and no new copy"
        );
        let copies: Vec<String> = runner
            .list(None)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(copies.len(), 1, "{copies:?}");
        assert!(copies[0].starts_with(&format!("{}.", layer::artifact_name(&digest))));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_writes_into_the_cache_does_not_change_the_next_job_s_files() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let (dir, archive, digest) = small_layer();
        let runner = store(&service, "runner");
        publish(&runner, &archive, &digest).await;
        let worker = store(&service, "worker");
        let cache = LayerCache::open(&dir.path().join("cache")).unwrap();
        let original = "the layer's bytes\n";
        let digests = [digest.clone()];

        // The first job writes through the cache path (as `../../cache/<digest>/data.txt`
        // would), then through a hard link it made into the cache, then its own copy.
        let first = dir.path().join("job-1");
        cache.assemble(&worker, &digests, &first).await.unwrap();
        let cached = cache
            .fetch(&worker, &digest)
            .await
            .unwrap()
            .join("data.txt");
        fs::write(&cached, "tampered through the cache path\n").unwrap();
        let second = dir.path().join("job-2");
        cache.assemble(&worker, &digests, &second).await.unwrap();
        assert_eq!(data_txt(&second), original);

        let cached = cache
            .fetch(&worker, &digest)
            .await
            .unwrap()
            .join("data.txt");
        fs::hard_link(&cached, second.join("link")).unwrap();
        fs::write(second.join("link"), "tampered through a hard link\n").unwrap();
        fs::write(second.join("data.txt"), "the job's own change\n").unwrap();
        let third = dir.path().join("job-3");
        cache.assemble(&worker, &digests, &third).await.unwrap();
        assert_eq!(data_txt(&third), original);
        assert_eq!(
            data_txt(&first),
            original,
            "a job's files are its own copies"
        );
    })
    .await;
}

/// A stand-in for act's artifact server as far as a download goes: it signs a URL, and answers
/// every read of it with 200 and the whole blob, ignoring `Range` (as act does).
async fn range_ignoring_server(blob: Vec<u8>) -> (String, tokio::task::JoinHandle<()>) {
    use axum::routing::{get, post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let signed = format!("{base}blob");
    let app = axum::Router::new()
        .route(
            "/twirp/github.actions.results.api.v1.ArtifactService/GetSignedArtifactURL",
            post(move || async move { axum::Json(serde_json::json!({ "signedUrl": signed })) }),
        )
        .route("/blob", get(move || async move { blob }));
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_ranges_still_delivers_a_big_blob_in_order() {
    guarded(async {
        let blob = noise(9 * 1024 * 1024 + 5, 3);
        let (base, server) = range_ignoring_server(blob.clone()).await;
        let store = store_at(&base, "worker", quick_retry());
        let owner = ids("worker");
        let artifact = ArtifactInfo {
            name: "ca-layer-x".into(),
            run_backend_id: owner.run,
            job_backend_id: owner.job,
            database_id: 1,
            size: 0,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let reading = tokio::spawn(async move { store.read_to(&artifact, &tx).await });
        let mut received = Vec::new();
        while let Some(chunk) = rx.recv().await {
            received.extend_from_slice(&chunk);
        }
        assert_eq!(reading.await.unwrap().unwrap(), blob.len() as u64);
        assert!(received == blob, "the bytes arrived whole and in order");
        server.abort();
    })
    .await;
}
