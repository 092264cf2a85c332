//! [`TestRegistry`]: the real CNCF distribution registry (`docker-registry serve`, 2.8) on a free
//! loopback port, in a temporary directory that lives as long as the fixture.
//!
//! It owns the registry process, its config, storage and log file, and a few helpers that speak
//! the distribution HTTP API directly (push a tiny synthetic image, read digests, tags and the
//! catalog), so tests can set up and check registry state without buildah and without the code
//! under test. It must not stand in for the registry: every answer comes from the real server.
//! Helpers panic with the registry's log on anything unexpected; this is test-only code.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use crate::net::{free_port, wait_for_listen};

/// What `HEAD`/`GET` of a manifest accepts: OCI and Docker v2, single images and indexes.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
                               application/vnd.oci.image.manifest.v1+json, \
                               application/vnd.docker.distribution.manifest.list.v2+json, \
                               application/vnd.docker.distribution.manifest.v2+json";

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// How often to try a fresh port when another process took the one we picked.
const START_ATTEMPTS: usize = 5;
/// How long the registry may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `docker-registry`. Dropping it kills the process, waits for it, and removes its
/// directory (storage, config, htpasswd file and log).
pub struct TestRegistry {
    child: Child,
    port: u16,
    credentials: Option<(String, String)>,
    log_path: PathBuf,
    http: reqwest::Client,
    // Declared last so the directory is removed only after the process is gone.
    _dir: TempDir,
}

/// What a registry is started with.
struct Options<'a> {
    delete_enabled: bool,
    auth: Option<(&'a str, &'a str)>,
}

impl TestRegistry {
    /// A registry without authentication that allows deleting manifests.
    pub fn start() -> TestRegistry {
        Self::start_with(Options { delete_enabled: true, auth: None })
    }

    /// A registry that requires `user`/`password` (htpasswd, HTTP Basic) and allows deletes.
    pub fn start_with_auth(user: &str, password: &str) -> TestRegistry {
        Self::start_with(Options { delete_enabled: true, auth: Some((user, password)) })
    }

    /// A registry without authentication whose `storage.delete` is disabled: deletes get 405.
    pub fn start_without_delete() -> TestRegistry {
        Self::start_with(Options { delete_enabled: false, auth: None })
    }

    fn start_with(options: Options<'_>) -> TestRegistry {
        let dir = tempfile::Builder::new().prefix("jobforge-registry-").tempdir().expect("create a temp dir");
        let storage = dir.path().join("storage");
        fs::create_dir(&storage).expect("create the registry storage dir");
        let htpasswd = options.auth.map(|(user, password)| write_htpasswd(dir.path(), user, password));
        let log_path = dir.path().join("registry.log");

        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let config = dir.path().join("config.yml");
            fs::write(&config, config_yaml(&storage, port, options.delete_enabled, htpasswd.as_deref()))
                .expect("write the registry config");
            let log = File::create(&log_path).expect("create the registry log");
            let mut child = Command::new("/usr/bin/docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log file handle"))
                .stderr(log)
                .spawn()
                .expect("spawn /usr/bin/docker-registry (apt-get install docker-registry)");
            match wait_until_listening(&mut child, port, &log_path) {
                Started::Listening => {
                    return TestRegistry {
                        child,
                        port,
                        credentials: options.auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
                        log_path,
                        http: reqwest::Client::builder()
                            .timeout(Duration::from_secs(30))
                            .build()
                            .expect("build an HTTP client"),
                        _dir: dir,
                    };
                }
                Started::PortTaken => {
                    // It has exited already; reap it and try another port.
                    let _ = child.wait();
                }
            }
        }
        panic!("docker-registry could not get a free port in {START_ATTEMPTS} attempts");
    }

    /// `127.0.0.1:PORT`, as written in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The user and password the registry requires, if it was started with auth.
    pub fn credentials(&self) -> Option<(String, String)> {
        self.credentials.clone()
    }

    /// Everything the registry wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// Upload a tiny valid OCI image (a config blob, one uncompressed tar layer holding a file
    /// that names `repo:tag`, and an OCI manifest) as `repo:tag`, and return the manifest digest.
    /// Different `repo:tag` pairs get different digests.
    pub async fn push_synthetic_image(&self, repo: &str, tag: &str) -> String {
        let layer = tar_with_one_file("hello.txt", format!("{repo}:{tag}\n").as_bytes());
        let layer_digest = sha256_digest(&layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": { "jobforge.test": format!("{repo}:{tag}") } },
            "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        }))
        .expect("serialize the image config");
        let config_digest = sha256_digest(&config);
        self.upload_blob(repo, &config).await;
        self.upload_blob(repo, &layer).await;

        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len() },
            "layers": [ { "mediaType": OCI_LAYER_TAR, "digest": layer_digest, "size": layer.len() } ],
        }))
        .expect("serialize the manifest");
        let digest = sha256_digest(&manifest);
        let response = self
            .send(
                self.request(Method::PUT, &format!("/v2/{repo}/manifests/{tag}"))
                    .header("Content-Type", OCI_MANIFEST)
                    .body(manifest),
            )
            .await;
        self.expect_status(response, StatusCode::CREATED, &format!("PUT manifest {repo}:{tag}")).await;
        digest
    }

    /// The digest `repo:reference` resolves to (`HEAD` of the manifest), or `None` on 404.
    pub async fn digest(&self, repo: &str, reference: &str) -> Option<String> {
        let response = self
            .send(
                self.request(Method::HEAD, &format!("/v2/{repo}/manifests/{reference}"))
                    .header("Accept", MANIFEST_ACCEPT),
            )
            .await;
        match response.status() {
            StatusCode::NOT_FOUND => None,
            StatusCode::OK => {
                let digest = response.headers().get("Docker-Content-Digest").and_then(|v| v.to_str().ok());
                match digest {
                    Some(digest) => Some(digest.to_owned()),
                    None => panic!("HEAD {repo}:{reference} has no Docker-Content-Digest; log:\n{}", self.log()),
                }
            }
            status => panic!("HEAD {repo}:{reference} answered {status}; registry log:\n{}", self.log()),
        }
    }

    /// The tags of `repo`; empty if the repository is unknown or has none left.
    pub async fn tags(&self, repo: &str) -> Vec<String> {
        let response = self.send(self.request(Method::GET, &format!("/v2/{repo}/tags/list"))).await;
        if response.status() == StatusCode::NOT_FOUND {
            return Vec::new();
        }
        let body = self.expect_status(response, StatusCode::OK, &format!("GET tags of {repo}")).await;
        string_list(&body, "tags")
    }

    /// The repositories the registry knows (`GET /v2/_catalog`).
    pub async fn catalog(&self) -> Vec<String> {
        let response = self.send(self.request(Method::GET, "/v2/_catalog")).await;
        let body = self.expect_status(response, StatusCode::OK, "GET the catalog").await;
        string_list(&body, "repositories")
    }

    /// Monolithic upload: `POST` opens an upload session, one `PUT ?digest=` sends the bytes.
    async fn upload_blob(&self, repo: &str, blob: &[u8]) {
        let digest = sha256_digest(blob);
        let response = self.send(self.request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))).await;
        let location = response.headers().get("Location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.expect_status(response, StatusCode::ACCEPTED, &format!("POST upload to {repo}")).await;
        let Some(location) = location else {
            panic!("POST upload to {repo} answered without a Location; log:\n{}", self.log());
        };
        // The Location may be absolute or relative, and may carry its own query (`_state`).
        let mut url = self.url("/").join(&location).expect("a valid upload Location");
        url.query_pairs_mut().append_pair("digest", &digest);
        let mut put = self
            .http
            .put(url)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", blob.len())
            .body(blob.to_vec());
        if let Some((user, password)) = &self.credentials {
            put = put.basic_auth(user, Some(password));
        }
        let response = self.send(put).await;
        self.expect_status(response, StatusCode::CREATED, &format!("PUT blob {digest} to {repo}")).await;
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.host())).expect("a valid registry URL")
    }

    /// A request to `path`, with Basic credentials when the registry has them.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        match request.send().await {
            Ok(response) => response,
            Err(err) => panic!("request to the test registry failed: {err}; registry log:\n{}", self.log()),
        }
    }

    /// The body, after checking the status is `expected`.
    async fn expect_status(&self, response: reqwest::Response, expected: StatusCode, what: &str) -> Vec<u8> {
        let status = response.status();
        let body = match response.bytes().await {
            Ok(body) => body.to_vec(),
            Err(err) => panic!("{what}: reading the body failed: {err}; registry log:\n{}", self.log()),
        };
        if status != expected {
            panic!(
                "{what}: expected {expected}, got {status}: {}\nregistry log:\n{}",
                String::from_utf8_lossy(&body),
                self.log()
            );
        }
        body
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        // An error means it has exited already; waiting still reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Started {
    Listening,
    PortTaken,
}

/// Poll until the registry says it listens and accepts connections, or it exits.
fn wait_until_listening(child: &mut Child, port: u16, log_path: &Path) -> Started {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => {
                let log = read_log(log_path);
                if log.contains("address already in use") {
                    return Started::PortTaken;
                }
                panic!("docker-registry exited at start ({status}); its log:\n{log}");
            }
            Ok(None) => {}
            Err(err) => panic!("could not check the docker-registry process: {err}"),
        }
        // "listening on" is logged only once the registry has bound its port, so a connection
        // after that reaches the registry and not whoever else had the port.
        if wait_for_listen(addr, Duration::from_millis(100)) && read_log(log_path).contains("listening on") {
            return Started::Listening;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("docker-registry did not listen on {addr} within {START_TIMEOUT:?}; its log:\n{}", read_log(log_path));
}

fn read_log(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => format!("(could not read {}: {err})", path.display()),
    }
}

fn config_yaml(storage: &Path, port: u16, delete_enabled: bool, htpasswd: Option<&Path>) -> String {
    let mut yaml = format!(
        "version: 0.1\n\
         log:\n  level: info\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: {delete_enabled}\n\
         http:\n  addr: 127.0.0.1:{port}\n",
        storage = storage.display(),
    );
    if let Some(htpasswd) = htpasswd {
        yaml.push_str(&format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n", htpasswd.display()));
    }
    yaml
}

/// `htpasswd -Bbn USER PASSWORD` (bcrypt, as the registry requires) into `DIR/htpasswd`.
fn write_htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let output = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .stdin(Stdio::null())
        .output()
        .expect("run htpasswd (apt-get install apache2-utils)");
    assert!(output.status.success(), "htpasswd failed: {}", String::from_utf8_lossy(&output.stderr));
    let path = dir.join("htpasswd");
    fs::write(&path, output.stdout).expect("write the htpasswd file");
    path
}

fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A ustar archive holding one regular file.
fn tar_with_one_file(name: &str, content: &[u8]) -> Vec<u8> {
    fn octal(field: &mut [u8], value: usize) {
        // Zero-padded octal, NUL-terminated, filling the field.
        let text = format!("{value:0width$o}\0", width = field.len() - 1);
        field.copy_from_slice(text.as_bytes());
    }
    assert!(name.len() < 100, "tar member names here are short");
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut header[100..108], 0o644);
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    octal(&mut header[124..136], content.len());
    octal(&mut header[136..148], 0);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: usize = header.iter().map(|&b| usize::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());

    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    // End of archive: two zero blocks.
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// `body[key]` as strings; a missing or `null` list is empty.
fn string_list(body: &[u8], key: &str) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|err| panic!("registry answered invalid JSON ({err}): {}", String::from_utf8_lossy(body)));
    match value.get(key) {
        Some(serde_json::Value::Array(items)) => {
            items.iter().filter_map(|item| item.as_str().map(str::to_owned)).collect()
        }
        _ => Vec::new(),
    }
}
