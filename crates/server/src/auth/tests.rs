//! The auth file: parsing, hashing, reading it again on change.

use super::*;

const TOKEN: &str = "jf_test-token";

fn file_with(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn entry(name: &str, token: &str, role: &str, extra: &str) -> String {
    format!("  - name: {name}\n    sha256: {}\n    role: {role}\n{extra}", token_hash(token))
}

#[test]
fn the_hash_is_the_sha256_of_the_token_in_hex() {
    assert_eq!(token_hash("test"), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
}

#[test]
fn new_tokens_are_random_and_long() {
    let (a, b) = (new_token().unwrap(), new_token().unwrap());
    assert_ne!(a, b);
    assert!(a.starts_with("jf_") && a.len() == 3 + 64, "{a}");
}

#[test]
fn a_known_token_is_its_entry_and_others_are_refused() {
    let text = format!(
        "tokens:\n{}",
        entry("agent-a", TOKEN, "submit", "    owner: team-a\n    secrets: [\"git/team-a/*\"]\n")
    );
    let (_dir, path) = file_with(&text);
    let auth = Auth::from_file(&path).unwrap();
    match auth.caller(Some(&format!("Bearer {TOKEN}"))).unwrap() {
        Caller::Token(holder) => {
            assert_eq!(
                (holder.name.as_str(), holder.role, holder.owner.as_deref()),
                ("agent-a", Role::Submit, Some("team-a"))
            );
            assert_eq!(holder.secrets.len(), 1);
        }
        other => panic!("a token holder: {other:?}"),
    }
    for header in [None, Some("Bearer other"), Some(TOKEN), Some("Basic abc"), Some("Bearer ")] {
        assert!(matches!(auth.caller(header), Err(ApiError::Unauthorized(_))), "{header:?} is refused");
    }
    assert_eq!(Auth::Off.caller(None).unwrap(), Caller::Anyone);
}

#[test]
fn the_file_is_read_again_when_it_changes_and_a_broken_edit_keeps_the_old_tokens() {
    let (_dir, path) = file_with(&format!("tokens:\n{}", entry("a", "one", "read", "")));
    let auth = Auth::from_file(&path).unwrap();
    assert!(auth.caller(Some("Bearer one")).is_ok());
    assert!(auth.caller(Some("Bearer two")).is_err());
    // A different size is a change even within the file system's time granularity.
    std::fs::write(&path, format!("tokens:\n{}", entry("b", "two", "admin", "    owner: ops\n"))).unwrap();
    assert!(auth.caller(Some("Bearer two")).is_ok(), "the new token works");
    assert!(auth.caller(Some("Bearer one")).is_err(), "the removed token does not");
    std::fs::write(&path, "tokens: [oops").unwrap();
    assert!(auth.caller(Some("Bearer two")).is_ok(), "a broken file keeps the tokens read before");
}

#[test]
fn broken_files_name_what_is_wrong() {
    let cases = [
        ("tokens:\n  - name: a\n    sha256: abc\n    role: submit\n", "sha256"),
        (&format!("tokens:\n{}", entry("a", "x", "boss", "")) as &str, "boss"),
        (&format!("tokens:\n{}{}", entry("a", "x", "read", ""), entry("a", "y", "read", "")), "used twice"),
        (&format!("tokens:\n{}{}", entry("a", "x", "read", ""), entry("b", "x", "read", "")), "another entry"),
        (&format!("tokens:\n{}", entry("a", "x", "read", "    secrets: [\"/abs\"]\n")), "relative"),
        (&format!("tokens:\n{}", entry("a", "x", "read", "    colour: red\n")), "colour"),
    ];
    for (text, says) in cases {
        let (_dir, path) = file_with(text);
        let err = Auth::from_file(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(says), "{text:?} is refused saying {says:?}: {err}");
    }
    assert!(matches!(Auth::from_file(Path::new("/nonexistent/auth.yaml")), Err(AuthFileError::Read { .. })));
}

#[test]
fn a_new_entry_reads_back_as_the_token_it_was_made_for() {
    let token = new_token().unwrap();
    let secrets = vec!["git/team-a/*".parse().unwrap(), "registry/team-a".parse().unwrap()];
    let entry = entry_yaml("agent \"a\"", &token, Role::Submit, Some("team-a"), &secrets);
    let (_dir, path) = file_with(&format!("tokens:\n{entry}"));
    let auth = Auth::from_file(&path).unwrap();
    let Caller::Token(holder) = auth.caller(Some(&format!("Bearer {token}"))).unwrap() else { panic!("a holder") };
    assert_eq!(holder.name, "agent \"a\"");
    assert_eq!((holder.role, holder.owner.as_deref(), holder.secrets), (Role::Submit, Some("team-a"), secrets));
    assert!(!entry.contains(&token), "the entry holds the hash only");
}
