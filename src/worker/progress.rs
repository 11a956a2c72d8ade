//! A running job's progress: the lines it adds to its progress file ([`JobSpec::progress`], a
//! suite batch's report, which most frameworks write a test at a time), sent back while it
//! runs so that the runner shows tests as they finish, long before the batch ends.
//!
//! The file is looked at every [`EVERY`]; whole lines only go, masked like the job's output,
//! at most [`MAX_CHUNK`] bytes a time (a longer line is left to the final report). Following
//! stops when the file is replaced (another file moved to its path: pytest's JUnit) or
//! shrinks (rewritten: Jest's whole document): the framework's whole report comes back with
//! the job's outputs, and no part of it is read as lines.
//!
//! [`JobSpec::progress`]: crate::proto::JobSpec::progress

use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use crate::proto::{AttemptRef, SecretEnv};

/// How often the file is looked at: a message a second at most per running batch, which a
/// worker's stream carries beside its renewals even at GitHub's latency.
pub(crate) const EVERY: Duration = Duration::from_secs(1);

/// The most sent at once.
const MAX_CHUNK: u64 = 256 * 1024;

/// Where the lines go: the worker's shell, which has its machine send them for the attempt.
pub(crate) type Sender = mpsc::UnboundedSender<(AttemptRef, String)>;

/// Follows the file at `path` for attempt `key` until the file is replaced or shrinks (or
/// this is dropped), sending the whole lines it gains to `tx`, `secrets` masked.
pub(crate) async fn follow(path: PathBuf, key: AttemptRef, secrets: SecretEnv, tx: Sender) {
    use std::os::unix::fs::MetadataExt;
    let mut offset = 0u64;
    // The file followed, once it exists: its device and inode.
    let mut followed = None;
    // Inside a line longer than MAX_CHUNK: dropped up to its end.
    let mut skipping = false;
    loop {
        tokio::time::sleep(EVERY).await;
        let Ok(mut file) = tokio::fs::File::open(&path).await else {
            continue;
        };
        let Ok(meta) = file.metadata().await else {
            continue;
        };
        let (len, identity) = (meta.len(), (meta.dev(), meta.ino()));
        if len < offset || *followed.get_or_insert(identity) != identity {
            return;
        }
        if len == offset || file.seek(SeekFrom::Start(offset)).await.is_err() {
            continue;
        }
        let mut chunk = Vec::new();
        if (&mut file)
            .take(MAX_CHUNK)
            .read_to_end(&mut chunk)
            .await
            .is_err()
        {
            continue;
        }
        let (consumed, lines) = whole_lines(&chunk, &mut skipping, MAX_CHUNK);
        offset += consumed as u64;
        if !lines.is_empty() {
            let text = super::output::mask(String::from_utf8_lossy(lines).into_owned(), &secrets);
            if tx.send((key, text)).is_err() {
                return;
            }
        }
    }
}

/// Of `chunk` (what was read past what was consumed, at most `max` bytes): how much is
/// consumed now, and the whole lines to send. A chunk of `max` bytes without a newline is
/// consumed unsent, and so is what follows it up to the next newline (`skipping`).
fn whole_lines<'a>(chunk: &'a [u8], skipping: &mut bool, max: u64) -> (usize, &'a [u8]) {
    let mut start = 0;
    if *skipping {
        match chunk.iter().position(|&b| b == b'\n') {
            Some(end) => {
                *skipping = false;
                start = end + 1;
            }
            None => return (chunk.len(), &[]),
        }
    }
    match chunk[start..].iter().rposition(|&b| b == b'\n') {
        Some(last) => (start + last + 1, &chunk[start..start + last + 1]),
        None if chunk.len() as u64 >= max => {
            *skipping = true;
            (chunk.len(), &[])
        }
        None => (start, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::JobId;

    #[tokio::test(start_paused = true)]
    async fn lines_come_as_written_and_none_of_a_file_moved_over_them() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let path = dir.path().join("report");
        std::fs::write(&path, "one\ntw").expect("written");
        let key = AttemptRef {
            id: JobId(1),
            attempt: 1,
        };
        let secrets = SecretEnv([("TOKEN".to_string(), "s3cret".to_string())].into());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let follow = tokio::spawn(follow(path.clone(), key, secrets, tx));
        assert_eq!(rx.recv().await, Some((key, "one\n".to_string())));
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("opened");
        std::io::Write::write_all(&mut file, b"o s3cret\nthr").expect("appended");
        assert_eq!(rx.recv().await, Some((key, "two ***\n".to_string())));
        // The whole report moved over the lines, longer than they were: not read as lines.
        let whole = dir.path().join("whole");
        std::fs::write(&whole, "<testsuites>\n".repeat(10)).expect("written");
        std::fs::rename(&whole, &path).expect("moved");
        assert_eq!(rx.recv().await, None, "following ended");
        follow.await.expect("ended");
    }

    #[test]
    fn only_whole_lines_go_and_an_overlong_line_is_dropped_to_its_end() {
        let mut skipping = false;
        assert_eq!(
            whole_lines(b"one\ntwo\nthr", &mut skipping, 100),
            (8, &b"one\ntwo\n"[..])
        );
        assert_eq!(whole_lines(b"thr", &mut skipping, 100), (0, &b""[..]));
        // A line longer than the most read at once: dropped, and the rest of it after.
        assert_eq!(whole_lines(b"xxxx", &mut skipping, 4), (4, &b""[..]));
        assert!(skipping);
        assert_eq!(
            whole_lines(b"xx\nfour\nfi", &mut skipping, 100),
            (8, &b"four\n"[..])
        );
        assert!(!skipping);
    }
}
