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

/// The engine reads on a screen or two: no file of it over 400 lines, no function over 60
/// (its tests aside). A function is measured from its `fn` line to the closing brace at the
/// same indentation.
#[test]
fn the_engine_stays_small() {
    let engine = workspace().join("crates/core/src/engine");
    let mut files = vec![workspace().join("crates/core/src/engine.rs")];
    rust_files(&engine, &mut files);
    let mut too_long = Vec::new();
    for path in files.iter().filter(|p| p.file_name().is_some_and(|n| n != "tests.rs")) {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() > 400 {
            too_long.push(format!("{}: {} lines", path.display(), lines.len()));
        }
        for (name, length) in functions(&lines) {
            if length > 60 {
                too_long.push(format!("{}: fn {name} has {length} lines", path.display()));
            }
        }
    }
    assert!(too_long.is_empty(), "the engine grew past its limits:\n{}", too_long.join("\n"));
}

/// Each function's name and length in lines, outside `#[cfg(test)]` modules.
fn functions(lines: &[&str]) -> Vec<(String, usize)> {
    let end_of_code = lines.iter().position(|l| l.trim() == "#[cfg(test)]").unwrap_or(lines.len());
    let mut found = Vec::new();
    for (i, line) in lines[..end_of_code].iter().enumerate() {
        let code = line.trim_start();
        let indent = line.len() - code.len();
        let Some(at) = code.find("fn ") else { continue };
        let before = &code[..at];
        if !before.split_whitespace().all(|w| matches!(w, "pub" | "pub(crate)" | "pub(super)" | "async" | "const")) {
            continue;
        }
        let name: String = code[at + 3..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let close = " ".repeat(indent) + "}";
        if let Some(end) = lines[i..end_of_code].iter().position(|l| *l == close) {
            found.push((name, end + 1));
        }
    }
    found
}

/// ARCHITECTURE.md names every state, event and effect of the engine's state machine, and
/// nothing else: the map stays true to the code.
#[test]
fn the_architecture_names_every_state_event_and_effect() {
    let map = std::fs::read_to_string(workspace().join("ARCHITECTURE.md")).unwrap();
    let section = map.split("## The job's state machine").nth(1).expect("ARCHITECTURE.md has the section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let listed = |label: &str| -> Vec<String> {
        let start = section.find(label).unwrap_or_else(|| panic!("the section lists {label}"));
        let rest = &section[start..];
        let ends = [rest[2..].find("\n- **"), rest.find("\n\n")];
        let end = ends.into_iter().flatten().map(|i| i + 2).min().unwrap_or(rest.len()).min(rest.len());
        let list = rest[..end].split_once(':').map_or("", |(_, names)| names);
        // The names are the backticked words before any parenthesis.
        let mut depth = 0;
        let mut plain = String::new();
        for c in list.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ if depth == 0 => plain.push(c),
                _ => {}
            }
        }
        plain.split('`').skip(1).step_by(2).map(str::to_owned).collect()
    };
    let step = std::fs::read_to_string(workspace().join("crates/core/src/engine/step.rs")).unwrap();
    let state = std::fs::read_to_string(workspace().join("crates/core/src/state.rs")).unwrap();
    assert_eq!(listed("**States**"), variants(&state, "pub enum JobState"), "states in ARCHITECTURE.md");
    assert_eq!(listed("**Events**"), variants(&step, "pub enum Event"), "events in ARCHITECTURE.md");
    assert_eq!(listed("**Effects**"), variants(&step, "pub enum Effect"), "effects in ARCHITECTURE.md");
}

/// The variants of the enum declared by `header` in `source`, in order.
fn variants(source: &str, header: &str) -> Vec<String> {
    let body = source.split(header).nth(1).unwrap_or_else(|| panic!("{header} is in the source"));
    let body = &body[..body.find("\n}").unwrap_or(body.len())];
    body.lines()
        .filter(|line| line.starts_with("    ") && !line.starts_with("     "))
        .map(str::trim)
        .filter(|line| line.chars().next().is_some_and(char::is_uppercase))
        .map(|line| line.chars().take_while(|c| c.is_alphanumeric()).collect())
        .collect()
}
