//! `cluster-action selftest transport`: a check of the artifact transport between two jobs of
//! one workflow run, run as a matrix of two (`--role listen` and `--role connect`).
//!
//! Both sides speak through the run's artifact store only: the listener accepts one stream,
//! publishes a layer packed from `--layer-dir` and announces its digest; the connecting side
//! sends numbered pings, expects the matching pongs in order, fetches the layer, verifies it
//! and compares every file with its own copy of `--layer-dir`. The act end-to-end test runs it
//! through act's artifact server; users can run it to check a runner setup. Hidden from help.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use cluster_action::duration::parse_duration;
use cluster_action::layer::{self, Digest, LayerCache};
use cluster_action::link::{Incoming, Link};
use cluster_action::store::ArtifactStore;
use cluster_action::stream::{self, Connection, Listener, Namespace, StreamConfig};

use super::common::{ClusterArgs, store_from_env};
use super::exit;

/// Which end of the stream this job is.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Role {
    /// Publish the listen artifact, accept one peer, answer its pings, publish the layer.
    Listen,
    /// Connect to the listener, ping it, fetch and verify the layer.
    Connect,
}

/// Flags of `selftest transport`.
#[derive(Debug, Args)]
pub struct TransportArgs {
    /// This job's end of the stream.
    #[arg(long, value_enum)]
    role: Role,
    /// Messages to send each way.
    #[arg(long, default_value_t = 100)]
    messages: u32,
    /// A directory both jobs hold identical copies of: shipped as a layer and compared.
    #[arg(long, value_name = "DIR")]
    layer_dir: PathBuf,
    /// How long to wait for the other side.
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    wait: Duration,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Runs one side of the transport check; exit 0 when everything arrived intact.
pub async fn transport(args: TransportArgs) -> Result<i32, exit::Failure> {
    let store = store_from_env()?;
    let ns = args.cluster.namespace()?;
    let cfg = args.cluster.stream()?;
    if !args.layer_dir.is_dir() {
        return Err(exit::Failure::bad_input(format!(
            "--layer-dir {} is not a directory",
            args.layer_dir.display()
        )));
    }
    check(store, ns, cfg, &args)
        .await
        .map_err(exit::Failure::infra)?;
    Ok(exit::OK)
}

/// Runs this job's side of the check.
async fn check(
    store: ArtifactStore,
    ns: Namespace,
    cfg: StreamConfig,
    args: &TransportArgs,
) -> anyhow::Result<()> {
    match args.role {
        Role::Listen => {
            let mut listener = Listener::bind(store.clone(), ns, cfg).await?;
            let conn = tokio::time::timeout(args.wait, listener.accept())
                .await
                .context("no peer connected in time")??;
            listen(&store, conn, args).await?;
        }
        Role::Connect => {
            let conn = stream::connect(store.clone(), ns, cfg, args.wait).await?;
            connect(&store, conn, args).await?;
        }
    }
    Ok(())
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
    args: &TransportArgs,
) -> anyhow::Result<()> {
    println!("accepted peer {}", conn.peer);
    let mut link = CheckLink::over(conn);
    let scratch = tempfile::tempdir()?;
    let archive = scratch.path().join("layer.tar.gz");
    let digest = layer::pack(&args.layer_dir, &[PathBuf::from(".")], &archive)?;
    let outcome = layer::publish(store, None, &archive, &digest)
        .await?
        .outcome;
    println!("published layer {} ({outcome:?})", digest.0);
    let layer = Check::Layer {
        digest: digest.0.clone(),
    };
    link.send(&layer).await?;
    for n in 0..args.messages {
        expect(&mut link, &Check::Ping { n }).await?;
        link.send(&Check::Pong { n }).await?;
    }
    println!("answered {} pings in order", args.messages);
    // The peer closes once it has every pong and the layer: the clean end of its stream.
    match link.recv().await? {
        None => {}
        Some(extra) => bail!("unexpected message after the pings: {extra:?}"),
    }
    link.close().await?;
    println!("transport ok");
    Ok(())
}

async fn connect(
    store: &ArtifactStore,
    conn: Connection,
    args: &TransportArgs,
) -> anyhow::Result<()> {
    let mut link = CheckLink::over(conn);
    println!("connected");
    for n in 0..args.messages {
        link.send(&Check::Ping { n }).await?;
    }
    let hex = match next(&mut link).await? {
        Check::Layer { digest } => digest,
        other => bail!("expected the layer announcement, got {other:?}"),
    };
    for n in 0..args.messages {
        expect(&mut link, &Check::Pong { n }).await?;
    }
    println!("received {} pongs in order", args.messages);
    let digest = Digest::parse(&hex)?;
    let cache_dir = tempfile::tempdir()?;
    let tree = LayerCache::open(cache_dir.path())?
        .fetch(store, &digest)
        .await?;
    let files = compare_trees(&args.layer_dir, &tree)?;
    println!("layer {} verified: {files} files identical", digest.0);
    link.close().await?;
    ensure!(
        link.recv().await?.is_none(),
        "the listener sent more than expected"
    );
    println!("transport ok");
    Ok(())
}

/// The next message; the end of the stream is an error here.
async fn next(link: &mut CheckLink) -> anyhow::Result<Check> {
    link.recv()
        .await?
        .context("the peer closed the stream early")
}

/// The next message, which must be `want`.
async fn expect(link: &mut CheckLink, want: &Check) -> anyhow::Result<()> {
    let got = next(link).await?;
    ensure!(
        &got == want,
        "expected {want:?}, got {got:?} (lost or reordered)"
    );
    Ok(())
}

/// Checks that every regular file under `want` exists with the same bytes under `got`;
/// returns how many were compared.
fn compare_trees(want: &Path, got: &Path) -> anyhow::Result<usize> {
    let mut count = 0;
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        for entry in std::fs::read_dir(want.join(&rel))? {
            let entry = entry?;
            let rel = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                dirs.push(rel);
            } else if entry.file_type()?.is_file() {
                let expected = std::fs::read(want.join(&rel))?;
                let actual = std::fs::read(got.join(&rel))
                    .with_context(|| format!("{} is missing from the layer", rel.display()))?;
                ensure!(expected == actual, "{} differs in the layer", rel.display());
                count += 1;
            }
        }
    }
    Ok(count)
}
