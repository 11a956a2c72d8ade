//! Blob operations on signed URLs (Azure Blob REST, and act's variant of it).

use bytes::Bytes;

use super::{RetryPolicy, StoreError};

/// What a ranged read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRead {
    /// New bytes starting at the requested offset, and the blob's current ETag if given.
    Data { bytes: Bytes, etag: Option<String> },
    /// Nothing after the offset (304 on the ETag, 416 past the end, or an empty 206).
    NoNewData,
}

/// Raw blob requests on signed URLs, with retries. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobClient {
    _retry: RetryPolicy,
}

impl BlobClient {
    /// A client with its own HTTP connection pool.
    pub fn new(retry: RetryPolicy) -> Self {
        Self { _retry: retry }
    }
    /// Uploads `data` as a block blob: staged blocks, then the block list.
    pub async fn put_block_blob(&self, _url: &str, _data: Bytes) -> Result<(), StoreError> {
        todo!()
    }
    /// Creates an empty append blob at `url`.
    pub async fn create_append_blob(&self, _url: &str) -> Result<(), StoreError> {
        todo!()
    }
    /// Appends one block (at most 4 MiB) to the append blob at `url`.
    pub async fn append_block(&self, _url: &str, _data: Bytes) -> Result<(), StoreError> {
        todo!()
    }
    /// Reads what the blob holds from `offset` on, conditional on `etag` when given.
    pub async fn read_from(
        &self,
        _url: &str,
        _offset: u64,
        _etag: Option<&str>,
    ) -> Result<RangeRead, StoreError> {
        todo!()
    }
}
