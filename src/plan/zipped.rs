//! The zip around an artifact's one JSON file: what `@actions/artifact` uploads and GitHub's
//! REST download (`…/artifacts/{id}/zip`) hands back.

use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;

/// A zip holding `name` with `contents`, as the runner uploads a history artifact.
pub fn zip_one(name: &str, contents: &[u8]) -> Result<Vec<u8>, String> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file(name, SimpleFileOptions::default())
        .map_err(|e| e.to_string())?;
    zip.write_all(contents).map_err(|e| e.to_string())?;
    let cursor = zip.finish().map_err(|e| e.to_string())?;
    Ok(cursor.into_inner())
}

/// The file `name` from a downloaded zip; the error says what is wrong with the archive.
pub fn unzip_one(archive: &[u8], name: &str) -> Result<Vec<u8>, String> {
    let mut zip =
        zip::ZipArchive::new(Cursor::new(archive)).map_err(|e| format!("not a zip: {e}"))?;
    let mut file = zip
        .by_name(name)
        .map_err(|e| format!("the zip holds no {name}: {e}"))?;
    let mut contents = Vec::new();
    file.read_to_end(&mut contents)
        .map_err(|e| format!("{name} in the zip cannot be read: {e}"))?;
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

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
