//! The vendored files are the ones VENDORED.md names, byte for byte.

use sha2::{Digest, Sha256};
use std::path::Path;

#[test]
fn vendored_files_match_their_recorded_hashes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = std::fs::read_to_string(root.join("VENDORED.md")).expect("VENDORED.md");
    for file in ["static/htmx.min.js", "static/dagre.min.js"] {
        let bytes = std::fs::read(root.join(file)).expect("a vendored file");
        let hash = format!("{:x}", Sha256::digest(&bytes));
        let row = table
            .lines()
            .find(|l| l.contains(&format!("`{file}`")))
            .unwrap_or_else(|| panic!("VENDORED.md has no row for {file}"));
        assert!(
            row.contains(&hash),
            "{file} has sha256 {hash}, which VENDORED.md does not record: update the table (or restore the file)"
        );
    }
}
