//! Our blob client against Azurite, Microsoft's Azure Storage emulator: an implementation of
//! the blob half of github.com's artifact store that we did not write. It checks what streams
//! and layers rely on: block uploads read back byte for byte, appends read back incrementally,
//! conditional and past-the-end reads are "no new data", a retried append is not duplicated,
//! and a dead signature is a 403 that names the artifact and the operation.
//!
//! Azurite is the npm package under tests/js (`npm ci --prefix tests/js`; scripts/test.sh runs
//! it). One Azurite serves every test of this file, each test in its own container; blob URLs
//! carry an account SAS signed with the emulator's published development key, as github.com's
//! signed URLs carry a SAS. Set `CLUSTER_ACTION_SKIP_EXTERNAL=1` to skip these tests.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use cluster_action::store::RetryPolicy;
use cluster_action::store::blob::{BLOCK_SIZE, BlobClient, RangeRead};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Azurite's development account and its well-known key (published in Azurite's README).
const ACCOUNT: &str = "devstoreaccount1";
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The SAS version we sign (its string-to-sign has no encryption scope line).
const SAS_VERSION: &str = "2020-10-02";
/// How long Azurite may take to start on a loaded machine.
const STARTUP: Duration = Duration::from_secs(30);

/// Kills Azurite when the test process goes away, however it goes: the shell waits on its
/// stdin, which is a pipe from this process, and the pipe closes when the process exits.
const WATCHDOG: &str = r#"exec 3<&0
"$@" 2>&1 &
child=$!
{ read -r _ <&3; kill "$child"; } >/dev/null 2>&1 &
wait "$child""#;

/// The Azurite all tests share: starting node takes seconds.
struct Azurite {
    /// `http://127.0.0.1:PORT/devstoreaccount1` (path-style URLs, as the emulator serves).
    account_url: String,
    /// Held open for the life of the process; see [`WATCHDOG`].
    _lifeline: ChildStdin,
}

static AZURITE: OnceLock<Result<Azurite, String>> = OnceLock::new();

/// The shared Azurite, started on first use; `None` (after saying so) when external tests
/// are switched off.
fn azurite() -> Option<&'static Azurite> {
    if std::env::var("CLUSTER_ACTION_SKIP_EXTERNAL").as_deref() == Ok("1") {
        println!("skipping: CLUSTER_ACTION_SKIP_EXTERNAL=1 and this test needs Azurite");
        return None;
    }
    match AZURITE.get_or_init(start_azurite) {
        Ok(azurite) => Some(azurite),
        Err(e) => panic!("{e}"),
    }
}

/// Starts Azurite's blob service on a port it picks, in memory, and waits for the line that
/// announces its address.
fn start_azurite() -> Result<Azurite, String> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/node_modules/.bin/azurite-blob");
    if !bin.exists() {
        return Err(format!(
            "Azurite is not installed ({} is missing): run `npm ci --prefix tests/js` \
             (scripts/test.sh does), or set CLUSTER_ACTION_SKIP_EXTERNAL=1 to skip this test",
            bin.display()
        ));
    }
    let mut child = Command::new("sh")
        .args(["-c", WATCHDOG, "azurite-watchdog"])
        .arg(&bin)
        .args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",
            "--inMemoryPersistence",
            "--extentMemoryLimit",
            "256",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let lifeline = child.stdin.take().ok_or("no stdin pipe to Azurite")?;
    let stdout = child.stdout.take().ok_or("no stdout pipe from Azurite")?;
    let (lines_tx, lines) = mpsc::channel();
    // Reads (and after startup drains) Azurite's output, so it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + STARTUP;
    let mut output = Vec::new();
    let failure = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some((_, url)) = line.split_once("listens on ") {
                    let url = url.trim().trim_end_matches('/');
                    return Ok(Azurite {
                        account_url: format!("{url}/{ACCOUNT}"),
                        _lifeline: lifeline,
                    });
                }
                output.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                break format!("Azurite did not start within {STARTUP:?}");
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break "Azurite exited".to_string(),
        }
    };
    // Dropping the lifeline stops Azurite, should it still run.
    drop(lifeline);
    let _ = child.wait();
    Err(format!("{failure}; its output:\n{}", output.join("\n")))
}

/// An account SAS (all blob operations on containers and blobs) expiring at `expiry`
/// (ISO 8601, UTC).
fn account_sas(expiry: &str) -> String {
    let permissions = "rwdlac";
    let to_sign = format!("{ACCOUNT}\n{permissions}\nb\nsco\n\n{expiry}\n\n\n{SAS_VERSION}\n");
    let key = STANDARD.decode(ACCOUNT_KEY).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(to_sign.as_bytes());
    let sig = STANDARD.encode(mac.finalize().into_bytes());
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "sv={SAS_VERSION}&ss=b&srt=sco&sp={permissions}&se={}&sig={}",
        encode(expiry),
        encode(&sig)
    )
}

/// A SAS that works for the length of any test.
fn valid_sas() -> String {
    account_sas("2099-01-01T00:00:00Z")
}

/// One test's container.
struct Container {
    url: String,
}

impl Container {
    /// Creates container `name` (lowercase letters, digits and '-').
    async fn create(azurite: &Azurite, name: &str) -> Self {
        let url = format!("{}/{name}", azurite.account_url);
        let response = reqwest::Client::new()
            .put(format!("{url}?restype=container&{}", valid_sas()))
            .header("x-ms-version", SAS_VERSION)
            .header("content-length", 0)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert_eq!(
            status.as_u16(),
            201,
            "creating container {name}: {}",
            response.text().await.unwrap_or_default()
        );
        Self { url }
    }

    /// The signed URL of `blob` in this container, as GitHub hands out: `…/blob?<sas>`.
    fn blob_url(&self, blob: &str) -> String {
        self.signed_url(blob, &valid_sas())
    }

    /// The URL of `blob` with the given SAS.
    fn signed_url(&self, blob: &str, sas: &str) -> String {
        format!("{}/{blob}?{sas}", self.url)
    }
}

fn client() -> BlobClient {
    BlobClient::new(RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    })
}

/// `len` bytes that differ from block to block and from offset to offset.
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// The bytes of a read that must have found data.
fn data(read: RangeRead) -> (Bytes, Option<String>) {
    match read {
        RangeRead::Data { bytes, etag } => (bytes, etag),
        RangeRead::NoNewData => panic!("expected data, got no new data"),
    }
}

#[tokio::test]
async fn a_block_blob_of_several_blocks_reads_back_identically() {
    let Some(azurite) = azurite() else { return };
    let container = Container::create(azurite, "block-upload").await;
    let url = container.blob_url("layer.tar.gz");
    let blob = client();
    let content = Bytes::from(pattern(2 * BLOCK_SIZE + 12_345));

    blob.put_block_blob("layer", &url, content.clone())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("download");
    let written = blob.download("layer", &url, &dest).await.unwrap();
    assert_eq!(written, content.len() as u64);
    assert!(std::fs::read(&dest).unwrap() == content, "download differs");
    let (tail, _) = data(
        blob.read_from("layer", &url, BLOCK_SIZE as u64 + 7, None)
            .await
            .unwrap(),
    );
    assert!(
        tail == content.slice(BLOCK_SIZE + 7..),
        "ranged read differs"
    );
}

#[tokio::test]
async fn a_small_block_blob_is_one_block() {
    let Some(azurite) = azurite() else { return };
    let container = Container::create(azurite, "small-upload").await;
    let url = container.blob_url("small");
    let blob = client();

    blob.put_block_blob("small", &url, Bytes::from_static(b"hello"))
        .await
        .unwrap();

    let (bytes, _) = data(blob.read_from("small", &url, 0, None).await.unwrap());
    assert_eq!(bytes, Bytes::from_static(b"hello"));
}

#[tokio::test]
async fn a_file_of_a_whole_number_of_blocks_uploads_as_those_blocks() {
    let Some(azurite) = azurite() else { return };
    let container = Container::create(azurite, "file-upload").await;
    let url = container.blob_url("layer");
    let blob = client();
    let content = pattern(BLOCK_SIZE);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer.tar.gz");
    std::fs::write(&path, &content).unwrap();

    let file = tokio::fs::File::open(&path).await.unwrap();
    let size = blob
        .put_block_blob_from("layer", &url, file, "the layer file")
        .await
        .unwrap();

    assert_eq!(size, content.len() as u64);
    let (bytes, _) = data(blob.read_from("layer", &url, 0, None).await.unwrap());
    assert!(bytes == content, "upload differs");
}

/// Azure refuses an empty block, so an empty upload commits an empty block list.
#[tokio::test]
async fn an_empty_upload_is_an_empty_blob() {
    let Some(azurite) = azurite() else { return };
    let container = Container::create(azurite, "empty-upload").await;
    let url = container.blob_url("empty");
    let blob = client();

    blob.put_block_blob("empty", &url, Bytes::new())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("download");
    assert_eq!(blob.download("empty", &url, &dest).await.unwrap(), 0);
    assert_eq!(
        blob.read_from("empty", &url, 0, None).await.unwrap(),
        RangeRead::NoNewData
    );
}

#[tokio::test]
async fn appends_read_back_incrementally() {
    let Some(azurite) = azurite() else { return };
    let container = Container::create(azurite, "appends").await;
    let url = container.blob_url("stream");
    let blob = client();
    blob.create_append_blob("stream", &url).await.unwrap();
    assert_eq!(
        blob.read_from("stream", &url, 0, None).await.unwrap(),
        RangeRead::NoNewData,
        "a new append blob is empty"
    );

    let chunks = [
        Bytes::from_static(b"first"),
        Bytes::from_static(b"second, longer"),
        Bytes::from(pattern(100_000)),
        Bytes::from_static(b"!"),
    ];
    let (mut offset, mut etag) = (0u64, None::<String>);
    for chunk in &chunks {
        blob.append_block("stream", &url, offset, chunk.clone())
            .await
            .unwrap();
        let (bytes, new_etag) = data(
            blob.read_from("stream", &url, offset, etag.as_deref())
                .await
                .unwrap(),
        );
        assert!(bytes == *chunk, "a read returns exactly the new bytes");
        offset += bytes.len() as u64;
        etag = new_etag;
        assert!(etag.is_some(), "reads carry the blob's ETag");
    }

    let (all, _) = data(blob.read_from("stream", &url, 0, None).await.unwrap());
    assert!(all == chunks.concat(), "the blob is the appends in order");
}

#[tokio::test]
async fn an_unchanged_blob_read_with_its_etag_is_no_new_data() {
    let Some(azurite) = azurite() else { return };
    let container = Container::create(azurite, "etag").await;
    let url = container.blob_url("stream");
    let blob = client();
    blob.create_append_blob("stream", &url).await.unwrap();
    blob.append_block("stream", &url, 0, Bytes::from_static(b"abc"))
        .await
        .unwrap();
    let (_, etag) = data(blob.read_from("stream", &url, 0, None).await.unwrap());
    let etag = etag.unwrap();

    for offset in [0, 3] {
        assert_eq!(
            blob.read_from("stream", &url, offset, Some(&etag))
                .await
                .unwrap(),
            RangeRead::NoNewData,
            "read at {offset} with the current ETag"
        );
    }

    blob.append_block("stream", &url, 3, Bytes::from_static(b"def"))
        .await
        .unwrap();
    let (bytes, new_etag) = data(
        blob.read_from("stream", &url, 3, Some(&etag))
            .await
            .unwrap(),
    );
    assert_eq!(bytes, Bytes::from_static(b"def"), "a changed blob is read");
    assert_ne!(new_etag.as_deref(), Some(etag.as_str()));
}

#[tokio::test]
async fn a_read_at_or_past_the_end_is_no_new_data() {
    let Some(azurite) = azurite() else { return };
    let container = Container::create(azurite, "past-end").await;
    let blob = client();
    let append_url = container.blob_url("stream");
    blob.create_append_blob("stream", &append_url)
        .await
        .unwrap();
    blob.append_block("stream", &append_url, 0, Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    let block_url = container.blob_url("layer");
    blob.put_block_blob("layer", &block_url, Bytes::from_static(b"0123456789"))
        .await
        .unwrap();

    for (name, url) in [("stream", &append_url), ("layer", &block_url)] {
        for offset in [10, 11, 1 << 20] {
            assert_eq!(
                blob.read_from(name, url, offset, None).await.unwrap(),
                RangeRead::NoNewData,
                "{name} read at {offset}"
            );
        }
    }
}

#[tokio::test]
async fn a_retried_append_with_a_stale_position_is_absorbed_not_duplicated() {
    let Some(azurite) = azurite() else { return };
    let container = Container::create(azurite, "retried-append").await;
    let url = container.blob_url("stream");
    let blob = client();
    blob.create_append_blob("stream", &url).await.unwrap();

    // Each append sent twice, as when the answer to the first was lost.
    for (position, chunk) in [(0, &b"abc"[..]), (3, b"defg")] {
        for _ in 0..2 {
            blob.append_block("stream", &url, position, Bytes::from_static(chunk))
                .await
                .unwrap();
        }
    }

    let (bytes, _) = data(blob.read_from("stream", &url, 0, None).await.unwrap());
    assert_eq!(bytes, Bytes::from_static(b"abcdefg"));
}

/// Why `append_block` spells `comp=appendblock` for Azure: the other spelling, which act
/// wants, is refused, and writes nothing.
#[tokio::test]
async fn azure_refuses_the_append_spelling_act_wants() {
    let Some(azurite) = azurite() else { return };
    let container = Container::create(azurite, "append-spelling").await;
    let url = container.blob_url("stream");
    let blob = client();
    blob.create_append_blob("stream", &url).await.unwrap();

    let response = reqwest::Client::new()
        .put(format!("{url}&comp=appendBlock"))
        .header("x-ms-version", SAS_VERSION)
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        blob.read_from("stream", &url, 0, None).await.unwrap(),
        RangeRead::NoNewData
    );
}

#[tokio::test]
async fn an_expired_or_forged_signature_is_a_403_naming_artifact_and_operation() {
    let Some(azurite) = azurite() else { return };
    let container = Container::create(azurite, "dead-signature").await;
    let blob = client();
    let good = container.blob_url("stream");
    blob.create_append_blob("my-stream", &good).await.unwrap();
    blob.append_block("my-stream", &good, 0, Bytes::from_static(b"abc"))
        .await
        .unwrap();

    let expired = account_sas("2001-01-01T00:00:00Z");
    let forged = valid_sas().replace("&sig=", "&sig=AAAA");
    let dir = tempfile::tempdir().unwrap();
    for sas in [expired, forged] {
        let stream = container.signed_url("stream", &sas);
        let layer = container.signed_url("layer", &sas);
        let errors = [
            (
                "read",
                "my-stream",
                blob.read_from("my-stream", &stream, 0, None).await,
            ),
            (
                "append block",
                "my-stream",
                blob.append_block("my-stream", &stream, 3, Bytes::from_static(b"def"))
                    .await
                    .map(|()| RangeRead::NoNewData),
            ),
            (
                "download",
                "my-stream",
                blob.download("my-stream", &stream, &dir.path().join("d"))
                    .await
                    .map(|_| RangeRead::NoNewData),
            ),
            (
                "put block",
                "my-layer",
                blob.put_block_blob("my-layer", &layer, Bytes::from_static(b"x"))
                    .await
                    .map(|()| RangeRead::NoNewData),
            ),
        ];
        for (op, artifact, result) in errors {
            let error = result.expect_err(op);
            assert_eq!(error.status(), Some(403), "{op}: {error}");
            let message = error.to_string();
            assert!(message.contains(op), "{message}");
            assert!(message.contains(&format!("'{artifact}'")), "{message}");
        }
    }
    // Nothing was written through the dead URLs.
    let (bytes, _) = data(blob.read_from("my-stream", &good, 0, None).await.unwrap());
    assert_eq!(bytes, Bytes::from_static(b"abc"));
}
