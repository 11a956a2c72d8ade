//! A check of the artifact transport between two jobs of one workflow run, run as a matrix of
//! two (`selftest transport --role listen` and `--role connect`).
//!
//! Both sides speak through the run's artifact store only: the listener accepts one stream,
//! publishes a layer packed from a directory and announces its digest; the connecting side
//! sends numbered pings, expects the matching pongs in order, fetches the layer, verifies it
//! and compares every file with its own copy of the directory. The act end-to-end test runs
//! it through act's artifact server; users can run it to check a runner setup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::layer::{self, Digest, LayerCache, LayerError};
use crate::link::{Incoming, Link, LinkError};
use crate::store::ArtifactStore;
use crate::stream::{self, Connection, Listener, Namespace, StreamConfig, StreamError};

/// Which end of the stream this job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Publish the listen artifact, accept one peer, answer its pings, publish the layer.
    Listen,
    /// Connect to the listener, ping it, fetch and verify the layer.
    Connect,
}

/// One side of the check.
#[derive(Debug, Clone)]
pub struct TransportCheck {
    /// This job's end of the stream.
    pub role: Role,
    /// Messages to send each way.
    pub messages: u32,
    /// A directory both jobs hold identical copies of: shipped as a layer and compared.
    pub layer_dir: PathBuf,
    /// How long to wait for the other side.
    pub wait: Duration,
}

/// How the transport failed the check.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The other side did not connect in time.
    #[error("no peer connected within {0:?}")]
    NoPeer(Duration),
    /// The stream failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// Receiving failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Packing, publishing or fetching the layer failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// A message was lost, reordered, extra, or the stream ended early.
    #[error("{0}")]
    Messages(String),
    /// The fetched layer does not hold what was packed.
    #[error("{0}")]
    LayerDiffers(String),
    /// Local files.
    #[error("{what}: {source}")]
    Io {
        /// What could not be done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl TransportError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// Runs this job's side of the check; `say` gets a line for each step that succeeded (the
/// last one `transport ok`).
pub async fn transport(
    store: ArtifactStore,
    ns: Namespace,
    cfg: StreamConfig,
    check: &TransportCheck,
    say: &mut dyn FnMut(String),
) -> Result<(), TransportError> {
    match check.role {
        Role::Listen => {
            let mut listener = Listener::bind(store.clone(), ns, cfg).await?;
            let conn = tokio::time::timeout(check.wait, listener.accept())
                .await
                .map_err(|_| TransportError::NoPeer(check.wait))??;
            listen(&store, conn, check, say).await
        }
        Role::Connect => {
            let conn = stream::connect(store.clone(), ns, cfg, check.wait).await?;
            connect(&store, conn, check, say).await
        }
    }
}

/// The messages of the check, over a typed link like the cluster's.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Check {
    /// The listener published the layer with this digest.
    Layer { digest: String },
    /// The connecting side's `n`th message.
    Ping { n: u32 },
    /// The answer to ping `n`.
    Pong { n: u32 },
}

impl Incoming for Check {
    const FROM: &'static str = "the other side's";
}

/// Either end of the check's stream.
type CheckLink = Link<Check, Check>;

async fn listen(
    store: &ArtifactStore,
    conn: Connection,
    check: &TransportCheck,
    say: &mut dyn FnMut(String),
) -> Result<(), TransportError> {
    say(format!("accepted peer {}", conn.peer));
    let mut link = CheckLink::over(conn);
    let scratch = tempfile::tempdir().map_err(TransportError::io("cannot create a scratch dir"))?;
    let archive = scratch.path().join("layer.tar.gz");
    let digest = layer::pack(&check.layer_dir, &[PathBuf::from(".")], &archive)?;
    let outcome = layer::publish(store, None, &archive, &digest)
        .await?
        .outcome;
    say(format!("published layer {} ({outcome:?})", digest.0));
    let layer = Check::Layer {
        digest: digest.0.clone(),
    };
    link.send(&layer).await?;
    for n in 0..check.messages {
        expect(&mut link, &Check::Ping { n }).await?;
        link.send(&Check::Pong { n }).await?;
    }
    say(format!("answered {} pings in order", check.messages));
    // The peer closes once it has every pong and the layer: the clean end of its stream.
    if let Some(extra) = link.recv().await? {
        return Err(TransportError::Messages(format!(
            "unexpected message after the pings: {extra:?}"
        )));
    }
    link.close().await?;
    say("transport ok".into());
    Ok(())
}

async fn connect(
    store: &ArtifactStore,
    conn: Connection,
    check: &TransportCheck,
    say: &mut dyn FnMut(String),
) -> Result<(), TransportError> {
    let mut link = CheckLink::over(conn);
    say("connected".into());
    for n in 0..check.messages {
        link.send(&Check::Ping { n }).await?;
    }
    let hex = match next(&mut link).await? {
        Check::Layer { digest } => digest,
        other => {
            return Err(TransportError::Messages(format!(
                "expected the layer announcement, got {other:?}"
            )));
        }
    };
    for n in 0..check.messages {
        expect(&mut link, &Check::Pong { n }).await?;
    }
    say(format!("received {} pongs in order", check.messages));
    let digest = Digest::parse(&hex)?;
    let cache_dir = tempfile::tempdir().map_err(TransportError::io("cannot create a cache dir"))?;
    let tree = LayerCache::open(cache_dir.path())?
        .fetch(store, &digest)
        .await?;
    let files = compare_trees(&check.layer_dir, &tree)?;
    say(format!(
        "layer {} verified: {files} files identical",
        digest.0
    ));
    link.close().await?;
    if link.recv().await?.is_some() {
        return Err(TransportError::Messages(
            "the listener sent more than expected".into(),
        ));
    }
    say("transport ok".into());
    Ok(())
}

/// The next message; the end of the stream is an error here.
async fn next(link: &mut CheckLink) -> Result<Check, TransportError> {
    link.recv()
        .await?
        .ok_or_else(|| TransportError::Messages("the peer closed the stream early".into()))
}

/// The next message, which must be `want`.
async fn expect(link: &mut CheckLink, want: &Check) -> Result<(), TransportError> {
    let got = next(link).await?;
    if &got != want {
        return Err(TransportError::Messages(format!(
            "expected {want:?}, got {got:?} (lost or reordered)"
        )));
    }
    Ok(())
}

/// Checks that every regular file under `want` exists with the same bytes under `got`;
/// returns how many were compared.
fn compare_trees(want: &Path, got: &Path) -> Result<usize, TransportError> {
    let mut count = 0;
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let dir = want.join(&rel);
        let entries =
            std::fs::read_dir(&dir).map_err(TransportError::io(format!("{}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(TransportError::io(format!("{}", dir.display())))?;
            let rel = rel.join(entry.file_name());
            let kind = entry
                .file_type()
                .map_err(TransportError::io(format!("{}", rel.display())))?;
            if kind.is_dir() {
                dirs.push(rel);
            } else if kind.is_file() {
                same_file(&want.join(&rel), &got.join(&rel), &rel)?;
                count += 1;
            }
        }
    }
    Ok(count)
}

/// Checks that `got` (`rel` in the layer) has the bytes of `want`.
fn same_file(want: &Path, got: &Path, rel: &Path) -> Result<(), TransportError> {
    let expected =
        std::fs::read(want).map_err(TransportError::io(format!("{}", want.display())))?;
    let actual = std::fs::read(got).map_err(|_| {
        TransportError::LayerDiffers(format!("{} is missing from the layer", rel.display()))
    })?;
    if expected != actual {
        return Err(TransportError::LayerDiffers(format!(
            "{} differs in the layer",
            rel.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_compare_equal_only_with_every_file_the_same() {
        let want = tempfile::tempdir().unwrap();
        let got = tempfile::tempdir().unwrap();
        for dir in [want.path(), got.path()] {
            std::fs::create_dir(dir.join("sub")).unwrap();
            std::fs::write(dir.join("sub/a"), "same").unwrap();
        }
        assert_eq!(compare_trees(want.path(), got.path()).unwrap(), 1);
        std::fs::write(got.path().join("sub/a"), "other").unwrap();
        let differs = compare_trees(want.path(), got.path()).unwrap_err();
        assert!(differs.to_string().contains("differs"), "{differs}");
        std::fs::write(want.path().join("b"), "only here").unwrap();
        std::fs::write(got.path().join("sub/a"), "same").unwrap();
        let missing = compare_trees(want.path(), got.path()).unwrap_err();
        assert!(missing.to_string().contains("b is missing"), "{missing}");
    }
}
