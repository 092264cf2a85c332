//! Conventions of the whole workspace, checked as a test: every Rust file opens with a `//!`
//! comment saying what it owns, and no test is skipped or expected to panic.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for krate in std::fs::read_dir(workspace().join("crates")).unwrap().flatten() {
        for part in ["src", "tests", "benches"] {
            rust_files(&krate.path().join(part), &mut files);
        }
    }
    assert!(files.len() > 20, "found too few sources; is the layout still crates/*/src?");
    files
}

#[test]
fn every_file_says_what_it_owns() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|path| !std::fs::read_to_string(path).unwrap().trim_start().starts_with("//!"))
        .map(|path| path.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a //! doc comment:\n{}", missing.join("\n"));
}

#[test]
fn no_test_is_skipped_or_expected_to_panic() {
    let banned = [concat!("#[", "ignore"), concat!("#[", "should_panic")];
    for path in sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        for attribute in banned {
            assert!(!text.contains(attribute), "{} uses {attribute}]", path.display());
        }
    }
}
