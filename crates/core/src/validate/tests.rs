//! Validation cases: each bad input names its field; good input gets its defaults.

use serde_json::{Value, json};

use super::*;

fn minimal() -> Value {
    json!({
        "repo_url": "https://git.example.com/team/app.git",
        "image_name": "team/app",
        "registry_url": "127.0.0.1:5000",
    })
}

fn with(patch: Value) -> Value {
    let mut base = minimal();
    for (k, v) in patch.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

/// The problems for `input`, as `field: message` lines.
fn problems(input: Value) -> Vec<String> {
    match job_spec(&input) {
        Ok(spec) => panic!("expected problems, got {spec:?}"),
        Err(problems) => problems.into_iter().map(|p| format!("{}: {}", p.field, p.message)).collect(),
    }
}

/// Assert `input` is refused and that a problem names `field`.
fn check_refused(input: Value, field: &str) {
    let found = problems(input);
    assert!(found.iter().any(|p| p.split(": ").next() == Some(field)), "no problem names {field}: {found:#?}");
}

#[test]
fn minimal_job_gets_defaults() {
    let spec = job_spec(&minimal()).unwrap();
    assert_eq!(spec.git_ref.as_str(), "main");
    assert_eq!(spec.dockerfile_path.as_str(), "Dockerfile");
    assert_eq!(spec.context.as_str(), ".");
    assert!(spec.image_tags.is_empty());
    assert!(spec.tests().is_empty());
    assert!(!spec.clear_cache);
}

#[test]
fn every_problem_is_reported_at_once() {
    let found = problems(json!({"image_name": "Bad Name", "colour": "blue", "test_commands": "ls"}));
    let fields: Vec<&str> = found.iter().map(|p| p.split(": ").next().unwrap()).collect();
    for field in ["repo_url", "registry_url", "image_name", "colour", "test_commands"] {
        assert!(fields.contains(&field), "{field} missing from {found:#?}");
    }
}

#[test]
fn body_must_be_an_object() {
    assert_eq!(job_spec(&json!([1])).unwrap_err()[0].field, "body");
}

#[test]
fn required_fields_must_not_be_empty() {
    check_refused(with(json!({"repo_url": "  "})), "repo_url");
    check_refused(with(json!({"image_name": ""})), "image_name");
    check_refused(with(json!({"registry_url": null})), "registry_url");
}

#[test]
fn repository_urls() {
    for ok in [
        "https://github.com/a/b.git",
        "http://127.0.0.1:8000/repo.git",
        "ssh://git@host/repo.git",
        "git@github.com:a/b.git",
        "file:///srv/git/app",
    ] {
        assert!(job_spec(&with(json!({"repo_url": ok}))).is_ok(), "{ok}");
    }
    for bad in [
        "not a url",
        "-uhelp",
        "ftp://host/repo",
        "https://user:pw@host/repo",
        "https:///nohost",
        "git@host",
        "file://",
        "ext::sh -c touch% /tmp/pwned",
    ] {
        check_refused(with(json!({"repo_url": bad})), "repo_url");
    }
}

/// ssh reads a host or user starting with '-' as an option (`ssh://-oProxyCommand=...`), and
/// git passes both to it.
#[test]
fn repository_hosts_and_users_that_read_as_options_are_refused() {
    for bad in [
        "ssh://-oProxyCommand=id/x",
        "ssh://-oProxyCommand=id@host/x",
        "ssh://git@-host/x",
        "https://-x/y",
        "git://-x/y",
        "git@-oProxyCommand:path",
    ] {
        check_refused(with(json!({"repo_url": bad})), "repo_url");
    }
    let ok = "ssh://git-user@git-host.example.com/team-a/app-b.git";
    assert!(job_spec(&with(json!({"repo_url": ok}))).is_ok(), "a dash inside a name is fine");
}

#[test]
fn git_refs() {
    for ok in ["main", "feature/x", "v1.2.3", "0123456789abcdef0123456789abcdef01234567"] {
        assert!(job_spec(&with(json!({"git_ref": ok}))).is_ok(), "{ok}");
    }
    for bad in ["-f", "--upload-pack=x", "a b", "a..b", "a\tb", "x~1", "ref:", "a/", "x.lock", "@{-1}"] {
        check_refused(with(json!({"git_ref": bad})), "git_ref");
    }
}

#[test]
fn paths_stay_inside_the_repository() {
    let spec = job_spec(&with(json!({"dockerfile_path": "./docker/../Dockerfile", "context": "app/"}))).unwrap();
    assert_eq!(spec.dockerfile_path.as_str(), "Dockerfile");
    assert_eq!(spec.context.as_str(), "app");
    check_refused(with(json!({"dockerfile_path": "/etc/passwd"})), "dockerfile_path");
    check_refused(with(json!({"context": "../.."})), "context");
    check_refused(with(json!({"context": "a/../../b"})), "context");
}

/// A directory named like an option would reach buildah as one (`buildah bud ... CONTEXT`).
#[test]
fn path_parts_that_read_as_options_are_refused() {
    for bad in ["--secret=id=s,src=/secrets/registry.env", "app/-f", "./-", "a/--/b"] {
        check_refused(with(json!({"context": bad})), "context");
        check_refused(with(json!({"dockerfile_path": bad})), "dockerfile_path");
    }
    let spec = job_spec(&with(json!({"context": "app-1/x-"}))).unwrap();
    assert_eq!(spec.context.as_str(), "app-1/x-", "a dash inside a name is fine");
}

#[test]
fn image_names_and_tags() {
    check_refused(with(json!({"image_name": "UPPER"})), "image_name");
    check_refused(with(json!({"image_name": "a b"})), "image_name");
    check_refused(with(json!({"image_tags": ["ok", "-bad"]})), "image_tags[1]");
    check_refused(with(json!({"image_tags": [".x"]})), "image_tags[0]");
    check_refused(with(json!({"registry_url": "https://ghcr.io"})), "registry_url");
    let spec = job_spec(&with(json!({"image_tags": "v1"}))).unwrap();
    assert_eq!(spec.image_tags.len(), 1);
    let spec = job_spec(&with(json!({"image_tags": ["v1", "v1", "latest"]}))).unwrap();
    assert_eq!(spec.image_tags.len(), 2, "duplicates are dropped");
}

#[test]
fn timeouts() {
    let spec = job_spec(&with(json!({"build_timeout": "1h30m", "test_timeout": 90}))).unwrap();
    assert_eq!(spec.build_timeout.unwrap().as_secs(), 5400);
    assert_eq!(spec.test_timeout.unwrap().as_secs(), 90);
    for bad in [json!(0), json!("0s"), json!(-5), json!("soon"), json!("48h"), json!(true), json!(1.5)] {
        check_refused(with(json!({"build_timeout": bad})), "build_timeout");
    }
}

#[test]
fn resources() {
    let spec = job_spec(&with(json!({"resource_limits": {"memory": "2GB", "build": {"cpu": 2000}}}))).unwrap();
    assert_eq!(spec.resource_limits.memory, Some(2048));
    let build = spec.resources(crate::status::Phase::Build);
    assert_eq!((build.cpu, build.memory), (Some(2000), Some(2048)));
    for bad in [json!(0), json!(-1), json!("abc"), json!("2XB"), json!(999_999_999_999u64)] {
        check_refused(with(json!({"resource_limits": {"memory": bad}})), "resource_limits.memory");
    }
    check_refused(with(json!({"resource_limits": {"gpu": 1}})), "resource_limits.gpu");
    check_refused(with(json!({"resource_limits": {"test": {"cpu": "fast"}}})), "resource_limits.test.cpu");
}

#[test]
fn test_commands_and_the_nested_alias() {
    let spec = job_spec(&with(json!({"test": {"commands": ["true"], "entry_point": true, "timeout": "5m"}}))).unwrap();
    assert_eq!(spec.tests().len(), 2);
    assert_eq!(spec.test_timeout.unwrap().as_secs(), 300);
    check_refused(with(json!({"test_commands": ["a"], "test": {"commands": ["b"]}})), "test.commands");
    let many: Vec<String> = (0..51).map(|i| format!("echo {i}")).collect();
    check_refused(with(json!({"test_commands": many})), "test_commands");
    let fifty: Vec<String> = (0..50).map(|i| format!("echo {i}")).collect();
    check_refused(with(json!({"test_commands": fifty, "test_entry_point": true})), "test_commands");
    check_refused(with(json!({"test_commands": [""]})), "test_commands[0]");
    check_refused(with(json!({"test_commands": ["echo \u{1b}[31m"]})), "test_commands[0]");
    let spec = job_spec(&with(json!({"test_commands": ["set -e\n\techo ok"]}))).unwrap();
    assert_eq!(spec.test_commands.len(), 1, "newline and tab are allowed in commands");
}

#[test]
fn secret_paths_are_plain_relative_paths() {
    for bad in ["/abs", "a/../b", "a b", "{{ env \"X\" }}", "a//b"] {
        check_refused(with(json!({"git_credentials_path": bad})), "git_credentials_path");
    }
    check_refused(
        with(json!({"test": {"vault_secrets": [{"path": "a/../b", "fields": {"pw": "PW"}}]}})),
        "test.vault_secrets[0].path",
    );
    check_refused(
        with(json!({"test": {"vault_secrets": [{"path": "ok/path", "fields": {"pw": "1BAD"}}]}})),
        "test.vault_secrets[0].fields.pw",
    );
    check_refused(with(json!({"test": {"vault_secrets": [{"path": "ok"}]}})), "test.vault_secrets[0].fields");
}

#[test]
fn env_and_build_args() {
    check_refused(with(json!({"build_args": {"1X": "v"}})), "build_args.1X");
    check_refused(with(json!({"test": {"env": {"OK": "line\nbreak"}}})), "test.env.OK");
    let spec = job_spec(&with(json!({"build_args": {"N": 3, "B": true}}))).unwrap();
    assert_eq!(spec.build_args.values().cloned().collect::<Vec<_>>(), ["true", "3"]);
}

#[test]
fn webhooks_are_http() {
    check_refused(with(json!({"webhook_url": "file:///etc/passwd"})), "webhook_url");
    check_refused(with(json!({"webhook_url": "not a url"})), "webhook_url");
    check_refused(with(json!({"webhook_secret": "s"})), "webhook_url");
    let spec =
        job_spec(&with(json!({"webhook_url": "https://hooks.example.com/x", "webhook_on_failure": true}))).unwrap();
    assert!(spec.webhook.unwrap().on_failure);
}

#[test]
fn control_characters_are_refused_everywhere() {
    check_refused(with(json!({"owner": "bob\u{0}"})), "owner");
    check_refused(with(json!({"git_ref": "main\n"})), "git_ref");
    check_refused(with(json!({"image_name": "app\r"})), "image_name");
}

#[test]
fn wrong_types_name_the_field() {
    check_refused(with(json!({"clear_cache": "yes"})), "clear_cache");
    check_refused(with(json!({"test": []})), "test");
    check_refused(with(json!({"test_entry_point": 1})), "test_entry_point");
    check_refused(with(json!({"test": {"unknown": 1}})), "test.unknown");
}

#[test]
fn constraints() {
    let ok = json!({"test": {"constraints": [{"attribute": "${attr.kernel.name}", "value": "linux"}]}});
    assert!(job_spec(&with(ok)).is_ok());
    check_refused(
        with(json!({"test": {"constraints": [{"attribute": "x", "operand": "~~", "value": "y"}]}})),
        "test.constraints[0].operand",
    );
    check_refused(with(json!({"test": {"constraints": [{"attribute": "x"}]}})), "test.constraints[0].value");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever JSON arrives, validation answers (never panics), and what it accepts
        /// round-trips through the stored form.
        #[test]
        fn never_panics_and_round_trips(
            repo in ".{0,40}", image in "[a-z/._-]{0,20}", reference in ".{0,20}", tag in ".{0,12}",
            cmd in ".{0,30}", timeout in proptest::option::of(any::<i64>()),
        ) {
            let input = with(json!({
                "repo_url": repo, "image_name": image, "git_ref": reference,
                "image_tags": [tag], "test_commands": [cmd], "build_timeout": timeout,
            }));
            if let Ok(spec) = job_spec(&input) {
                let stored = serde_json::to_value(&spec).unwrap();
                let back: JobSpec = serde_json::from_value(stored).unwrap();
                prop_assert_eq!(back, spec);
            }
        }
    }
}

#[test]
fn the_host_of_a_repository_is_what_git_connects_to() {
    let host = |url: &str| job_spec(&with(json!({"repo_url": url}))).unwrap().repo_url.host();
    assert_eq!(host("https://Git.Example.com/a.git"), Some(("git.example.com".into(), None)));
    assert_eq!(host("https://git.example.com:443/a.git"), Some(("git.example.com".into(), None)), "the default port");
    assert_eq!(host("http://127.0.0.1:3000/a.git"), Some(("127.0.0.1".into(), Some(3000))));
    assert_eq!(host("ssh://git@git.example.com:2222/a.git"), Some(("git.example.com".into(), Some(2222))));
    assert_eq!(host("git@git.example.com:team/a.git"), Some(("git.example.com".into(), None)));
    assert_eq!(host("file:///srv/git/a.git"), None);
}

#[test]
fn repository_urls_hold_only_url_characters() {
    for bad in [
        "https://git.example.com/`id`.git",
        "https://${HOST}/team/app.git",
        "https://git.example.com/a\"b.git",
        "https://git.example.com/a{b}.git",
        "git@git.example.com:team/a|b.git",
        "https://git.example.com/caf\u{e9}.git",
    ] {
        check_refused(with(json!({"repo_url": bad})), "repo_url");
    }
    for ok in [
        "https://git.example.com/team/app%20x.git",
        "ssh://git@git.example.com:2222/a/b.git",
        "git@h.example:a/b~c.git",
    ] {
        assert!(job_spec(&with(json!({"repo_url": ok}))).is_ok(), "{ok}");
    }
}
