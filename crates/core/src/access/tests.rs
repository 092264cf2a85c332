//! The access rules as a table of callers and what each may do.

use super::*;
use crate::validate::job_spec;

fn token(role: Role, owner: Option<&str>, secrets: &[&str]) -> Caller {
    Caller::Token(TokenHolder {
        name: "t".into(),
        role,
        owner: owner.map(str::to_owned),
        secrets: secrets.iter().map(|s| s.parse().unwrap()).collect(),
    })
}

fn spec(extra: serde_json::Value) -> JobSpec {
    let mut config = serde_json::json!({
        "repo_url": "https://git.example.com/app.git",
        "image_name": "app",
        "registry_url": "registry.example.com",
    });
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    job_spec(&config).unwrap()
}

fn path(s: &str) -> SecretPath {
    s.parse().unwrap()
}

#[test]
fn patterns_match_within_a_segment_and_doublestar_below() {
    let cases = [
        ("git/team-a/*", "git/team-a/app", true),
        ("git/team-a/*", "git/team-a/app/deep", false),
        ("git/team-a/*", "git/team-b/app", false),
        ("git/team-a/**", "git/team-a/app/deep", true),
        ("git/team-a/**", "git/team-a", false),
        ("registry/team-a", "registry/team-a", true),
        ("registry/team-a", "registry/team-ab", false),
        ("registry/team-*", "registry/team-ab", true),
        ("*/app", "git/app", true),
        ("git/*-ro", "git/app-ro", true),
        ("git/*-ro", "git/app-rw", false),
    ];
    for (pattern, secret, want) in cases {
        let pattern: SecretPattern = pattern.parse().unwrap();
        assert_eq!(pattern.matches(&path(secret)), want, "{pattern:?} against {secret}");
    }
}

#[test]
fn bad_patterns_are_refused() {
    for bad in ["", "/abs", "a//b", "a/**/b", "a/b c", "a/../b"] {
        let parsed: Result<SecretPattern, _> = bad.parse();
        assert!(parsed.is_err(), "{bad:?} is refused");
    }
}

#[test]
fn submit_tokens_see_and_change_only_their_owners_jobs() {
    let a = token(Role::Submit, Some("team-a"), &[]);
    assert_eq!(a.may_read(Some("team-a")), Ok(()));
    assert_eq!(a.may_read(Some("team-b")), Err(Denied::Hidden));
    assert_eq!(a.may_read(None), Err(Denied::Hidden));
    assert_eq!(a.may_change(Some("team-b")), Err(Denied::Hidden), "another owner's job does not exist to it");
    assert_eq!(a.may_change(Some("team-a")), Ok(()));
    assert!(matches!(a.may_administer(), Err(Denied::Forbidden { .. })));
}

#[test]
fn read_tokens_read_everything_and_change_nothing() {
    let r = token(Role::Read, None, &[]);
    assert_eq!(r.may_read(Some("anyone")), Ok(()));
    assert!(matches!(r.may_change(Some("anyone")), Err(Denied::Forbidden { field: None, .. })));
    assert!(matches!(r.may_submit(&mut spec(serde_json::json!({}))), Err(Denied::Forbidden { .. })));
    assert!(matches!(r.may_administer(), Err(Denied::Forbidden { .. })));
}

#[test]
fn admins_and_anyone_may_do_everything() {
    for caller in [token(Role::Admin, None, &[]), Caller::Anyone] {
        assert_eq!(caller.may_change(Some("x")), Ok(()));
        assert_eq!(caller.may_administer(), Ok(()));
        let mut job = spec(serde_json::json!({"owner": "x", "git_credentials_path": "git/any"}));
        assert_eq!(caller.may_submit(&mut job), Ok(()));
        assert_eq!(job.owner.as_deref(), Some("x"), "the owner asked for stays");
    }
}

#[test]
fn a_submit_token_owns_what_it_submits() {
    let a = token(Role::Submit, Some("team-a"), &[]);
    let mut job = spec(serde_json::json!({}));
    a.may_submit(&mut job).unwrap();
    assert_eq!(job.owner.as_deref(), Some("team-a"));
    let mut same = spec(serde_json::json!({"owner": "team-a"}));
    assert_eq!(a.may_submit(&mut same), Ok(()));
    let mut other = spec(serde_json::json!({"owner": "team-b"}));
    match a.may_submit(&mut other) {
        Err(Denied::Forbidden { field, message }) => {
            assert_eq!(field.as_deref(), Some("owner"));
            assert!(message.contains("team-a") && message.contains("team-b"), "{message}");
        }
        other => panic!("refused: {other:?}"),
    }
}

#[test]
fn a_submit_token_names_only_the_secrets_its_patterns_allow() {
    let a = token(Role::Submit, Some("team-a"), &["git/team-a/*", "registry/team-a"]);
    let mut allowed = spec(serde_json::json!({
        "git_credentials_path": "git/team-a/app",
        "registry_credentials_path": "registry/team-a",
    }));
    assert_eq!(a.may_submit(&mut allowed), Ok(()));
    let refused = [
        (serde_json::json!({"git_credentials_path": "git/app"}), "git_credentials_path"),
        (serde_json::json!({"registry_credentials_path": "registry/team-b"}), "registry_credentials_path"),
        (
            serde_json::json!({"test": {"vault_secrets": [{"path": "db/prod", "fields": {"pw": "PW"}}]}}),
            "test.vault_secrets[0].path",
        ),
    ];
    for (extra, want) in refused {
        match a.may_submit(&mut spec(extra)) {
            Err(Denied::Forbidden { field, message }) => {
                assert_eq!(field.as_deref(), Some(want));
                assert!(message.starts_with(want), "{message}");
            }
            other => panic!("{want} refused: {other:?}"),
        }
    }
}
