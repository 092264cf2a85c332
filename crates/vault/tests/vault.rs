//! `VaultSecrets` against a real OpenBao (`bao server -dev`, started per test by the testkit):
//! reads, missing and deleted secrets, `exists` from metadata alone, AppRole login and re-login
//! (expired and revoked tokens), health, and https with a private CA.

use std::future::Future;
use std::time::Duration;

use jobforge_core::ports::{Secrets, SecretsError};
use jobforge_core::secret::{SecretPath, SecretValue};
use jobforge_testkit::vault::TestVault;
use jobforge_vault::{DEFAULT_APPROLE_MOUNT, VaultAuth, VaultConfig, VaultError, VaultSecrets};

fn path(text: &str) -> SecretPath {
    text.parse().unwrap()
}

fn config(vault: &TestVault, auth: VaultAuth) -> VaultConfig {
    VaultConfig::new(vault.address().parse().unwrap(), auth)
}

async fn with_token(vault: &TestVault, token: &str) -> VaultSecrets {
    VaultSecrets::connect(config(vault, VaultAuth::Token(SecretValue::new(token)))).await.unwrap()
}

async fn with_approle(vault: &TestVault, role_id: &str, secret_id: &str) -> Result<VaultSecrets, VaultError> {
    let auth = VaultAuth::AppRole {
        role_id: role_id.to_owned(),
        secret_id: SecretValue::new(secret_id),
        mount: DEFAULT_APPROLE_MOUNT.to_owned(),
    };
    VaultSecrets::connect(config(vault, auth)).await
}

/// Wait until `condition` holds, checking every 100 ms, for at most `limit`.
async fn until<F: Future<Output = bool>>(limit: Duration, what: &str, condition: impl Fn() -> F) {
    let wait = async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(limit, wait).await.unwrap_or_else(|_| panic!("{what} did not happen within {limit:?}"));
}

fn field(data: &jobforge_core::secret::SecretData, name: &str) -> String {
    data.get(name).unwrap_or_else(|| panic!("no field {name}")).expose().to_owned()
}

#[tokio::test]
async fn a_secret_is_read_with_every_field_as_text() {
    let vault = TestVault::start().await;
    vault.put("git/app", &[("username", "bob"), ("password", "pa55-Wörd\nline 2")]).await;
    vault.put_json("db/main", serde_json::json!({"port": 5432, "tls": true, "opts": {"pool": [1, 2]}})).await;
    let secrets = with_token(&vault, vault.root_token()).await;

    let git = secrets.read(&path("git/app")).await.unwrap();
    assert_eq!((field(&git, "username"), field(&git, "password")), ("bob".into(), "pa55-Wörd\nline 2".into()));
    let db = secrets.read(&path("db/main")).await.unwrap();
    assert_eq!(field(&db, "port"), "5432");
    assert_eq!(field(&db, "tls"), "true");
    assert_eq!(field(&db, "opts"), r#"{"pool":[1,2]}"#);

    // A new version is read at once: nothing is cached.
    vault.put("git/app", &[("username", "bob"), ("password", "rotated")]).await;
    assert_eq!(field(&secrets.read(&path("git/app")).await.unwrap(), "password"), "rotated");
}

#[tokio::test]
async fn a_missing_secret_is_not_found_and_does_not_exist() {
    let vault = TestVault::start().await;
    let secrets = with_token(&vault, vault.root_token()).await;
    let missing = path("nomad/jobs/nothing-here");
    match secrets.read(&missing).await {
        Err(SecretsError::NotFound(named)) => assert_eq!(named, missing),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!secrets.exists(&missing).await.unwrap());
    vault.put("nomad/jobs/here", &[("k", "v")]).await;
    assert!(secrets.exists(&path("nomad/jobs/here")).await.unwrap());

    // A mount that is not there is the service's misconfiguration, not a missing secret.
    let mut wrong = config(&vault, VaultAuth::Token(SecretValue::new(vault.root_token())));
    wrong.kv_mount = "kv-not-mounted".into();
    let wrong = VaultSecrets::connect(wrong).await.unwrap();
    for result in [wrong.exists(&missing).await.map(|_| ()), wrong.read(&missing).await.map(|_| ())] {
        match result {
            Err(SecretsError::Unavailable(message)) => assert!(message.contains("kv-not-mounted"), "{message}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn exists_needs_only_metadata_and_reads_no_value() {
    let vault = TestVault::start().await;
    vault.put("limited/db", &[("password", "meta-only-s3cret")]).await;
    // This token may read metadata under limited/, and no secret's data at all.
    let token = vault.token_with_policy(&[("secret/metadata/limited/*", &["read"])]).await;
    let secrets = with_token(&vault, &token).await;

    assert!(secrets.exists(&path("limited/db")).await.unwrap());
    assert!(!secrets.exists(&path("limited/other")).await.unwrap());
    match secrets.read(&path("limited/db")).await {
        Err(SecretsError::Unreadable { path: named, message }) => {
            assert_eq!(named, path("limited/db"));
            assert!(message.contains("secret/data/limited/db") && message.contains("403"), "{message}");
            assert!(!message.contains("meta-only-s3cret") && !message.contains(&token), "{message}");
        }
        other => panic!("expected Unreadable, got {other:?}"),
    }
    // Outside its policy even metadata is refused: an error naming the path, not `false`.
    let error = secrets.exists(&path("elsewhere/x")).await.unwrap_err().to_string();
    assert!(error.contains("secret/metadata/elsewhere/x"), "{error}");
}

#[tokio::test]
async fn a_deleted_version_is_gone_until_a_new_one_is_written() {
    let vault = TestVault::start().await;
    let secrets = with_token(&vault, vault.root_token()).await;
    let app = path("app/creds");
    vault.put("app/creds", &[("token", "v1-value")]).await;
    assert!(secrets.exists(&app).await.unwrap());

    vault.delete("app/creds").await;
    assert!(matches!(secrets.read(&app).await, Err(SecretsError::NotFound(_))), "a deleted version reads as missing");
    assert!(!secrets.exists(&app).await.unwrap(), "its metadata remains, but the current version is deleted");

    vault.put("app/creds", &[("token", "v2-value")]).await;
    assert!(secrets.exists(&app).await.unwrap());
    assert_eq!(field(&secrets.read(&app).await.unwrap(), "token"), "v2-value");
}

#[tokio::test]
async fn approle_logs_in_and_again_once_its_token_has_expired() {
    let vault = TestVault::start().await;
    vault.put("ci/registry", &[("username", "robot"), ("password", "approle-pw")]).await;
    let (role_id, secret_id) = vault.enable_approle(&["ci/*"], Duration::from_secs(2)).await;
    let secrets = with_approle(&vault, &role_id, &secret_id).await.unwrap();
    assert_eq!(field(&secrets.read(&path("ci/registry")).await.unwrap(), "password"), "approle-pw");
    secrets.check().await.unwrap();

    // A token from the same role, issued after ours, has the same TTL: once Vault refuses it,
    // ours has expired too.
    let witness = vault.approle_login(&role_id, &secret_id).await;
    assert!(vault.token_is_valid(&witness).await, "the witness is checked by a call its policy allows");
    until(Duration::from_secs(30), "the witness token's expiry", || async { !vault.token_is_valid(&witness).await })
        .await;
    assert_eq!(field(&secrets.read(&path("ci/registry")).await.unwrap(), "password"), "approle-pw");
    assert!(secrets.exists(&path("ci/registry")).await.unwrap());
}

#[tokio::test]
async fn approle_logs_in_again_when_vault_refuses_its_token() {
    let vault = TestVault::start().await;
    vault.put("ci/git", &[("password", "git-pw")]).await;
    let (role_id, secret_id) = vault.enable_approle(&["ci/*"], Duration::from_secs(3600)).await;
    let secrets = with_approle(&vault, &role_id, &secret_id).await.unwrap();
    assert!(secrets.exists(&path("ci/git")).await.unwrap());

    // Revoked long before its lease ends: the next call is refused (403), logs in, retries.
    vault.revoke_approle_tokens().await;
    let clone = secrets.clone();
    let git = path("ci/git");
    let (a, b) = tokio::join!(secrets.read(&git), clone.read(&git));
    assert_eq!(field(&a.unwrap(), "password"), "git-pw");
    assert_eq!(field(&b.unwrap(), "password"), "git-pw");

    // A fresh token that the policy refuses is not retried forever: one error naming the path.
    let error = secrets.read(&path("other/thing")).await.unwrap_err();
    assert!(matches!(&error, SecretsError::Unreadable { .. }), "{error:?}");
    assert!(error.to_string().contains("secret/data/other/thing"), "{error}");
}

#[tokio::test]
async fn a_refused_approle_login_fails_connect_without_naming_the_secret_id() {
    let vault = TestVault::start().await;
    let (role_id, _) = vault.enable_approle(&["ci/*"], Duration::from_secs(60)).await;
    let error = with_approle(&vault, &role_id, "wrong-secret-id-4242").await.unwrap_err();
    assert!(matches!(error, VaultError::Login { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("auth/approle") && !text.contains("wrong-secret-id-4242"), "{text}");
}

#[tokio::test]
async fn check_is_ok_while_vault_serves_and_says_why_when_it_does_not() {
    let mut vault = TestVault::start().await;
    let secrets = with_token(&vault, vault.root_token()).await;
    secrets.check().await.unwrap();

    vault.seal().await;
    let error = secrets.check().await.unwrap_err();
    assert!(matches!(&error, SecretsError::Unavailable(m) if m.contains("sealed")), "{error:?}");
    let error = secrets.read(&path("any/thing")).await.unwrap_err();
    assert!(matches!(error, SecretsError::Unavailable(_)), "a sealed Vault is unavailable, not a missing secret");

    vault.stop();
    let error = secrets.check().await.unwrap_err();
    assert!(matches!(&error, SecretsError::Unavailable(m) if m.contains(&vault.address())), "{error:?}");
    assert!(matches!(secrets.exists(&path("any/thing")).await, Err(SecretsError::Unavailable(_))));
}

#[tokio::test]
async fn https_works_with_the_servers_ca_and_only_with_it() {
    let vault = TestVault::start_tls().await;
    vault.put("tls/app", &[("password", "over-tls")]).await;
    let ca = vault.ca_pem_path().unwrap().to_path_buf();
    let mut trusted = config(&vault, VaultAuth::Token(SecretValue::new(vault.root_token())));
    trusted.ca_file = Some(ca);
    let secrets = VaultSecrets::connect(trusted).await.unwrap();
    secrets.check().await.unwrap();
    assert_eq!(field(&secrets.read(&path("tls/app")).await.unwrap(), "password"), "over-tls");

    let untrusted = with_token(&vault, vault.root_token()).await;
    assert!(matches!(untrusted.check().await, Err(SecretsError::Unavailable(_))));
    assert!(matches!(untrusted.read(&path("tls/app")).await, Err(SecretsError::Unavailable(_))));
}
