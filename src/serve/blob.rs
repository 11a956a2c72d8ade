//! The blob half: the Azure Blob REST operations the Azure SDK (`@azure/storage-blob`, under
//! `@actions/artifact`) and our own client send to signed URLs, answered as Azure answers.
//!
//! - `PUT` with `x-ms-blob-type: BlockBlob` (single-shot upload) or `AppendBlob` (create);
//! - `PUT ?comp=block&blockid=…`, `PUT ?comp=blocklist` (XML `<BlockList>` of
//!   `<Latest>`/`<Committed>`/`<Uncommitted>` ids);
//! - `PUT ?comp=appendblock` (Azure's lowercase spelling; any other `comp` is 400
//!   `InvalidQueryParameterValue`, as Azure answers `appendBlock`), honouring
//!   `x-ms-blob-condition-appendpos` and the configured size and count limits;
//! - `GET` with `Range`/`x-ms-range: bytes=N-[M]` (206), `If-None-Match` (304), a start at or
//!   past the end of a non-empty blob (416 `InvalidRange`); `HEAD` for properties.
//!
//! Every answer carries `x-ms-request-id` and `x-ms-version`; errors carry `x-ms-error-code`
//! and Azure's XML error body.

use std::io::SeekFrom;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

use super::App;
use super::blobs::{BlobError, BlobKind, BlockSource, Props};
use super::faults::{Fault, RETRY_AFTER_SECS};
use super::sign::{Access, SignatureError, SignedQuery};

/// The storage API version we answer with when the client names none.
const DEFAULT_VERSION: &str = "2025-11-05";
/// Largest block list body we read (50,000 ids of up to 88 characters, with tags).
const MAX_BLOCK_LIST_BYTES: usize = 16 << 20;

/// An Azure error answer.
#[derive(Debug)]
pub(super) struct AzureError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AzureError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for AzureError {
    fn into_response(self) -> Response {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{}</Code><Message>{}</Message></Error>",
            self.code,
            xml_escape(&self.message)
        );
        let mut response = (
            self.status,
            [
                (header::CONTENT_TYPE, "application/xml"),
                (HeaderName::from_static("x-ms-error-code"), self.code),
            ],
            body,
        )
            .into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

impl From<BlobError> for AzureError {
    fn from(e: BlobError) -> Self {
        let (status, code) = match &e {
            BlobError::NotFound => (StatusCode::NOT_FOUND, "BlobNotFound"),
            BlobError::InvalidBlobType(_) => (StatusCode::CONFLICT, "InvalidBlobType"),
            BlobError::InvalidBlockId(_) => (StatusCode::BAD_REQUEST, "InvalidQueryParameterValue"),
            BlobError::BlockIdLength(_) => (StatusCode::BAD_REQUEST, "InvalidBlobOrBlock"),
            BlobError::InvalidBlockList(_) => (StatusCode::BAD_REQUEST, "InvalidBlockList"),
            BlobError::BlockCountExceedsLimit(_) => {
                (StatusCode::CONFLICT, "BlockCountExceedsLimit")
            }
            BlobError::AppendPosition { .. } => (
                StatusCode::PRECONDITION_FAILED,
                "AppendPositionConditionNotMet",
            ),
            BlobError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<SignatureError> for AzureError {
    fn from(e: SignatureError) -> Self {
        let code = match e {
            SignatureError::WrongPermission { .. } => "AuthorizationPermissionMismatch",
            _ => "AuthenticationFailed",
        };
        Self::new(
            StatusCode::FORBIDDEN,
            code,
            format!("Server failed to authenticate the request: {e}"),
        )
    }
}

impl From<Fault> for AzureError {
    fn from(fault: Fault) -> Self {
        match fault {
            Fault::Internal => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "injected fault",
            ),
            Fault::Unavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServerBusy",
                "injected fault",
            ),
            Fault::Throttled => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ServerBusy",
                "injected throttling",
            ),
        }
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The decoded query of a blob request.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<String>) -> Self {
        let raw = raw.unwrap_or_default();
        Self(
            url::form_urlencoded::parse(raw.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn signed(&self) -> SignedQuery<'_> {
        SignedQuery {
            sig: self.get("sig"),
            se: self.get("se"),
            sp: self.get("sp"),
        }
    }
}

/// Counts the request, injects faults, and checks the signature: what every request goes
/// through before it may take effect.
async fn admit(
    app: &App,
    op: &str,
    id: u64,
    query: &Query,
    access: Access,
) -> Result<(), AzureError> {
    app.stats.count_blob(op);
    if let Some(fault) = app.faults.before_request().await {
        return Err(fault.into());
    }
    app.signer.check(id, &query.signed(), access)?;
    Ok(())
}

/// Adds `x-ms-request-id` and `x-ms-version` to every blob answer.
pub(super) async fn azure_headers(
    State(app): State<Arc<App>>,
    request: Request,
    next: Next,
) -> Response {
    let version = request
        .headers()
        .get("x-ms-version")
        .cloned()
        .unwrap_or(HeaderValue::from_static(DEFAULT_VERSION));
    let received = content_length(request.headers()).unwrap_or(0);
    // A HEAD answer states the blob's length but carries no body.
    let has_body = request.method() != axum::http::Method::HEAD;
    let mut response = next.run(request).await;
    let sent = if has_body {
        content_length(response.headers()).unwrap_or(0)
    } else {
        0
    };
    app.stats.count_blob_bytes(received, sent);
    let n = app.request_seq.fetch_add(1, Ordering::Relaxed);
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&format!("00000000-0000-4000-8000-{n:012x}")) {
        headers.insert("x-ms-request-id", id);
    }
    headers.insert("x-ms-version", version);
    response
}

/// `PUT`: every write.
pub(super) async fn put(
    State(app): State<Arc<App>>,
    Path(id): Path<u64>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AzureError> {
    let query = Query::parse(query);
    let comp = query.get("comp");
    let op = match comp {
        None => "put_blob",
        Some("block") => "put_block",
        Some("blocklist") => "put_block_list",
        Some("appendblock") => "append_block",
        Some(_) => "other",
    };
    admit(&app, op, id, &query, Access::Write).await?;
    let content_type = || {
        headers
            .get("x-ms-blob-content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_string()
    };
    match comp {
        None => {
            let props = match headers.get("x-ms-blob-type").map(HeaderValue::as_bytes) {
                Some(b"BlockBlob") => {
                    app.blobs
                        .put_block_blob(id, content_type(), body.into_data_stream())
                        .await?
                }
                Some(b"AppendBlob") => {
                    if content_length(&headers).is_some_and(|n| n > 0) {
                        return Err(AzureError::bad_request(
                            "InvalidHeaderValue",
                            "creating an append blob takes no body (Content-Length must be 0)",
                        ));
                    }
                    app.blobs.create_append_blob(id, content_type()).await?
                }
                Some(_) => {
                    return Err(AzureError::bad_request(
                        "InvalidHeaderValue",
                        "x-ms-blob-type must be BlockBlob or AppendBlob (page blobs are not supported)",
                    ));
                }
                None => {
                    return Err(AzureError::bad_request(
                        "MissingRequiredHeader",
                        "x-ms-blob-type is required",
                    ));
                }
            };
            Ok(created(&props, &[]))
        }
        Some("block") => {
            let block_id = query.get("blockid").ok_or_else(|| {
                AzureError::bad_request("MissingRequiredQueryParameter", "blockid is required")
            })?;
            // Azure refuses an empty block (Azurite too): clients must not send one.
            if headers
                .get(header::CONTENT_LENGTH)
                .is_some_and(|len| len == "0")
            {
                return Err(AzureError::bad_request(
                    "InvalidHeaderValue",
                    "Content-Length 0: a block must not be empty",
                ));
            }
            app.blobs
                .stage_block(id, block_id, body.into_data_stream())
                .await?;
            // Azure's Put Block answers without an ETag: the blob does not change.
            Ok(StatusCode::CREATED.into_response())
        }
        Some("blocklist") => {
            let xml = axum::body::to_bytes(body, MAX_BLOCK_LIST_BYTES)
                .await
                .map_err(|e| {
                    AzureError::bad_request(
                        "InvalidXmlDocument",
                        format!("reading the block list: {e}"),
                    )
                })?;
            let list = parse_block_list(&xml)?;
            let props = app.blobs.commit_blocks(id, &list, content_type()).await?;
            Ok(created(&props, &[]))
        }
        Some("appendblock") => append(&app, id, &headers, body).await,
        Some(other) => Err(AzureError::bad_request(
            "InvalidQueryParameterValue",
            format!(
                "comp={other} is not a supported operation (the append block operation is comp=appendblock)"
            ),
        )),
    }
}

async fn append(
    app: &App,
    id: u64,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, AzureError> {
    let limit = app.max_append_bytes;
    let too_large = || {
        AzureError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestBodyTooLarge",
            format!("the append block is larger than the limit of {limit} bytes"),
        )
    };
    if content_length(headers).is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let data = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|_| too_large())?;
    if data.is_empty() {
        return Err(AzureError::bad_request(
            "InvalidHeaderValue",
            "an append block must not be empty",
        ));
    }
    let append_pos = match headers.get("x-ms-blob-condition-appendpos") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    AzureError::bad_request(
                        "InvalidHeaderValue",
                        "x-ms-blob-condition-appendpos must be a number",
                    )
                })?,
        ),
        None => None,
    };
    let (props, offset) = app
        .blobs
        .append(id, &data, append_pos, app.max_appends)
        .await?;
    Ok(created(
        &props,
        &[("x-ms-blob-append-offset", offset.to_string())],
    ))
}

/// `GET`: the blob, or the requested range of it.
pub(super) async fn get(
    State(app): State<Arc<App>>,
    Path(id): Path<u64>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AzureError> {
    admit(&app, "get", id, &Query::parse(query), Access::Read).await?;
    let (mut file, props) = app.blobs.open(id).await?;
    if let Some(unchanged) = not_modified(&headers, &props) {
        return Ok(unchanged);
    }
    let len = props.len;
    let range = match requested_range(&headers) {
        // Azure ignores a range on an empty blob.
        Some(_) if len == 0 => None,
        Some((start, _)) if start >= len => {
            let mut response = AzureError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                format!("the range starts at {start}, the blob has {len} bytes"),
            )
            .into_response();
            insert(
                response.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes */{len}"),
            );
            return Ok(response);
        }
        Some((start, end)) => Some((start, end.map_or(len - 1, |e| e.min(len - 1)))),
        None => None,
    };
    let (status, start, count) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, len),
    };
    file.seek(SeekFrom::Start(start)).await.map_err(|e| {
        AzureError::from(BlobError::Io {
            context: format!("reading blob {id}"),
            source: e,
        })
    })?;
    let mut response = Response::new(body_of(file.take(count)));
    *response.status_mut() = status;
    describe(response.headers_mut(), &props, count);
    if let Some((start, end)) = range {
        insert(
            response.headers_mut(),
            header::CONTENT_RANGE,
            &format!("bytes {start}-{end}/{len}"),
        );
    }
    Ok(response)
}

/// `HEAD`: the blob's properties.
pub(super) async fn head(
    State(app): State<Arc<App>>,
    Path(id): Path<u64>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AzureError> {
    admit(&app, "head", id, &Query::parse(query), Access::Read).await?;
    let (_, props) = app.blobs.open(id).await?;
    if let Some(unchanged) = not_modified(&headers, &props) {
        return Ok(unchanged);
    }
    let mut response = Response::new(Body::empty());
    describe(response.headers_mut(), &props, props.len);
    Ok(response)
}

/// 201 with the blob's ETag and any extra headers.
fn created(props: &Props, extra: &[(&'static str, String)]) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let headers = response.headers_mut();
    insert(headers, header::ETAG, &props.etag);
    insert(
        headers,
        HeaderName::from_static("x-ms-blob-committed-block-count"),
        &props.block_count.to_string(),
    );
    for (name, value) in extra {
        insert(headers, HeaderName::from_static(name), value);
    }
    response
}

/// The headers of a GET or HEAD answer carrying `len` bytes of the blob.
fn describe(headers: &mut HeaderMap, props: &Props, len: u64) {
    insert(headers, header::ETAG, &props.etag);
    insert(headers, header::CONTENT_TYPE, &props.content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        "x-ms-blob-type",
        HeaderValue::from_static(props.kind.header()),
    );
    if props.kind == BlobKind::Append {
        headers.insert(
            "x-ms-blob-committed-block-count",
            HeaderValue::from(props.block_count),
        );
    }
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// 304 if `If-None-Match` names the blob's current ETag (or is `*`).
fn not_modified(headers: &HeaderMap, props: &Props) -> Option<Response> {
    let wanted = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    let unquoted = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    let current = unquoted(&props.etag);
    let matches = wanted
        .split(',')
        .any(|t| t.trim() == "*" || unquoted(t) == current);
    matches.then(|| {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        insert(response.headers_mut(), header::ETAG, &props.etag);
        response
    })
}

/// `bytes=N-` or `bytes=N-M` from `x-ms-range` (preferred, as Azure) or `Range`; anything
/// else is ignored, as HTTP says.
fn requested_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let value = headers
        .get("x-ms-range")
        .or_else(|| headers.get(header::RANGE))?
        .to_str()
        .ok()?;
    let (start, end) = value.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let end = match end.trim() {
        "" => None,
        end => Some(end.parse().ok().filter(|&e| e >= start)?),
    };
    Some((start, end))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The block list of a `comp=blocklist` body, in order.
fn parse_block_list(xml: &[u8]) -> Result<Vec<(BlockSource, String)>, AzureError> {
    let invalid =
        |why: &str| AzureError::bad_request("InvalidXmlDocument", format!("bad block list: {why}"));
    let xml = std::str::from_utf8(xml).map_err(|_| invalid("not UTF-8"))?;
    let start = xml
        .find("<BlockList>")
        .ok_or_else(|| invalid("no <BlockList> element"))?;
    let mut rest = &xml[start + "<BlockList>".len()..];
    let mut list = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.starts_with("</BlockList>") {
            return Ok(list);
        }
        let (source, tag) = [
            (BlockSource::Latest, "Latest"),
            (BlockSource::Committed, "Committed"),
            (BlockSource::Uncommitted, "Uncommitted"),
        ]
        .into_iter()
        .find(|(_, tag)| rest.starts_with(&format!("<{tag}>")))
        .ok_or_else(|| invalid("expected <Latest>, <Committed>, <Uncommitted> or </BlockList>"))?;
        rest = &rest[tag.len() + 2..];
        let close = format!("</{tag}>");
        let end = rest
            .find(&close)
            .ok_or_else(|| invalid("unclosed element"))?;
        list.push((source, rest[..end].trim().to_string()));
        rest = &rest[end + close.len()..];
    }
}

/// A response body streaming from `reader`.
fn body_of(reader: impl AsyncRead + Send + Unpin + 'static) -> Body {
    let chunks = futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut buf = BytesMut::with_capacity(64 << 10);
        match reader.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok::<Bytes, std::io::Error>(buf.freeze()), Some(reader))),
            Err(e) => Some((Err(e), None)),
        }
    });
    Body::from_stream(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_list_keeps_order_and_kinds() {
        let xml = br#"<?xml version="1.0" encoding="utf-8"?>
            <BlockList><Latest>QQ==</Latest> <Committed>Qg==</Committed>
            <Uncommitted>Qw==</Uncommitted></BlockList>"#;
        let list = parse_block_list(xml).unwrap();
        assert_eq!(
            list,
            [
                (BlockSource::Latest, "QQ==".to_string()),
                (BlockSource::Committed, "Qg==".to_string()),
                (BlockSource::Uncommitted, "Qw==".to_string()),
            ]
        );
        assert!(
            parse_block_list(b"<BlockList></BlockList>")
                .unwrap()
                .is_empty()
        );
        assert!(parse_block_list(b"<BlockList><Latest>x</BlockList>").is_err());
        assert!(parse_block_list(b"<Other/>").is_err());
    }

    #[test]
    fn ranges_of_the_forms_azure_clients_send() {
        let with = |name: &'static str, v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(v));
            requested_range(&h)
        };
        assert_eq!(with("range", "bytes=5-"), Some((5, None)));
        assert_eq!(with("x-ms-range", "bytes=0-9"), Some((0, Some(9))));
        assert_eq!(with("range", "bytes=9-3"), None);
        assert_eq!(with("range", "items=1-"), None);
    }
}
