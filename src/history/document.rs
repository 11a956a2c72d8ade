//! The history documents as artifacts: versioned JSON inside a zip with one file, which is what
//! `@actions/artifact` uploads and GitHub's REST download (`…/artifacts/{id}/zip`) hands back.

use std::io::{Cursor, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;
use zip::write::SimpleFileOptions;

use super::{HistorySeal, SEALED_FILE};

/// The most a history document may inflate to, and its artifact's zip weigh when downloaded:
/// a suite of a hundred thousand tests keeps well under it, and a zip bomb (a small zip that
/// inflates to gigabytes) costs no more memory than this. Past it the document is unreadable:
/// one line, and the run goes on without it.
pub const MAX_DOCUMENT_BYTES: u64 = 32 << 20;

/// A document kept in an artifact: [`super::timings::Timings`] and
/// [`super::results::AttemptResults`].
pub trait ArtifactDocument: Serialize + DeserializeOwned {
    /// The file inside the artifact's zip.
    const FILE: &'static str;

    /// The JSON document, compact: with each test's record a history of 100,000 tests and
    /// the results that carry it stay under [`MAX_DOCUMENT_BYTES`] (pretty-printed they would
    /// not).
    fn to_json(&self) -> Vec<u8> {
        // These documents hold only strings, numbers and lists: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// From the JSON document; the error says what is wrong.
    fn from_json(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// The artifact's contents: a zip holding [`ArtifactDocument::FILE`].
    fn to_artifact_zip(&self) -> Result<Vec<u8>, String> {
        zip_one(Self::FILE, &self.to_json())
    }

    /// From a downloaded artifact zip; the error says what is wrong with it.
    fn from_artifact_zip(archive: &[u8]) -> Result<Self, String> {
        Self::from_json(&unzip_one(archive, Self::FILE)?)
    }

    /// The artifact's contents with a secret: a zip holding [`SEALED_FILE`], the document
    /// sealed under `seal` and bound to its plain artifact name `plain_name`.
    fn to_sealed_zip(&self, seal: &HistorySeal, plain_name: &str) -> Result<Vec<u8>, String> {
        zip_one(SEALED_FILE, &seal.seal(plain_name, &self.to_json()))
    }

    /// From a downloaded sealed artifact zip; the error says what is wrong with it (also when
    /// it fails authentication).
    fn from_sealed_zip(
        archive: &[u8],
        seal: &HistorySeal,
        plain_name: &str,
    ) -> Result<Self, String> {
        let sealed = unzip_one(archive, SEALED_FILE)?;
        let plain = seal.open(plain_name, &sealed).map_err(|e| e.to_string())?;
        Self::from_json(&plain)
    }
}

/// A zip holding `name` with `contents`.
fn zip_one(name: &str, contents: &[u8]) -> Result<Vec<u8>, String> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file(name, SimpleFileOptions::default())
        .map_err(|e| e.to_string())?;
    zip.write_all(contents).map_err(|e| e.to_string())?;
    let cursor = zip.finish().map_err(|e| e.to_string())?;
    Ok(cursor.into_inner())
}

/// The file `name` from a downloaded zip, at most [`MAX_DOCUMENT_BYTES`] of it inflated (what
/// the zip says of its size is not trusted); the error says what is wrong with the archive.
fn unzip_one(archive: &[u8], name: &str) -> Result<Vec<u8>, String> {
    let mut zip =
        zip::ZipArchive::new(Cursor::new(archive)).map_err(|e| format!("not a zip: {e}"))?;
    let file = zip
        .by_name(name)
        .map_err(|e| format!("the zip holds no {name}: {e}"))?;
    let too_large = || {
        format!(
            "{name} in the zip inflates past {} MiB, the most a history document may take",
            MAX_DOCUMENT_BYTES >> 20
        )
    };
    if file.size() > MAX_DOCUMENT_BYTES {
        return Err(too_large());
    }
    let mut contents = Vec::new();
    file.take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut contents)
        .map_err(|e| format!("{name} in the zip cannot be read: {e}"))?;
    if contents.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(too_large());
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::timings::Timings;

    #[test]
    fn a_sealed_document_holds_no_plain_text_and_opens_only_with_its_key_and_name() {
        let mut timings = Timings::default();
        timings.run_id = Some(77);
        let seal = HistorySeal::derive(b"s3cret").unwrap();
        let zip = timings.to_sealed_zip(&seal, "ca-timings-c").unwrap();
        assert!(!String::from_utf8_lossy(&zip).contains("run_id"));
        let back = Timings::from_sealed_zip(&zip, &seal, "ca-timings-c").unwrap();
        assert_eq!(back, timings);
        let other = HistorySeal::derive(b"other").unwrap();
        let refused = Timings::from_sealed_zip(&zip, &other, "ca-timings-c").unwrap_err();
        assert!(refused.contains("failed authentication"), "{refused}");
        assert!(
            Timings::from_artifact_zip(&zip).is_err(),
            "not readable as plain"
        );
    }

    #[test]
    fn a_document_is_inflated_only_up_to_the_bound_whatever_its_zip_claims() {
        let big = vec![b' '; usize::try_from(MAX_DOCUMENT_BYTES).unwrap() + 1];
        let mut zip = zip_one("a.json", &big).unwrap();
        let fits = zip_one("a.json", &big[1..]).unwrap();
        assert_eq!(unzip_one(&fits, "a.json").unwrap().len(), big.len() - 1);
        let error = unzip_one(&zip, "a.json").unwrap_err();
        assert!(error.contains("inflates past 32 MiB"), "{error}");
        // The same zip claiming 2 bytes (the local header's and the central directory's
        // uncompressed size): refused, not inflated whole.
        let central = zip.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
        for at in [22, central + 24] {
            zip[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
        }
        let error = unzip_one(&zip, "a.json").unwrap_err();
        assert!(error.contains("larger than its declared"), "{error}");
    }

    #[test]
    fn a_zipped_file_comes_back_and_garbage_is_named() {
        let zip = zip_one("a.json", b"{}").unwrap();
        assert_eq!(unzip_one(&zip, "a.json").unwrap(), b"{}");
        assert!(unzip_one(&zip, "b.json").unwrap_err().contains("no b.json"));
        assert!(
            unzip_one(b"garbage", "a.json")
                .unwrap_err()
                .starts_with("not a zip")
        );
    }
}
