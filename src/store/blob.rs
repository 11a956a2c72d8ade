//! Blob operations on signed URLs: Azure Blob REST as github.com serves it, and act's
//! variant of it.
//!
//! Differences this module absorbs: act writes data only for `comp=block` and
//! `comp=appendBlock` (that spelling) and ignores a plain `PUT`, while Azure answers
//! `comp=appendBlock` with 400 and wants `comp=appendblock`; act ignores `Range` and
//! `If-None-Match` and always answers 200 with the whole blob; Azure answers a range at the end
//! of a blob with 416 (Azurite with an empty 206). Query parameters are appended to the signed
//! URL as text, never re-serialised, because act checks its signature on the exact string.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use reqwest::{Client, Method, RequestBuilder, StatusCode, header};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::retry::{self, FetchError};
use super::{RetryPolicy, StoreError};

/// The Azure Blob REST version we speak (old enough for every Azurite release).
const API_VERSION: &str = "2020-10-02";
/// The largest block we stage (Azure allows far more; this bounds memory per upload).
pub const BLOCK_SIZE: usize = 8 * 1024 * 1024;
/// Blocks staged at once (blob storage takes them in any order; the block list orders them).
const PARALLEL_BLOCKS: usize = 4;
/// The path of act's upload route: its signed upload URLs point here.
const ACT_UPLOAD_PATH: &str = "/twirp/github.actions.results.api.v1.ArtifactService/UploadArtifact";

/// What a ranged read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRead {
    /// New bytes starting at the requested offset, and the blob's current ETag if given.
    Data {
        /// The bytes from the offset on.
        bytes: Bytes,
        /// The blob's ETag, for the next conditional read.
        etag: Option<String>,
    },
    /// Nothing after the offset (304 on the ETag, 416 past the end, or an empty 206).
    NoNewData,
}

/// What a ranged read of one span of a blob found.
#[derive(Debug)]
pub(super) enum Span {
    /// The server honoured the range: the span's bytes, and the blob's length.
    Part {
        /// The bytes of the span.
        bytes: Bytes,
        /// The blob's length, from `Content-Range`.
        total: u64,
    },
    /// The server ignores ranges (act; Azure for an empty blob): the whole blob follows in
    /// this answer's body.
    Whole(reqwest::Response),
}

/// Raw blob requests on signed URLs, with retries. Every method names the artifact the URL
/// belongs to, for error messages. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobClient {
    http: Client,
    retry: RetryPolicy,
}

impl BlobClient {
    /// A client with its own HTTP connection pool.
    pub fn new(retry: RetryPolicy) -> Self {
        Self {
            http: http_client(),
            retry,
        }
    }

    /// A client sharing `http`'s connection pool.
    pub(super) fn with_http(http: Client, retry: RetryPolicy) -> Self {
        Self { http, retry }
    }

    fn request(&self, method: Method, url: String) -> RequestBuilder {
        self.http
            .request(method, url)
            .header("x-ms-version", API_VERSION)
    }

    /// Sends with retries and turns a non-success answer into an error.
    async fn expect_success(
        &self,
        op: &'static str,
        artifact: &str,
        make: impl FnMut() -> RequestBuilder,
    ) -> Result<reqwest::Response, StoreError> {
        let response = retry::send(&self.retry, op, artifact, make).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(StoreError::from_response(op, artifact, response).await)
        }
    }

    /// Stages block number `index` (on act, blocks must be staged in order: it appends them
    /// as they come).
    pub async fn put_block(
        &self,
        artifact: &str,
        url: &str,
        index: u32,
        data: Bytes,
    ) -> Result<(), StoreError> {
        let id: String = url::form_urlencoded::byte_serialize(block_id(index).as_bytes()).collect();
        let target = with_query(url, &format!("comp=block&blockid={id}"));
        self.expect_success("put block", artifact, || {
            self.request(Method::PUT, target.clone()).body(data.clone())
        })
        .await?;
        Ok(())
    }

    /// Commits blocks `0..count` as the blob's content.
    pub async fn put_block_list(
        &self,
        artifact: &str,
        url: &str,
        count: u32,
    ) -> Result<(), StoreError> {
        let mut xml = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
        for index in 0..count {
            xml.push_str(&format!("<Latest>{}</Latest>", block_id(index)));
        }
        xml.push_str("</BlockList>");
        let target = with_query(url, "comp=blocklist");
        self.expect_success("put block list", artifact, || {
            self.request(Method::PUT, target.clone())
                .header(header::CONTENT_TYPE, "application/xml")
                .body(xml.clone())
        })
        .await?;
        Ok(())
    }

    /// Uploads `data` as a block blob: staged blocks, then the block list.
    pub async fn put_block_blob(
        &self,
        artifact: &str,
        url: &str,
        data: Bytes,
    ) -> Result<(), StoreError> {
        self.put_block_blob_from(artifact, url, &data[..], "memory")
            .await?;
        Ok(())
    }

    /// Uploads what `reader` yields as a block blob, a few blocks at a time so memory stays
    /// bounded: staged blocks (several at once, except on act, which appends blocks in the
    /// order they arrive), then the block list. Returns the byte count. Nothing to read gives
    /// an empty blob of no blocks (Azure refuses an empty block). `source` names the reader in
    /// I/O errors.
    pub async fn put_block_blob_from(
        &self,
        artifact: &str,
        url: &str,
        mut reader: impl AsyncRead + Unpin,
        source: &str,
    ) -> Result<u64, StoreError> {
        let in_flight = if url.contains(ACT_UPLOAD_PATH) {
            1
        } else {
            PARALLEL_BLOCKS
        };
        let mut staging = FuturesUnordered::new();
        let (mut size, mut count) = (0u64, 0u32);
        loop {
            let mut block = Vec::with_capacity(BLOCK_SIZE);
            (&mut reader)
                .take(BLOCK_SIZE as u64)
                .read_to_end(&mut block)
                .await
                .map_err(|e| StoreError::Io {
                    context: format!("reading {source} to upload it as '{artifact}'"),
                    source: e,
                })?;
            if block.is_empty() {
                break;
            }
            let full = block.len() == BLOCK_SIZE;
            size += block.len() as u64;
            staging.push(self.put_block(artifact, url, count, Bytes::from(block)));
            count += 1;
            while staging.len() >= in_flight {
                if let Some(staged) = staging.next().await {
                    staged?;
                }
            }
            if !full {
                break;
            }
        }
        while let Some(staged) = staging.next().await {
            staged?;
        }
        self.put_block_list(artifact, url, count).await?;
        Ok(size)
    }

    /// Creates an empty append blob at `url`.
    pub async fn create_append_blob(&self, artifact: &str, url: &str) -> Result<(), StoreError> {
        self.expect_success("create append blob", artifact, || {
            self.request(Method::PUT, url.to_string())
                .header("x-ms-blob-type", "AppendBlob")
                .header(header::CONTENT_LENGTH, 0)
        })
        .await?;
        Ok(())
    }

    /// Appends one block (at most 4 MiB) to the append blob at `url`, which we know to hold
    /// `position` bytes: Azure then refuses a duplicate of an append whose answer was lost,
    /// and that refusal (412) means the block is already there.
    pub async fn append_block(
        &self,
        artifact: &str,
        url: &str,
        position: u64,
        data: Bytes,
    ) -> Result<(), StoreError> {
        let comp = if url.contains(ACT_UPLOAD_PATH) {
            "comp=appendBlock"
        } else {
            "comp=appendblock"
        };
        let target = with_query(url, comp);
        let response = retry::send(&self.retry, "append block", artifact, || {
            self.request(Method::PUT, target.clone())
                .header("x-ms-blob-condition-appendpos", position)
                .body(data.clone())
        })
        .await?;
        match response.status() {
            s if s.is_success() => Ok(()),
            StatusCode::PRECONDITION_FAILED => Ok(()),
            _ => Err(StoreError::from_response("append block", artifact, response).await),
        }
    }

    /// Reads what the blob holds from `offset` on, conditional on `etag` when given.
    pub async fn read_from(
        &self,
        artifact: &str,
        url: &str,
        offset: u64,
        etag: Option<&str>,
    ) -> Result<RangeRead, StoreError> {
        retry::fetch(&self.retry, "read", artifact, || {
            self.read_once(artifact, url, offset, etag)
        })
        .await
    }

    /// One ranged read (its request retried as every request is).
    async fn read_once(
        &self,
        artifact: &str,
        url: &str,
        offset: u64,
        etag: Option<&str>,
    ) -> Result<RangeRead, FetchError> {
        let response = retry::send(&self.retry, "read", artifact, || {
            let mut request = self
                .request(Method::GET, url.to_string())
                .header("x-ms-range", format!("bytes={offset}-"));
            if let Some(etag) = etag {
                request = request.header(header::IF_NONE_MATCH, etag);
            }
            request
        })
        .await?;
        let status = response.status();
        match status {
            StatusCode::NOT_MODIFIED | StatusCode::RANGE_NOT_SATISFIABLE => {
                return Ok(RangeRead::NoNewData);
            }
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => {}
            _ => {
                return Err(StoreError::from_response("read", artifact, response)
                    .await
                    .into());
            }
        }
        let new_etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await.map_err(FetchError::Cut)?;
        // A 200 is the whole blob (act ignores Range): keep what lies past the offset.
        let bytes = if status == StatusCode::OK {
            let skip = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(body.len());
            body.slice(skip..)
        } else {
            body
        };
        if bytes.is_empty() {
            return Ok(RangeRead::NoNewData);
        }
        Ok(RangeRead::Data {
            bytes,
            etag: new_etag,
        })
    }

    /// Reads bytes `start..=end` of the blob at `url`, whole (a cut body is read again).
    pub(super) async fn read_span(
        &self,
        artifact: &str,
        url: &str,
        start: u64,
        end: u64,
    ) -> Result<Span, StoreError> {
        retry::fetch(&self.retry, "read", artifact, || async move {
            let response = self
                .expect_success("read", artifact, || {
                    self.request(Method::GET, url.to_string())
                        .header("x-ms-range", format!("bytes={start}-{end}"))
                })
                .await?;
            if response.status() != StatusCode::PARTIAL_CONTENT {
                return Ok(Span::Whole(response));
            }
            let total = content_range_total(&response).ok_or_else(|| {
                FetchError::Failed(StoreError::Protocol {
                    op: "read",
                    artifact: artifact.to_string(),
                    message: "a 206 answer without a usable Content-Range".into(),
                })
            })?;
            let bytes = response.bytes().await.map_err(FetchError::Cut)?;
            let expected = end.min(total.saturating_sub(1)).saturating_sub(start) + 1;
            if bytes.len() as u64 != expected {
                return Err(FetchError::Failed(StoreError::Protocol {
                    op: "read",
                    artifact: artifact.to_string(),
                    message: format!(
                        "asked for bytes {start}-{end} of {total}, got {} bytes",
                        bytes.len()
                    ),
                }));
            }
            Ok(Span::Part { bytes, total })
        })
        .await
    }

    /// Downloads the whole blob at `url` into `dest` (created or truncated), streaming;
    /// returns the byte count. A download cut short is retried from the start.
    pub async fn download(
        &self,
        artifact: &str,
        url: &str,
        dest: &Path,
    ) -> Result<u64, StoreError> {
        retry::fetch(&self.retry, "download", artifact, || async move {
            let response = self
                .expect_success("download", artifact, || {
                    self.request(Method::GET, url.to_string())
                })
                .await?;
            write_body(response, artifact, dest).await
        })
        .await
    }
}

/// Streams a body into `dest`: a cut is worth retrying, a local write error is not.
async fn write_body(
    mut response: reqwest::Response,
    artifact: &str,
    dest: &Path,
) -> Result<u64, FetchError> {
    let io = |source| {
        FetchError::Failed(StoreError::Io {
            context: format!("writing artifact '{artifact}' to {}", dest.display()),
            source,
        })
    };
    let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
    let mut written = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(FetchError::Cut)? {
        file.write_all(&chunk).await.map_err(io)?;
        written += chunk.len() as u64;
    }
    file.flush().await.map_err(io)?;
    Ok(written)
}

/// The blob length of a `Content-Range: bytes a-b/total` header.
fn content_range_total(response: &reqwest::Response) -> Option<u64> {
    let value = response
        .headers()
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    value.rsplit_once('/')?.1.trim().parse().ok()
}

/// The HTTP client every store request goes through: bounded connect and read waits so a
/// dead server becomes a retried error rather than a hang.
pub(super) fn http_client() -> Client {
    Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// `url` with `extra` appended to its query as text.
fn with_query(url: &str, extra: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{extra}")
}

/// Block ids must all have the same length: base64 of a zero-padded index.
fn block_id(index: u32) -> String {
    STANDARD.encode(format!("block-{index:010}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_appended_as_text() {
        assert_eq!(
            with_query("http://h/p?sig=a%2Bb==&x=1", "comp=block"),
            "http://h/p?sig=a%2Bb==&x=1&comp=block"
        );
        assert_eq!(
            with_query("http://h/p", "comp=block"),
            "http://h/p?comp=block"
        );
    }

    #[test]
    fn block_ids_have_one_length() {
        assert_eq!(block_id(0).len(), block_id(u32::MAX).len());
        assert_ne!(block_id(1), block_id(2));
    }
}
