//! The artifact store client against the local artifact service (`cluster_action::serve`,
//! which follows github.com): the artifact lifecycle, uploads of several blocks, upload-if-absent
//! from one job and from two at once, reading another job's artifacts, incremental reads that
//! re-sign expired URLs, retries through injected faults, and errors that say which operation
//! on which artifact failed. Two stand-ins cover what the service never does: a port nobody
//! listens on, and a server that cuts its answers short.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cluster_action::serve::{self, ServeConfig, ServeHandle};
use cluster_action::store::blob::{BLOCK_SIZE, BlobClient, RangeRead};
use cluster_action::store::{ArtifactInfo, ArtifactStore, RetryPolicy, StoreError, UploadOutcome};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{RUN, guarded, quick_retry, start_service, store, store_at};

/// `len` bytes that differ from offset to offset.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// Writes `content` to `name` in `dir`; returns the path.
fn file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// A new directory with `content` in a file `name`: the directory (the file lives as long as
/// it) and the file's path.
fn temp_file(name: &str, content: &[u8]) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), name, content);
    (dir, path)
}

/// Uploads the file at `path` as artifact `layer` (digest `ab12`) with `store`.
async fn upload_layer(store: &ArtifactStore, path: &Path) -> UploadOutcome {
    store.upload_file("layer", path, "ab12").await.unwrap()
}

/// The artifact `name` as `store` lists it; it must be there.
async fn existing(store: &ArtifactStore, name: &str) -> ArtifactInfo {
    store.find(name).await.unwrap().unwrap()
}

/// Creates `name` with `store` and writes `bytes` to it without finalizing it: an upload
/// under way.
async fn unfinalized(store: &ArtifactStore, name: &str, bytes: &'static [u8]) {
    let upload = store.create_artifact(name).await.unwrap();
    BlobClient::new(quick_retry())
        .put_block_blob(name, &upload, Bytes::from_static(bytes))
        .await
        .unwrap();
}

/// Downloads `artifact` with `store` and returns its bytes.
async fn download(store: &ArtifactStore, artifact: &ArtifactInfo) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("download");
    let written = store.download_to(artifact, &dest).await.unwrap();
    let bytes = std::fs::read(&dest).unwrap();
    assert_eq!(written, bytes.len() as u64);
    bytes
}

/// How many `method` Twirp calls the service has received.
fn twirp_calls(service: &ServeHandle, method: &str) -> u64 {
    service.stats().twirp.get(method).copied().unwrap_or(0)
}

#[tokio::test]
async fn an_artifact_is_created_finalized_listed_downloaded_and_deleted() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let store = store(&service, "job-a");
        unfinalized(&store, "report", b"all passed").await;
        assert_eq!(
            store.find("report").await.unwrap(),
            None,
            "unfinalized artifacts are not listed"
        );

        let id = store
            .finalize_artifact("report", 10, Some(&"0".repeat(64)))
            .await
            .unwrap();

        let listed = store.list(None).await.unwrap();
        assert_eq!(
            listed,
            [ArtifactInfo {
                name: "report".into(),
                run_backend_id: RUN.into(),
                job_backend_id: "job-a".into(),
                database_id: id,
                size: 10,
            }]
        );
        let found = existing(&store, "report").await;
        assert_eq!(found, listed[0]);
        assert_eq!(
            store.find("repo").await.unwrap(),
            None,
            "names match exactly"
        );
        assert_eq!(download(&store, &found).await, b"all passed");

        store.delete(&found).await.unwrap();
        assert_eq!(store.find("report").await.unwrap(), None);
        assert!(store.list(None).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_file_of_several_blocks_uploads_once_and_downloads_identically() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let store = store(&service, "job-a");
        let content = pattern(BLOCK_SIZE + 4321);
        let (_dir, path) = temp_file("layer.tar.gz", &content);

        let first = upload_layer(&store, &path).await;
        let second = upload_layer(&store, &path).await;

        assert_eq!(first, UploadOutcome::Uploaded);
        assert_eq!(second, UploadOutcome::AlreadyPresent);
        assert_eq!(service.stats().blob["put_block"], 2, "two blocks, once");
        let found = existing(&store, "layer").await;
        assert_eq!(found.size, content.len() as u64);
        assert!(
            download(&store, &found).await == content,
            "download differs"
        );
    })
    .await;
}

#[tokio::test]
async fn an_empty_file_uploads_as_an_empty_artifact() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let store = store(&service, "job-a");
        let (_dir, path) = temp_file("empty", b"");

        let outcome = store.upload_file("empty", &path, "e3b0").await.unwrap();

        assert_eq!(outcome, UploadOutcome::Uploaded);
        let found = existing(&store, "empty").await;
        assert_eq!(download(&store, &found).await, b"");
    })
    .await;
}

#[tokio::test]
async fn uploading_a_missing_file_fails_without_taking_the_name() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let store = store(&service, "job-a");
        let dir = tempfile::tempdir().unwrap();

        let error = store
            .upload_file("layer", &dir.path().join("missing"), "ab12")
            .await
            .unwrap_err();

        assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
        assert!(error.to_string().contains("'layer'"), "{error}");
        let path = file(dir.path(), "present", b"data");
        assert_eq!(upload_layer(&store, &path).await, UploadOutcome::Uploaded);
    })
    .await;
}

#[tokio::test]
async fn concurrent_uploads_of_one_name_from_two_jobs_both_succeed() {
    // Latency keeps both uploads in flight at once.
    let service = start_service(ServeConfig {
        latency: serve::Latency::constant(Duration::from_millis(20)),
        ..ServeConfig::default()
    })
    .await;
    guarded(async {
        let (a, b) = (store(&service, "job-a"), store(&service, "job-b"));
        let content = pattern(100_000);
        let (_dir, path) = temp_file("layer", &content);

        let (from_a, from_b) = tokio::join!(
            a.upload_file("layer", &path, "ab12"),
            b.upload_file("layer", &path, "ab12"),
        );

        let mut outcomes = [from_a.unwrap(), from_b.unwrap()];
        outcomes.sort_by_key(|o| *o == UploadOutcome::AlreadyPresent);
        assert_eq!(
            outcomes,
            [UploadOutcome::Uploaded, UploadOutcome::AlreadyPresent]
        );
        for store in [&a, &b] {
            let found = existing(store, "layer").await;
            assert!(download(store, &found).await == content);
        }
    })
    .await;
}

#[tokio::test]
async fn an_upload_that_meets_an_unfinished_one_waits_until_it_is_listed() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let a = store(&service, "job-a");
        // Patient enough to outwait job a's one finalize call on a loaded machine.
        let b = store_at(
            service.url(),
            "job-b",
            RetryPolicy {
                max_delay: Duration::from_millis(200),
                ..quick_retry()
            },
        );
        // Job a's upload is under way: created and written, not yet finalized.
        unfinalized(&a, "layer", b"bytes").await;
        let (_dir, path) = temp_file("layer", b"bytes");
        let finalizing = Arc::new(AtomicBool::new(false));

        let b_upload = tokio::spawn({
            let finalizing = finalizing.clone();
            async move {
                let outcome = upload_layer(&b, &path).await;
                (outcome, finalizing.load(Ordering::SeqCst))
            }
        });
        // Once b has found the name taken and looked for it again, a finishes its upload.
        while twirp_calls(&service, "ListArtifacts") < 2 && !b_upload.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        finalizing.store(true, Ordering::SeqCst);
        a.finalize_artifact("layer", 5, None).await.unwrap();

        let (outcome, after_finalize) = b_upload.await.unwrap();
        assert_eq!(outcome, UploadOutcome::AlreadyPresent);
        assert!(
            after_finalize,
            "AlreadyPresent came before the artifact could be listed"
        );
    })
    .await;
}

#[tokio::test]
async fn another_jobs_artifact_is_read_and_deleted_with_its_owners_ids() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let (owner, reader) = (store(&service, "job-a"), store(&service, "job-b"));
        let (_dir, path) = temp_file("layer", b"shared bytes");
        upload_layer(&owner, &path).await;

        let found = existing(&reader, "layer").await;

        assert_eq!(found.job_backend_id, "job-a");
        assert_eq!(download(&reader, &found).await, b"shared bytes");
        reader.delete(&found).await.unwrap();
        assert_eq!(owner.find("layer").await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn a_tail_returns_each_appended_byte_once() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let (writer_store, reader_store) = (store(&service, "job-a"), store(&service, "job-b"));
        let mut writer = writer_store.create_append("stream").await.unwrap();
        let mut tail = reader_store.tail(existing(&reader_store, "stream").await);
        assert_eq!(
            tail.read_new().await.unwrap(),
            None,
            "a new stream is empty"
        );

        writer.append(Bytes::from_static(b"one")).await.unwrap();
        assert_eq!(
            tail.read_new().await.unwrap(),
            Some(Bytes::from_static(b"one"))
        );
        assert_eq!(tail.read_new().await.unwrap(), None);

        writer.append(Bytes::from_static(b"two")).await.unwrap();
        writer.append(Bytes::from_static(b"three")).await.unwrap();
        assert_eq!(
            tail.read_new().await.unwrap(),
            Some(Bytes::from_static(b"twothree"))
        );
        assert_eq!(tail.read_new().await.unwrap(), None);
        assert_eq!(writer.appends(), 3);
        assert_eq!(
            twirp_calls(&service, "GetSignedArtifactURL"),
            1,
            "a tail signs its URL once while it works"
        );
    })
    .await;
}

#[tokio::test]
async fn a_tail_re_signs_its_url_when_it_expires() {
    // URLs live 2 to 3 s (expiry is a whole second).
    let service = start_service(ServeConfig {
        url_ttl: Duration::from_secs(3),
        ..ServeConfig::default()
    })
    .await;
    guarded(async {
        let (writer_store, reader_store) = (store(&service, "job-a"), store(&service, "job-b"));
        let mut writer = writer_store.create_append("stream").await.unwrap();
        writer.append(Bytes::from_static(b"abc")).await.unwrap();
        let found = existing(&reader_store, "stream").await;
        let mut tail = reader_store.tail(found.clone());
        assert_eq!(
            tail.read_new().await.unwrap(),
            Some(Bytes::from_static(b"abc"))
        );
        // A URL signed after the tail's expires no earlier: once it is dead, so is the tail's.
        let later = reader_store.download_url(&found).await.unwrap();
        let blob = BlobClient::new(quick_retry());
        while blob.read_from("stream", &later, 0, None).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let signed = twirp_calls(&service, "GetSignedArtifactURL");

        assert_eq!(tail.read_new().await.unwrap(), None);
        assert_eq!(twirp_calls(&service, "GetSignedArtifactURL"), signed + 1);
    })
    .await;
}

#[tokio::test]
async fn a_url_that_is_dead_when_signed_fails_after_one_re_sign() {
    // Every URL is expired when issued.
    let service = start_service(ServeConfig {
        url_ttl: Duration::ZERO,
        ..ServeConfig::default()
    })
    .await;
    guarded(async {
        let store = store(&service, "job-a");
        store.create_artifact("stream").await.unwrap();
        store.finalize_artifact("stream", 0, None).await.unwrap();
        let found = existing(&store, "stream").await;

        let read = store.tail(found.clone()).read_new().await.unwrap_err();
        let dir = tempfile::tempdir().unwrap();
        let download = store
            .download_to(&found, &dir.path().join("d"))
            .await
            .unwrap_err();

        for (op, error) in [("read", read), ("download", download)] {
            assert_eq!(error.status(), Some(403), "{error}");
            let message = error.to_string();
            assert!(
                message.contains(op) && message.contains("'stream'"),
                "{message}"
            );
        }
        assert_eq!(twirp_calls(&service, "GetSignedArtifactURL"), 4);
    })
    .await;
}

#[tokio::test]
async fn every_operation_succeeds_through_injected_faults() {
    let service = start_service(ServeConfig {
        fail_rate: 0.3,
        throttle_rate: 0.1,
        seed: 7,
        ..ServeConfig::default()
    })
    .await;
    guarded(async {
        let (a, b) = (store(&service, "job-a"), store(&service, "job-b"));
        let content = pattern(BLOCK_SIZE + 100);
        let (_dir, path) = temp_file("layer", &content);

        assert_eq!(upload_layer(&a, &path).await, UploadOutcome::Uploaded);
        assert_eq!(upload_layer(&b, &path).await, UploadOutcome::AlreadyPresent);
        let layer = existing(&b, "layer").await;
        assert!(download(&b, &layer).await == content);

        let mut writer = a.create_append("stream").await.unwrap();
        let mut tail = b.tail(existing(&b, "stream").await);
        let mut received = Vec::new();
        for i in 0..20 {
            writer.append(Bytes::from(format!("{i};"))).await.unwrap();
            if let Some(bytes) = tail.read_new().await.unwrap() {
                received.extend_from_slice(&bytes);
            }
        }
        while let Some(bytes) = tail.read_new().await.unwrap() {
            received.extend_from_slice(&bytes);
        }
        let sent: String = (0..20).map(|i| format!("{i};")).collect();
        assert_eq!(String::from_utf8(received).unwrap(), sent);

        b.delete(&layer).await.unwrap();
        assert_eq!(a.list(None).await.unwrap().len(), 1);
        assert!(
            service.stats().blob["append_block"] > 20,
            "some of the 20 appends met a fault and were sent again"
        );
    })
    .await;
}

#[tokio::test]
async fn a_server_that_is_not_there_is_a_transport_error_after_the_last_attempt() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    guarded(async {
        let store = store_at(&url, "job-a", quick_retry());
        let blob = BlobClient::new(RetryPolicy {
            max_attempts: 3,
            ..quick_retry()
        });

        let twirp = store.create_artifact("layer").await.unwrap_err();
        let read = blob
            .read_from("stream", &format!("{url}blob?sig=x"), 0, None)
            .await
            .unwrap_err();

        for (op, artifact, attempts, error) in [
            ("CreateArtifact", "layer", 20, twirp),
            ("read", "stream", 3, read),
        ] {
            let StoreError::Transport {
                op: got_op,
                artifact: got_artifact,
                message,
            } = &error
            else {
                panic!("expected a transport error, got {error:?}");
            };
            assert_eq!((*got_op, got_artifact.as_str()), (op, artifact));
            assert!(
                message.contains(&format!("after {attempts} attempts")),
                "{message}"
            );
            let text = error.to_string();
            assert!(text.contains(op) && text.contains(artifact), "{text}");
        }
    })
    .await;
}

/// A blob server that answers the first `cuts` requests with the head of a 10-byte body and
/// then hangs up, and every later one in full; returns its URL and the request counter.
async fn cutting_server(cuts: usize) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/blob", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8];
                if conn.read(&mut byte).await.unwrap() == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let body: &[u8] = if counter.fetch_add(1, Ordering::SeqCst) < cuts {
                b"abc"
            } else {
                b"0123456789"
            };
            let answer = [
                &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"[..],
                body,
            ]
            .concat();
            conn.write_all(&answer).await.unwrap();
        }
    });
    (url, requests)
}

#[tokio::test]
async fn reads_cut_short_are_asked_again() {
    guarded(async {
        let blob = BlobClient::new(RetryPolicy {
            max_attempts: 3,
            ..quick_retry()
        });
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("download");

        let (url, requests) = cutting_server(2).await;
        let read = blob.read_from("stream", &url, 4, None).await.unwrap();
        assert_eq!(
            read,
            RangeRead::Data {
                bytes: Bytes::from_static(b"456789"),
                etag: None
            }
        );
        assert_eq!(requests.load(Ordering::SeqCst), 3);

        let (url, _) = cutting_server(2).await;
        assert_eq!(blob.download("layer", &url, &dest).await.unwrap(), 10);
        assert_eq!(std::fs::read(&dest).unwrap(), b"0123456789");

        let (url, requests) = cutting_server(3).await;
        let error = blob.read_from("stream", &url, 0, None).await.unwrap_err();
        assert!(
            matches!(&error, StoreError::Transport { op: "read", artifact, message }
                if artifact == "stream" && message.contains("after 3 attempts")),
            "{error:?}"
        );
        assert_eq!(requests.load(Ordering::SeqCst), 3);
    })
    .await;
}

#[tokio::test]
async fn error_answers_name_the_artifact() {
    let service = start_service(ServeConfig::default()).await;
    guarded(async {
        let (a, b) = (store(&service, "job-a"), store(&service, "job-b"));
        let missing = ArtifactInfo {
            name: "missing".into(),
            run_backend_id: RUN.into(),
            job_backend_id: "job-a".into(),
            database_id: 1,
            size: 0,
        };
        let error = a.download_url(&missing).await.unwrap_err();
        assert!(matches!(error, StoreError::NotFound(ref n) if n == "missing"));
        assert!(error.to_string().contains("'missing'"), "{error}");

        a.create_append("stream").await.unwrap();
        let error = b.create_artifact("stream").await.unwrap_err();
        assert!(matches!(error, StoreError::AlreadyExists(ref n) if n == "stream"));
        assert!(error.to_string().contains("'stream'"), "{error}");

        // Another job's artifact asked for with our own ids is not found, as on github.com.
        let mut wrong_owner = existing(&b, "stream").await;
        wrong_owner.job_backend_id = "job-b".into();
        let error = b.download_url(&wrong_owner).await.unwrap_err();
        assert!(matches!(error, StoreError::NotFound(ref n) if n == "stream"));

        let error = a.create_artifact("a/b").await.unwrap_err();
        assert_eq!(error.status(), Some(400), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("CreateArtifact") && message.contains("'a/b'"),
            "{message}"
        );
        assert!(
            message.contains("contains one of"),
            "the server's message: {message}"
        );
    })
    .await;
}
