//! The local artifact service driven with plain HTTP, checking the answers a client relies on:
//! github.com's Twirp rules and Azure's blob semantics, fault injection and the counters.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cluster_action::serve::{self, ServeConfig, ServeHandle};
use cluster_action::token::{BackendIds, make_token};
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{RUN, ids, start_service};

/// A job's view of the service: its token and the HTTP client.
struct Job {
    http: reqwest::Client,
    base: String,
    ids: BackendIds,
    token: String,
}

impl Job {
    fn new(server: &ServeHandle, job: &str) -> Self {
        let ids = ids(job);
        Self {
            http: http(),
            base: server.url().to_string(),
            token: make_token(&ids),
            ids,
        }
    }

    /// A Twirp call with our token; the status and the JSON answer.
    async fn call(&self, method: &str, body: Value) -> (StatusCode, Value) {
        let url = format!(
            "{}twirp/github.actions.results.api.v1.ArtifactService/{method}",
            self.base
        );
        let response = send(self.http.post(url).bearer_auth(&self.token).json(&body)).await;
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// A JSON answer of the service's own route `path` (`_stats`, `_artifacts`).
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let url = format!("{}{path}", self.base);
        let response = send(self.http.get(url)).await;
        response.json().await.unwrap()
    }

    /// The body every method starts from: our own ids.
    fn body(&self, extra: Value) -> Value {
        let mut body = json!({
            "workflowRunBackendId": self.ids.run,
            "workflowJobRunBackendId": self.ids.job,
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    }

    /// `CreateArtifact` of version 4 named `name`, with the fields `extra` besides.
    async fn try_create(&self, name: &str, extra: Value) -> (StatusCode, Value) {
        let mut fields = json!({"name": name, "version": 4});
        fields
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        self.call("CreateArtifact", self.body(fields)).await
    }

    /// Creates `name`, which must succeed; the upload URL.
    async fn create(&self, name: &str) -> String {
        let (status, answer) = self.try_create(name, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["ok"], true);
        answer["signedUploadUrl"].as_str().unwrap().to_string()
    }

    /// `FinalizeArtifact` of `name` at `size` bytes.
    async fn try_finalize(&self, name: &str, size: u64) -> (StatusCode, Value) {
        let fields = json!({"name": name, "size": size.to_string()});
        self.call("FinalizeArtifact", self.body(fields)).await
    }

    /// Finalizes `name`, which must succeed; its artifact id.
    async fn finalize(&self, name: &str, size: u64) -> String {
        let (status, answer) = self.try_finalize(name, size).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["artifactId"].as_str().unwrap().to_string()
    }

    async fn list(&self, filters: Value) -> Vec<Value> {
        let (status, answer) = self.call("ListArtifacts", self.body(filters)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["artifacts"].as_array().unwrap().clone()
    }

    /// `GetSignedArtifactURL` for the artifact `name` owned by `owner`.
    async fn read_url(&self, owner: &BackendIds, name: &str) -> (StatusCode, Value) {
        let body = json!({
            "workflowRunBackendId": owner.run,
            "workflowJobRunBackendId": owner.job,
            "name": name,
        });
        self.call("GetSignedArtifactURL", body).await
    }
}

/// `DeleteArtifact` by `job` of the artifact `name` owned by `owner` (snake_case, as some
/// clients send).
async fn delete(job: &Job, owner: &BackendIds, name: &str) -> (StatusCode, Value) {
    let body = json!({
        "workflow_run_backend_id": owner.run,
        "workflow_job_run_backend_id": owner.job,
        "name": name,
    });
    job.call("DeleteArtifact", body).await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Sends `request`; reaching the service must not fail.
async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.unwrap()
}

/// GETs `url` from byte `from` on, only if it no longer matches `etag` when one is given.
async fn read_from(
    job: &Job,
    url: &str,
    from: u64,
    etag: Option<&reqwest::header::HeaderValue>,
) -> reqwest::Response {
    let mut request = job.http.get(url).header("range", format!("bytes={from}-"));
    if let Some(etag) = etag {
        request = request.header("if-none-match", etag);
    }
    send(request).await
}

/// Appends `&key=value` to a signed URL, as clients do.
fn with(url: &str, query: &str) -> String {
    format!("{url}&{query}")
}

fn block_id(n: u32) -> String {
    STANDARD.encode(format!("block-{n:06}"))
}

fn block_list(ids: &[String]) -> String {
    let latest: String = ids
        .iter()
        .map(|id| format!("<Latest>{id}</Latest>"))
        .collect();
    format!(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>{latest}</BlockList>"#)
}

fn error_code(response: &reqwest::Response) -> String {
    response.headers()["x-ms-error-code"]
        .to_str()
        .unwrap()
        .to_string()
}

/// Creates an append blob artifact, finalizes it (size 0, as streams do) and returns the
/// upload URL and a read URL.
async fn append_blob(job: &Job, name: &str) -> (String, String) {
    let upload = job.create(name).await;
    let created = send(job.http.put(&upload).header("x-ms-blob-type", "AppendBlob")).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    job.finalize(name, 0).await;
    let (status, answer) = job.read_url(&job.ids, name).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    (upload, answer["signedUrl"].as_str().unwrap().to_string())
}

async fn append(job: &Job, upload: &str, data: &'static [u8]) -> reqwest::Response {
    send(job.http.put(with(upload, "comp=appendblock")).body(data)).await
}

#[tokio::test]
async fn artifacts_follow_github_rules() {
    let server = start_service(ServeConfig::default()).await;
    let owner = Job::new(&server, "job-a");
    let other = Job::new(&server, "job-b");

    owner.create("report").await;
    let (status, answer) = other.try_create("report", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(answer["code"], "already_exists");

    assert!(
        owner.list(json!({})).await.is_empty(),
        "unfinalized artifacts are not listed"
    );
    let id = owner.finalize("report", 123).await;

    // Any job of the run lists it, with protojson int64 strings and an RFC 3339 time.
    let listed = other.list(json!({})).await;
    assert_eq!(listed.len(), 1);
    let entry = &listed[0];
    assert_eq!(entry["name"], "report");
    assert_eq!(entry["databaseId"], id.as_str());
    assert_eq!(entry["size"], "123");
    assert_eq!(entry["workflowJobRunBackendId"], "job-a");
    assert!(entry["createdAt"].as_str().unwrap().ends_with('Z'));

    // Filters, in both spellings and both wrapper forms; unknown fields are tolerated.
    assert_eq!(other.list(json!({"nameFilter": "report"})).await.len(), 1);
    assert_eq!(
        other
            .list(json!({"name_filter": {"value": "nope"}, "futureField": 1}))
            .await
            .len(),
        0
    );
    assert_eq!(other.list(json!({"idFilter": id})).await.len(), 1);
    assert_eq!(other.list(json!({"id_filter": "999999"})).await.len(), 0);

    // The artifact's own ids find it; the caller's ids (another job) do not, as on GitHub.
    let (status, answer) = other.read_url(&other.ids, "report").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["code"], "not_found");
    let (status, answer) = other.read_url(&owner.ids, "report").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let read_url = answer["signedUrl"].as_str().unwrap().to_string();

    let (status, _) = delete(&other, &other.ids, "report").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = delete(&other, &owner.ids, "report").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["artifactId"], id.as_str());
    assert!(owner.list(json!({})).await.is_empty());
    let gone = send(owner.http.get(&read_url)).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&gone), "BlobNotFound");

    // The name is free again.
    other.create("report").await;
    server.shutdown().await;
}

#[tokio::test]
async fn requests_need_a_token_for_the_run_they_name() {
    let server = start_service(ServeConfig::default()).await;
    let job = Job::new(&server, "job-a");
    let url = format!(
        "{}twirp/github.actions.results.api.v1.ArtifactService/ListArtifacts",
        server.url()
    );
    let body = job.body(json!({}));

    let anonymous = send(job.http.post(&url).json(&body)).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let answer: Value = anonymous.json().await.unwrap();
    assert_eq!(answer["code"], "unauthenticated");
    let garbage = send(job.http.post(&url).bearer_auth("not-a-jwt").json(&body)).await;
    assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);

    let mut other_run = body.clone();
    other_run["workflowRunBackendId"] = json!("run-2");
    let (status, answer) = job.call("ListArtifacts", other_run).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(answer["code"], "permission_denied");

    // Creating in another job's name is refused too.
    let (status, answer) = job
        .call(
            "CreateArtifact",
            json!({"workflowRunBackendId": RUN, "workflowJobRunBackendId": "job-b", "name": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");

    let (status, answer) = job.call("NoSuchMethod", body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["code"], "bad_route");
    server.shutdown().await;
}

#[tokio::test]
async fn staged_blocks_download_identical() {
    let server = start_service(ServeConfig::default()).await;
    let job = Job::new(&server, "job-a");
    let upload = job.create("blocks").await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let chunks: Vec<&[u8]> = data.chunks(128 * 1024).collect();
    let ids: Vec<String> = (0..chunks.len() as u32).map(block_id).collect();
    // Staged out of order: the block list decides the order.
    for (id, chunk) in ids.iter().zip(&chunks).rev() {
        let staged = send(
            job.http
                .put(with(
                    &upload,
                    &format!("comp=block&blockid={}", urlencode(id)),
                ))
                .body(chunk.to_vec()),
        )
        .await;
        assert_eq!(staged.status(), StatusCode::CREATED);
    }
    let committed = send(
        job.http
            .put(with(&upload, "comp=blocklist"))
            .header("x-ms-blob-content-type", "application/zip")
            .body(block_list(&ids)),
    )
    .await;
    assert_eq!(committed.status(), StatusCode::CREATED);
    assert!(committed.headers().contains_key("etag"));
    assert!(committed.headers().contains_key("x-ms-request-id"));
    assert!(committed.headers().contains_key("x-ms-version"));
    job.finalize("blocks", data.len() as u64).await;

    let (_, answer) = job.read_url(&job.ids, "blocks").await;
    let read_url = answer["signedUrl"].as_str().unwrap();
    let got = send(job.http.get(read_url)).await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers()["content-type"], "application/zip");
    assert!(got.headers().contains_key("etag"));
    assert_eq!(got.bytes().await.unwrap(), data);

    let head = send(job.http.head(read_url)).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"],
        data.len().to_string().as_str()
    );
    assert_eq!(head.headers()["x-ms-blob-type"], "BlockBlob");

    // A single-shot upload replaces the content.
    let put = send(
        job.http
            .put(&upload)
            .header("x-ms-blob-type", "BlockBlob")
            .body("replaced"),
    )
    .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let got = send(job.http.get(read_url)).await;
    assert_eq!(got.bytes().await.unwrap(), "replaced");

    // A block list naming a block that was never staged is refused.
    let bad = send(
        job.http
            .put(with(&upload, "comp=blocklist"))
            .body(block_list(&[block_id(999)])),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&bad), "InvalidBlockList");
    server.shutdown().await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn appends_read_back_by_range_and_etag() {
    let server = start_service(ServeConfig::default()).await;
    let job = Job::new(&server, "job-a");
    let (upload, read_url) = append_blob(&job, "stream").await;
    let first = append(&job, &upload, b"hello").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(first.headers()["x-ms-blob-append-offset"], "0");

    let got = read_from(&job, &read_url, 0, None).await;
    assert_eq!(got.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(got.headers()["content-range"], "bytes 0-4/5");
    let etag = got.headers()["etag"].clone();
    assert_eq!(got.bytes().await.unwrap(), "hello");

    let unchanged = read_from(&job, &read_url, 5, Some(&etag)).await;
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);

    let past_end = read_from(&job, &read_url, 5, None).await;
    assert_eq!(past_end.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(error_code(&past_end), "InvalidRange");

    assert_eq!(
        append(&job, &upload, b" world").await.status(),
        StatusCode::CREATED
    );
    let more = read_from(&job, &read_url, 5, Some(&etag)).await;
    assert_eq!(more.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(more.bytes().await.unwrap(), " world");

    // Appending at a stale position is refused, so a retried append cannot duplicate data.
    let stale = send(
        job.http
            .put(with(&upload, "comp=appendblock"))
            .header("x-ms-blob-condition-appendpos", "5")
            .body("!"),
    )
    .await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);

    // act's spelling is not Azure's: 400, and nothing is written.
    let camel = send(job.http.put(with(&upload, "comp=appendBlock")).body("x")).await;
    assert_eq!(camel.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&camel), "InvalidQueryParameterValue");
    let all = send(job.http.get(&read_url)).await;
    assert_eq!(all.bytes().await.unwrap(), "hello world");
    server.shutdown().await;
}

#[tokio::test]
async fn append_limits_answer_as_azure() {
    let server = start_service(ServeConfig {
        max_append_bytes: 8,
        max_appends: 2,
        ..ServeConfig::default()
    })
    .await;
    let job = Job::new(&server, "job-a");
    let (upload, _) = append_blob(&job, "limited").await;
    let too_big = append(&job, &upload, b"123456789").await;
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&too_big), "RequestBodyTooLarge");
    for _ in 0..2 {
        assert_eq!(
            append(&job, &upload, b"12345678").await.status(),
            StatusCode::CREATED
        );
    }
    let full = append(&job, &upload, b"1").await;
    assert_eq!(full.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(&full), "BlockCountExceedsLimit");
    server.shutdown().await;
}

#[tokio::test]
async fn signed_urls_grant_only_what_they_say() {
    let server = start_service(ServeConfig::default()).await;
    let job = Job::new(&server, "job-a");
    let (upload, read_url) = append_blob(&job, "s").await;

    let read_with_upload_url = send(job.http.get(&upload)).await;
    assert_eq!(read_with_upload_url.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        error_code(&read_with_upload_url),
        "AuthorizationPermissionMismatch"
    );
    let write_with_read_url = append(&job, &read_url, b"x").await;
    assert_eq!(write_with_read_url.status(), StatusCode::FORBIDDEN);

    let tampered = upload.replace("sp=w", "sp=r");
    let forged = send(job.http.get(&tampered)).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(&forged), "AuthenticationFailed");
    let unsigned = upload.split('?').next().unwrap();
    let bare = send(job.http.get(unsigned)).await;
    assert_eq!(error_code(&bare), "AuthenticationFailed");
    server.shutdown().await;
}

#[tokio::test]
async fn expired_urls_fail_authentication() {
    let server = start_service(ServeConfig {
        url_ttl: Duration::ZERO,
        ..ServeConfig::default()
    })
    .await;
    let job = Job::new(&server, "job-a");
    let upload = job.create("late").await;
    let refused = send(job.http.put(&upload).header("x-ms-blob-type", "AppendBlob")).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(&refused), "AuthenticationFailed");
    let body = refused.text().await.unwrap();
    assert!(body.contains("<Code>AuthenticationFailed</Code>"), "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn refuses_to_bind_beyond_loopback() {
    let err = serve::start(ServeConfig {
        addr: "0.0.0.0:0".parse().unwrap(),
        ..ServeConfig::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[tokio::test]
async fn faults_hit_roughly_the_configured_share() {
    let server = start_service(ServeConfig {
        fail_rate: 0.2,
        throttle_rate: 0.1,
        seed: 42,
        ..ServeConfig::default()
    })
    .await;
    let job = Job::new(&server, "job-a");
    const N: usize = 300;
    let (mut failed, mut throttled, mut ok) = (0, 0, 0);
    for _ in 0..N {
        let (status, answer) = job.call("ListArtifacts", job.body(json!({}))).await;
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::INTERNAL_SERVER_ERROR | StatusCode::SERVICE_UNAVAILABLE => {
                assert!(answer["code"].is_string());
                failed += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => throttled += 1,
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    // Expected 60 failed and 30 throttled; the bounds only catch a broken injector.
    assert!((30..=100).contains(&failed), "failed {failed} of {N}");
    assert!(
        (10..=60).contains(&throttled),
        "throttled {throttled} of {N}"
    );
    assert_eq!(ok + failed + throttled, N);

    // Blob requests are faulted too, and a throttle says when to come back.
    let read_url = format!("{}blob/artifacts/1?sig=x&se=0&sp=r", server.url());
    let mut saw_throttle = false;
    let mut saw_failure = false;
    for _ in 0..100 {
        let response = send(job.http.get(&read_url)).await;
        match response.status() {
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(response.headers()["retry-after"], "1");
                saw_throttle = true;
            }
            s if s.is_server_error() => saw_failure = true,
            s => assert_eq!(s, StatusCode::FORBIDDEN),
        }
    }
    assert!(saw_throttle && saw_failure);

    // The counters are never faulted and count faulted requests too.
    for _ in 0..20 {
        let stats = send(job.http.get(format!("{}_stats", server.url()))).await;
        assert_eq!(stats.status(), StatusCode::OK);
    }
    let stats = server.stats();
    assert_eq!(stats.twirp["ListArtifacts"], N as u64);
    assert_eq!(stats.blob["get"], 100);
    server.shutdown().await;
}

#[tokio::test]
async fn stats_count_each_operation() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_service(ServeConfig {
        data_dir: Some(dir.path().to_path_buf()),
        ..ServeConfig::default()
    })
    .await;
    let job = Job::new(&server, "job-a");
    let (upload, read_url) = append_blob(&job, "counted").await;
    append(&job, &upload, b"abc").await;
    send(job.http.head(&read_url)).await;
    send(job.http.get(&read_url)).await;
    job.list(json!({})).await;

    let served: serve::StatsSnapshot = job.get("_stats").await;
    assert_eq!(served, server.stats());
    let count = |map: &std::collections::BTreeMap<String, u64>, k: &str| map.get(k).copied();
    for method in [
        "CreateArtifact",
        "FinalizeArtifact",
        "GetSignedArtifactURL",
        "ListArtifacts",
    ] {
        assert_eq!(count(&served.twirp, method), Some(1), "{method}");
    }
    for op in ["put_blob", "append_block", "head", "get"] {
        assert_eq!(count(&served.blob, op), Some(1), "{op}");
    }
    assert_eq!((served.twirp_total, served.blob_total), (4, 4));
    // "abc" went up once and came down once (the HEAD carries no body).
    assert_eq!((served.blob_bytes_in, served.blob_bytes_out), (3, 3));

    // The blob bytes are on disk under the data directory.
    let run_dir = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let blob = std::fs::read_dir(run_dir.join("blobs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(std::fs::read(blob).unwrap(), b"abc");

    let url = server.url().to_string();
    server.shutdown().await;
    assert!(http().get(format!("{url}_stats")).send().await.is_err());
}

#[tokio::test]
async fn a_job_s_create_past_the_limit_is_refused_like_github_and_others_go_on() {
    let server = start_service(ServeConfig {
        max_artifacts_per_job: 3,
        ..ServeConfig::default()
    })
    .await;
    let job = Job::new(&server, "job-a");
    for name in ["a", "b", "c"] {
        job.create(name).await;
        job.finalize(name, 0).await;
    }
    // Deleting does not give a create back.
    let (status, _) = delete(&job, &job.ids, "c").await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = job.try_create("d", json!({})).await;
    // 412 is not among the statuses the official client (or ours) retries.
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{answer}");
    assert_eq!(answer["code"], "failed_precondition");
    let msg = answer["msg"].as_str().unwrap();
    assert!(
        msg.contains("'d'") && msg.contains("limit of 3 artifacts per job"),
        "{msg}"
    );
    Job::new(&server, "job-b").create("d").await;
}

#[tokio::test]
async fn expires_at_is_kept_and_an_expired_artifact_is_gone() {
    let server = start_service(ServeConfig::default()).await;
    let job = Job::new(&server, "job-a");
    for (name, at) in [
        ("later", json!("2099-01-02T03:04:05.678Z")),
        ("fields", json!({"seconds": "4071006245", "nanos": 0})),
        ("gone", json!("2001-01-01T00:00:00Z")),
    ] {
        let (status, answer) = job.try_create(name, json!({"expiresAt": at})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    job.finalize("later", 0).await;
    job.finalize("fields", 0).await;
    let (status, _) = job.try_finalize("gone", 0).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let names: Vec<_> = job
        .list(json!({}))
        .await
        .iter()
        .map(|a| a["name"].clone())
        .collect();
    assert_eq!(names, [json!("later"), json!("fields")]);
    // GitHub's ListArtifacts has no expiresAt; the inspection route shows it.
    let all: Value = job.get("_artifacts").await;
    let expiry: Vec<_> = all["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["expiresAt"].clone())
        .collect();
    assert_eq!(
        expiry,
        [
            json!("2099-01-02T03:04:05Z"),
            json!("2099-01-02T03:04:05Z"),
            json!("2001-01-01T00:00:00Z")
        ]
    );
    let (status, answer) = job
        .try_create("bad", json!({"expiresAt": "tomorrow"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["msg"].as_str().unwrap().contains("expiresAt"),
        "{answer}"
    );
}
