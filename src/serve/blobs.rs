//! Blob bytes on disk, with Azure's block-blob and append-blob semantics: staged blocks
//! committed by a block list, single-shot puts, appends with a count limit, and reads of a
//! consistent snapshot while writers go on.
//!
//! Layout under the root: `blobs/{id}` holds a blob's committed bytes, `blocks/{id}/{hex}`
//! its staged blocks, `tmp/` bodies being received. Whole-blob writes go to `tmp/` and are
//! renamed into place, so a reader that opened the previous version keeps reading it; appends
//! write past the committed length, which readers never read beyond. Metadata lives in memory.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::fs::{self, File};
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};

/// What kind of blob it is (page blobs are not supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlobKind {
    /// Written by a single put or by committing a block list.
    Block,
    /// Written by appends.
    Append,
}

impl BlobKind {
    /// The `x-ms-blob-type` value.
    pub(super) fn header(self) -> &'static str {
        match self {
            BlobKind::Block => "BlockBlob",
            BlobKind::Append => "AppendBlob",
        }
    }
}

/// A blob's properties at one moment.
#[derive(Debug, Clone)]
pub(super) struct Props {
    /// Block or append blob.
    pub kind: BlobKind,
    /// Committed length in bytes.
    pub len: u64,
    /// Quoted ETag; changes with every write.
    pub etag: String,
    /// `x-ms-blob-content-type` given when the blob was written.
    pub content_type: String,
    /// Appends so far (append blobs) or committed blocks (block blobs).
    pub block_count: u64,
}

/// Where a block named in a block list comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlockSource {
    /// `<Latest>`: the staged block if there is one, else the committed one.
    Latest,
    /// `<Committed>`: the block in the current committed list.
    Committed,
    /// `<Uncommitted>`: the staged block.
    Uncommitted,
}

/// Why a blob operation failed; the blob half maps these to Azure error codes.
#[derive(Debug, thiserror::Error)]
pub(super) enum BlobError {
    /// No such blob (never written, or its artifact was deleted).
    #[error("the specified blob does not exist")]
    NotFound,
    /// A block operation on an append blob or the reverse.
    #[error("the operation is not permitted on a blob of type {0}")]
    InvalidBlobType(&'static str),
    /// The block id is not base64 of at most 64 bytes.
    #[error("block id {0:?} is not base64 of at most 64 bytes")]
    InvalidBlockId(String),
    /// Block ids of one blob must all have the same length.
    #[error("block id {0:?} differs in length from the blob's other block ids")]
    BlockIdLength(String),
    /// The block list names a block that is not there.
    #[error("block {0:?} of the block list is not staged or committed")]
    InvalidBlockList(String),
    /// The append blob has the most appends allowed.
    #[error("the append blob already has the maximum of {0} blocks")]
    BlockCountExceedsLimit(u64),
    /// `x-ms-blob-condition-appendpos` did not match the blob's length.
    #[error("append position {expected} does not match the blob length {actual}")]
    AppendPosition {
        /// What the client expected.
        expected: u64,
        /// The blob's length.
        actual: u64,
    },
    /// The disk failed us.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BlobError {
    let context = context.into();
    move |source| BlobError::Io { context, source }
}

/// A blob's committed state.
#[derive(Debug)]
struct Blob {
    props: Props,
    /// Committed blocks of a block blob, in order, with their lengths.
    committed: Vec<(String, u64)>,
}

/// Everything about one blob id; locked while an operation changes it.
#[derive(Debug, Default)]
struct Slot {
    deleted: bool,
    blob: Option<Blob>,
    /// Staged (uncommitted) blocks and their lengths.
    staged: HashMap<String, u64>,
}

/// A file in `tmp/` removed on drop unless persisted.
struct TmpFile(Option<PathBuf>);

impl TmpFile {
    async fn persist(mut self, to: &Path) -> Result<(), BlobError> {
        let Some(from) = self.0.take() else {
            return Ok(());
        };
        fs::rename(&from, to).await.map_err(io_error(format!(
            "moving {} to {}",
            from.display(),
            to.display()
        )))
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // Best effort: a leftover only wastes space in a directory we own.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The blob store.
#[derive(Debug)]
pub(super) struct BlobStore {
    root: PathBuf,
    slots: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<Slot>>>>,
    /// Source of ETags and temporary file names.
    seq: AtomicU64,
}

impl BlobStore {
    /// A store under `root` (created if missing).
    pub(super) fn new(root: &Path) -> std::io::Result<Self> {
        for dir in ["blobs", "blocks", "tmp"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            slots: Mutex::default(),
            seq: AtomicU64::new(1),
        })
    }

    /// Makes `id` a blob that may be written (its artifact exists); it holds no blob yet.
    pub(super) fn register(&self, id: u64) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::default());
    }

    /// Forgets `id` and deletes its bytes; later requests for it find nothing.
    pub(super) async fn remove(&self, id: u64) -> Result<(), BlobError> {
        let removed = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        let Some(slot) = removed else {
            return Ok(());
        };
        let mut slot = slot.lock().await;
        slot.deleted = true;
        slot.blob = None;
        slot.staged.clear();
        remove_if_present(&self.data_path(id), fs::remove_file(self.data_path(id))).await?;
        remove_if_present(
            &self.blocks_dir(id),
            fs::remove_dir_all(self.blocks_dir(id)),
        )
        .await
    }

    /// Replaces the blob with a block blob holding `body`; drops staged blocks.
    pub(super) async fn put_block_blob<S, E>(
        &self,
        id: u64,
        content_type: String,
        body: S,
    ) -> Result<Props, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let slot = self.slot(id)?;
        let (tmp, len) = self.receive(body).await?;
        let mut slot = live(slot.lock().await)?;
        tmp.persist(&self.data_path(id)).await?;
        self.drop_staged(id, &mut slot).await?;
        Ok(self.set_blob(&mut slot, BlobKind::Block, len, content_type, Vec::new()))
    }

    /// Replaces the blob with an empty append blob; drops staged blocks.
    pub(super) async fn create_append_blob(
        &self,
        id: u64,
        content_type: String,
    ) -> Result<Props, BlobError> {
        let slot = self.slot(id)?;
        let (tmp, _) = self
            .receive(futures_util::stream::empty::<Result<Bytes, std::io::Error>>())
            .await?;
        let mut slot = live(slot.lock().await)?;
        tmp.persist(&self.data_path(id)).await?;
        self.drop_staged(id, &mut slot).await?;
        Ok(self.set_blob(&mut slot, BlobKind::Append, 0, content_type, Vec::new()))
    }

    /// Stages `body` as block `block_id` (base64) of a block blob.
    pub(super) async fn stage_block<S, E>(
        &self,
        id: u64,
        block_id: &str,
        body: S,
    ) -> Result<(), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let valid = STANDARD
            .decode(block_id)
            .is_ok_and(|raw| !raw.is_empty() && raw.len() <= 64);
        if !valid {
            return Err(BlobError::InvalidBlockId(block_id.to_string()));
        }
        let slot = self.slot(id)?;
        let (tmp, len) = self.receive(body).await?;
        let mut slot = live(slot.lock().await)?;
        if let Some(blob) = &slot.blob {
            if blob.props.kind == BlobKind::Append {
                return Err(BlobError::InvalidBlobType("AppendBlob"));
            }
            if blob
                .committed
                .iter()
                .any(|(b, _)| b.len() != block_id.len())
            {
                return Err(BlobError::BlockIdLength(block_id.to_string()));
            }
        }
        if slot.staged.keys().any(|b| b.len() != block_id.len()) {
            return Err(BlobError::BlockIdLength(block_id.to_string()));
        }
        let dir = self.blocks_dir(id);
        fs::create_dir_all(&dir)
            .await
            .map_err(io_error(format!("creating {}", dir.display())))?;
        tmp.persist(&self.block_path(id, block_id)).await?;
        slot.staged.insert(block_id.to_string(), len);
        Ok(())
    }

    /// Commits the block list: the blob becomes the named blocks in order; the staged blocks
    /// not named are dropped, as Azure does.
    pub(super) async fn commit_blocks(
        &self,
        id: u64,
        list: &[(BlockSource, String)],
        content_type: String,
    ) -> Result<Props, BlobError> {
        let slot = self.slot(id)?;
        let mut slot = live(slot.lock().await)?;
        let committed: &[(String, u64)] = match &slot.blob {
            Some(blob) if blob.props.kind == BlobKind::Append => {
                return Err(BlobError::InvalidBlobType("AppendBlob"));
            }
            Some(blob) => &blob.committed,
            None => &[],
        };
        let committed_at = |name: &str| {
            let mut offset = 0;
            committed.iter().find_map(|(b, len)| {
                let found = (b == name).then_some((offset, *len));
                offset += len;
                found
            })
        };
        let tmp_path = self.tmp_path();
        let tmp = TmpFile(Some(tmp_path.clone()));
        let out = File::create(&tmp_path)
            .await
            .map_err(io_error(format!("creating {}", tmp_path.display())))?;
        let mut out = BufWriter::with_capacity(1 << 18, out);
        let mut new_list = Vec::with_capacity(list.len());
        let mut total = 0;
        for (source, name) in list {
            let staged = slot.staged.get(name).copied();
            let use_staged = match source {
                BlockSource::Uncommitted => true,
                BlockSource::Committed => false,
                BlockSource::Latest => staged.is_some(),
            };
            let (path, offset, len) = if use_staged {
                let len = staged.ok_or_else(|| BlobError::InvalidBlockList(name.clone()))?;
                (self.block_path(id, name), 0, len)
            } else {
                let (offset, len) =
                    committed_at(name).ok_or_else(|| BlobError::InvalidBlockList(name.clone()))?;
                (self.data_path(id), offset, len)
            };
            copy_range(&path, offset, len, &mut out).await?;
            new_list.push((name.clone(), len));
            total += len;
        }
        out.flush()
            .await
            .map_err(io_error(format!("writing {}", tmp_path.display())))?;
        tmp.persist(&self.data_path(id)).await?;
        self.drop_staged(id, &mut slot).await?;
        Ok(self.set_blob(&mut slot, BlobKind::Block, total, content_type, new_list))
    }

    /// Appends `data` to the append blob; returns its properties after and the offset the
    /// data landed at. `append_pos`: fail unless the blob is exactly this long.
    pub(super) async fn append(
        &self,
        id: u64,
        data: &[u8],
        append_pos: Option<u64>,
        max_appends: u64,
    ) -> Result<(Props, u64), BlobError> {
        let slot = self.slot(id)?;
        let mut slot = live(slot.lock().await)?;
        let etag = self.etag();
        let path = self.data_path(id);
        let blob = slot.blob.as_mut().ok_or(BlobError::NotFound)?;
        let props = &mut blob.props;
        if props.kind != BlobKind::Append {
            return Err(BlobError::InvalidBlobType("BlockBlob"));
        }
        if let Some(expected) = append_pos.filter(|&p| p != props.len) {
            return Err(BlobError::AppendPosition {
                expected,
                actual: props.len,
            });
        }
        if props.block_count >= max_appends {
            return Err(BlobError::BlockCountExceedsLimit(max_appends));
        }
        let context = || format!("appending to {}", path.display());
        let mut file = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await
            .map_err(io_error(context()))?;
        // Write at the committed length, not the file's end: a failed earlier append may
        // have left bytes past it, which this one overwrites.
        file.seek(SeekFrom::Start(props.len))
            .await
            .map_err(io_error(context()))?;
        file.write_all(data).await.map_err(io_error(context()))?;
        file.flush().await.map_err(io_error(context()))?;
        let offset = props.len;
        props.len += data.len() as u64;
        props.block_count += 1;
        props.etag = etag;
        Ok((props.clone(), offset))
    }

    /// Opens the blob for reading: the file and the properties of the version it holds.
    pub(super) async fn open(&self, id: u64) -> Result<(File, Props), BlobError> {
        let slot = self.slot(id)?;
        let slot = live(slot.lock().await)?;
        let blob = slot.blob.as_ref().ok_or(BlobError::NotFound)?;
        let path = self.data_path(id);
        let file = File::open(&path)
            .await
            .map_err(io_error(format!("opening {}", path.display())))?;
        Ok((file, blob.props.clone()))
    }

    fn slot(&self, id: u64) -> Result<Arc<tokio::sync::Mutex<Slot>>, BlobError> {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
            .ok_or(BlobError::NotFound)
    }

    /// Writes a request body to a new temporary file; returns it and its length.
    async fn receive<S, E>(&self, body: S) -> Result<(TmpFile, u64), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = self.tmp_path();
        let tmp = TmpFile(Some(path.clone()));
        let context = || format!("receiving a request body into {}", path.display());
        let file = File::create(&path).await.map_err(io_error(context()))?;
        let mut file = BufWriter::with_capacity(1 << 18, file);
        let mut len = 0;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| io_error(context())(std::io::Error::other(e)))?;
            file.write_all(&chunk).await.map_err(io_error(context()))?;
            len += chunk.len() as u64;
        }
        file.flush().await.map_err(io_error(context()))?;
        Ok((tmp, len))
    }

    fn set_blob(
        &self,
        slot: &mut Slot,
        kind: BlobKind,
        len: u64,
        content_type: String,
        committed: Vec<(String, u64)>,
    ) -> Props {
        let props = Props {
            kind,
            len,
            etag: self.etag(),
            content_type,
            block_count: committed.len() as u64,
        };
        slot.blob = Some(Blob {
            props: props.clone(),
            committed,
        });
        props
    }

    async fn drop_staged(&self, id: u64, slot: &mut Slot) -> Result<(), BlobError> {
        if slot.staged.is_empty() {
            return Ok(());
        }
        slot.staged.clear();
        let dir = self.blocks_dir(id);
        remove_if_present(&dir, fs::remove_dir_all(&dir)).await
    }

    fn etag(&self) -> String {
        format!("\"0x8D{:014X}\"", self.seq.fetch_add(1, Ordering::Relaxed))
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.root.join("tmp").join(n.to_string())
    }

    fn data_path(&self, id: u64) -> PathBuf {
        self.root.join("blobs").join(id.to_string())
    }

    fn blocks_dir(&self, id: u64) -> PathBuf {
        self.root.join("blocks").join(id.to_string())
    }

    fn block_path(&self, id: u64, block_id: &str) -> PathBuf {
        self.blocks_dir(id).join(hex::encode(block_id))
    }
}

/// The slot, unless its blob was deleted while we waited for the lock.
fn live(
    slot: tokio::sync::MutexGuard<'_, Slot>,
) -> Result<tokio::sync::MutexGuard<'_, Slot>, BlobError> {
    if slot.deleted {
        Err(BlobError::NotFound)
    } else {
        Ok(slot)
    }
}

async fn remove_if_present(
    path: &Path,
    removal: impl Future<Output = std::io::Result<()>>,
) -> Result<(), BlobError> {
    match removal.await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_error(format!("removing {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Copies `len` bytes at `offset` of the file at `path` to `out`.
async fn copy_range(
    path: &Path,
    offset: u64,
    len: u64,
    out: &mut BufWriter<File>,
) -> Result<(), BlobError> {
    use tokio::io::AsyncReadExt;
    let context = || format!("copying a block from {}", path.display());
    let mut file = File::open(path).await.map_err(io_error(context()))?;
    file.seek(SeekFrom::Start(offset))
        .await
        .map_err(io_error(context()))?;
    let copied = tokio::io::copy(&mut file.take(len), out)
        .await
        .map_err(io_error(context()))?;
    if copied != len {
        let short = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("expected {len} bytes, found {copied}"),
        );
        return Err(io_error(context())(short));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    async fn read_all(store: &BlobStore, id: u64) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let (file, props) = store.open(id).await.unwrap();
        let mut out = Vec::new();
        file.take(props.len).read_to_end(&mut out).await.unwrap();
        out
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[tokio::test]
    async fn block_list_orders_latest_committed_and_uncommitted_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path()).unwrap();
        store.register(1);
        let (a, b, c) = (b64("blk-a"), b64("blk-b"), b64("blk-c"));
        store.stage_block(1, &a, body(&[b"aa"])).await.unwrap();
        store.stage_block(1, &b, body(&[b"b", b"b"])).await.unwrap();
        let list = [
            (BlockSource::Latest, b.clone()),
            (BlockSource::Uncommitted, a.clone()),
        ];
        let props = store.commit_blocks(1, &list, "x/y".into()).await.unwrap();
        assert_eq!((props.len, props.kind), (4, BlobKind::Block));
        assert_eq!(read_all(&store, 1).await, b"bbaa");
        // Unnamed staged blocks are gone after a commit; committed ones can be reused.
        store.stage_block(1, &c, body(&[b"ccc"])).await.unwrap();
        let list = [
            (BlockSource::Committed, a.clone()),
            (BlockSource::Latest, c.clone()),
            (BlockSource::Latest, b.clone()),
        ];
        let second = store.commit_blocks(1, &list, "x/y".into()).await.unwrap();
        assert_ne!(second.etag, props.etag);
        assert_eq!(read_all(&store, 1).await, b"aacccbb");
        let missing = [(BlockSource::Uncommitted, c.clone())];
        assert!(matches!(
            store.commit_blocks(1, &missing, "x/y".into()).await,
            Err(BlobError::InvalidBlockList(_))
        ));
    }

    #[tokio::test]
    async fn block_ids_must_be_base64_of_one_length() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path()).unwrap();
        store.register(1);
        assert!(matches!(
            store.stage_block(1, "not base64!", body(&[b"x"])).await,
            Err(BlobError::InvalidBlockId(_))
        ));
        store
            .stage_block(1, &b64("ab"), body(&[b"x"]))
            .await
            .unwrap();
        assert!(matches!(
            store.stage_block(1, &b64("abcd"), body(&[b"x"])).await,
            Err(BlobError::BlockIdLength(_))
        ));
    }

    #[tokio::test]
    async fn appends_respect_type_position_and_count_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path()).unwrap();
        store.register(1);
        assert!(matches!(
            store.append(1, b"x", None, 10).await,
            Err(BlobError::NotFound)
        ));
        store.create_append_blob(1, "t".into()).await.unwrap();
        let (props, offset) = store.append(1, b"hello ", None, 2).await.unwrap();
        assert_eq!((props.len, offset, props.block_count), (6, 0, 1));
        assert!(matches!(
            store.append(1, b"x", Some(5), 2).await,
            Err(BlobError::AppendPosition {
                expected: 5,
                actual: 6
            })
        ));
        store.append(1, b"world", Some(6), 2).await.unwrap();
        assert!(matches!(
            store.append(1, b"!", None, 2).await,
            Err(BlobError::BlockCountExceedsLimit(2))
        ));
        assert_eq!(read_all(&store, 1).await, b"hello world");
        assert!(matches!(
            store.stage_block(1, &b64("a"), body(&[b"x"])).await,
            Err(BlobError::InvalidBlobType(_))
        ));
    }

    #[tokio::test]
    async fn removed_blobs_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path()).unwrap();
        store.register(1);
        store
            .put_block_blob(1, "t".into(), body(&[b"data"]))
            .await
            .unwrap();
        store.remove(1).await.unwrap();
        assert!(matches!(store.open(1).await, Err(BlobError::NotFound)));
        assert!(matches!(
            store.put_block_blob(1, "t".into(), body(&[b"x"])).await,
            Err(BlobError::NotFound)
        ));
        assert!(!dir.path().join("blobs/1").exists());
    }

    #[tokio::test]
    async fn an_open_reader_keeps_its_version() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path()).unwrap();
        store.register(1);
        store
            .put_block_blob(1, "t".into(), body(&[b"old"]))
            .await
            .unwrap();
        let (file, props) = store.open(1).await.unwrap();
        store
            .put_block_blob(1, "t".into(), body(&[b"new!"]))
            .await
            .unwrap();
        let mut old = Vec::new();
        file.take(props.len).read_to_end(&mut old).await.unwrap();
        assert_eq!(old, b"old");
        assert_eq!(read_all(&store, 1).await, b"new!");
    }
}
