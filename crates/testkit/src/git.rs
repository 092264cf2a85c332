//! Git fixtures: [`GitRepo`], a real repository in a temporary directory, and [`GitHttpsServer`],
//! a private git server over HTTPS with Basic auth that runs the real `git http-backend`.
//!
//! Everything here drives the installed `git`; nothing reimplements git's formats or protocols,
//! so a test that passes against these fixtures passes against a real git host. The fixtures'
//! own git commands ignore the global and system git config, so a developer's `~/.gitconfig`
//! cannot change what a test sees. Failures panic with a message naming the command and its
//! stderr: this is test-only code and must never be used by a production crate.

use std::convert::Infallible;
use std::ffi::OsStr;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::StreamExt as _;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

const BUSYBOX: &str = "/bin/busybox";

/// The Dockerfile of [`GitRepo::example`]: it builds offline, from `scratch`, in under a second.
pub const EXAMPLE_DOCKERFILE: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
RUN [\"/bin/busybox\",\"--install\",\"-s\",\"/bin\"]\n\
CMD [\"sh\",\"-c\",\"echo hello from the entry point\"]\n";

/// What the example image prints when run with its default command.
pub const EXAMPLE_OUTPUT: &str = "hello from the entry point";

/// The contents of `hello.txt` in [`GitRepo::example`].
pub const EXAMPLE_HELLO: &str = "hello from the example repository\n";

/// The static busybox that example images copy in as their only program.
///
/// Panics, naming the Debian package to install, if it is missing or dynamically linked (a
/// dynamic busybox would fail inside a `FROM scratch` image with a confusing "no such file").
pub fn busybox_path() -> &'static Path {
    let path = Path::new(BUSYBOX);
    let mut header = Vec::new();
    let opened = std::fs::File::open(path).and_then(|file| file.take(64 * 1024).read_to_end(&mut header));
    if let Err(error) = opened {
        panic!("cannot read {BUSYBOX} ({error}): install the Debian package busybox-static");
    }
    assert!(
        !elf_has_interpreter(&header),
        "{BUSYBOX} is dynamically linked: install the Debian package busybox-static"
    );
    path
}

/// Whether a 64-bit little-endian ELF image names a dynamic loader (a `PT_INTERP` segment).
/// Anything else counts as static: the check only exists to explain the common mistake.
fn elf_has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let u16_at = |at: usize| elf.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u64_at = |at: usize| elf.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize);
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..phnum).any(|index| {
        let at = phoff.saturating_add(index * phentsize);
        elf.get(at..at.saturating_add(4)) == Some(&PT_INTERP.to_le_bytes()[..])
    })
}

/// A git command isolated from whoever runs the tests: no global or system config, and none of
/// the `GIT_*` variables that a surrounding git (a hook, `git rebase --exec`) exports and that
/// would redirect the command to another repository.
fn git_command(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0");
    for inherited in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_AUTHOR_DATE",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "GIT_COMMITTER_DATE",
    ] {
        command.env_remove(inherited);
    }
    command
}

/// Run git in `dir` and return its trimmed stdout, panicking with its stderr if it fails.
fn git<I, S>(dir: &Path, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = git_command(dir);
    command.args(args).stdin(Stdio::null());
    let output = command.output().unwrap_or_else(|error| panic!("cannot run {command:?}: {error} (is git installed?)"));
    assert!(
        output.status.success(),
        "{command:?} in {} failed ({}):\n{}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A real git repository with a work tree, in a temporary directory removed on drop.
///
/// Author and committer are set in the repository's own config, so git commands a test runs in
/// it (or code under test runs) can commit without any global identity.
pub struct GitRepo {
    dir: TempDir,
}

impl Default for GitRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl GitRepo {
    /// An empty repository on branch `main`, with no commits.
    pub fn new() -> GitRepo {
        let dir = tempfile::Builder::new()
            .prefix("jobforge-git-")
            .tempdir()
            .expect("create a temporary directory for a git repository");
        // An empty template skips copying git's sample hooks: they are never used, and every
        // test that needs a repository pays for `init`.
        git(dir.path(), ["init", "--quiet", "--template=", "--initial-branch=main"]);
        git(dir.path(), ["config", "user.name", "jobforge tests"]);
        git(dir.path(), ["config", "user.email", "tests@jobforge.invalid"]);
        GitRepo { dir }
    }

    /// The example image's build context, committed on `main`: [`EXAMPLE_DOCKERFILE`], the
    /// static busybox it copies, and `hello.txt` ([`EXAMPLE_HELLO`]).
    ///
    /// Built from scratch each call (tens of milliseconds): a per-process template would not
    /// help, since nextest runs every test in its own process.
    pub fn example() -> GitRepo {
        let repo = GitRepo::new();
        std::fs::copy(busybox_path(), repo.path().join("busybox"))
            .expect("copy the static busybox into the example repository");
        repo.write("Dockerfile", EXAMPLE_DOCKERFILE)
            .write("hello.txt", EXAMPLE_HELLO)
            .commit("example image: busybox from scratch");
        repo
    }

    /// Write a file in the work tree (not staged), creating its parent directories.
    pub fn write(&self, path: &str, contents: &str) -> &Self {
        self.write_bytes(path, contents.as_bytes())
    }

    /// Write a file in the work tree (not staged), creating its parent directories.
    pub fn write_bytes(&self, path: &str, contents: &[u8]) -> &Self {
        let file = self.path().join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|error| panic!("create {}: {error}", parent.display()));
        }
        std::fs::write(&file, contents).unwrap_or_else(|error| panic!("write {}: {error}", file.display()));
        self
    }

    /// Remove a file or a directory tree from the work tree (the next commit records it).
    pub fn remove(&self, path: &str) -> &Self {
        let target = self.path().join(path);
        let removed = if target.is_dir() { std::fs::remove_dir_all(&target) } else { std::fs::remove_file(&target) };
        removed.unwrap_or_else(|error| panic!("remove {}: {error}", target.display()));
        self
    }

    /// Stage everything and commit it on the current branch; returns the commit's full SHA.
    ///
    /// Commits even when nothing changed, so a test can always make a distinct commit.
    pub fn commit(&self, message: &str) -> String {
        // Uncompressed loose objects make committing the 2 MB busybox several times faster;
        // packs sent to clients are compressed as usual.
        git(self.path(), ["-c", "core.looseCompression=0", "add", "--all"]);
        git(self.path(), ["commit", "--quiet", "--allow-empty", "--no-verify", "-m", message]);
        git(self.path(), ["rev-parse", "HEAD"])
    }

    /// Create a branch at the current commit and check it out.
    pub fn branch(&self, name: &str) -> &Self {
        git(self.path(), ["checkout", "--quiet", "-b", name]);
        self
    }

    /// Check out a branch, a tag or a commit (the last two detach HEAD).
    pub fn checkout(&self, name: &str) -> &Self {
        git(self.path(), ["checkout", "--quiet", name]);
        self
    }

    /// Tag the current commit (a lightweight tag).
    pub fn tag(&self, name: &str) -> &Self {
        git(self.path(), ["tag", name]);
        self
    }

    /// The work tree (its `.git` is inside).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A `file://` URL that `git clone` accepts.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    /// A bare clone of this repository at `dir/<name>.git`, with all its branches and tags and
    /// `HEAD` on the current branch, ready to be served over HTTP (by [`GitHttpsServer`] with
    /// `dir` as its root). `name` is given without `.git`. Returns the bare repository's path.
    pub fn bare_clone_into(&self, dir: &Path, name: &str) -> PathBuf {
        let bare = dir.join(format!("{name}.git"));
        let args = ["clone", "--quiet", "--bare"].map(OsStr::new);
        git(dir, args.iter().copied().chain([self.path().as_os_str(), bare.as_os_str()]));
        // For dumb-HTTP clients; the smart protocol that git uses by default does not need it.
        git(&bare, ["update-server-info"]);
        bare
    }
}

/// One request the server answered: method, path with query, status.
type RequestLog = Arc<Mutex<Vec<(String, String, u16)>>>;

/// A private git host: bare repositories under a root directory, served over HTTPS by the real
/// `git http-backend` (smart HTTP, protocol v2, fetch and push) to clients that present the
/// Basic credentials given at start. Everything else gets `401`.
///
/// The server certificate chains to a CA generated at start; clients trust it through
/// `GIT_SSL_CAINFO=`[`ca_pem_path`](Self::ca_pem_path). The server runs on the Tokio runtime
/// that called [`start`](Self::start) and stops when this value is dropped, so a test must run
/// its git clients without blocking that runtime (for example with `tokio::process`).
pub struct GitHttpsServer {
    addr: SocketAddr,
    ca_pem_path: PathBuf,
    requests: RequestLog,
    /// Owns the connection tasks, so aborting it ends every connection and, through
    /// `kill_on_drop`, every `git http-backend` still running.
    accept_loop: JoinHandle<()>,
    /// Holds the CA file for as long as clients may need it.
    _tls_dir: TempDir,
}

impl GitHttpsServer {
    /// Listen on a free port of 127.0.0.1 and serve the bare repositories under `root`
    /// (`root/app.git` is `url("app.git")`) to `user` with `password`.
    pub async fn start(root: &Path, user: &str, password: &str) -> GitHttpsServer {
        let tls_dir = tempfile::Builder::new()
            .prefix("jobforge-git-tls-")
            .tempdir()
            .expect("create a temporary directory for the git server's CA");
        let (ca_pem, tls_config) = tls_material();
        let ca_pem_path = tls_dir.path().join("ca.pem");
        std::fs::write(&ca_pem_path, ca_pem).expect("write the git server's CA certificate");

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the git server to a loopback port");
        let addr = listener.local_addr().expect("local address of the git server");
        let requests = RequestLog::default();
        let backend = Arc::new(Backend {
            root: std::path::absolute(root).expect("absolute path of the git server's root"),
            user: user.to_owned(),
            credentials: format!("{user}:{password}"),
            requests: Arc::clone(&requests),
        });
        let acceptor = TlsAcceptor::from(Arc::new(tls_config));
        let accept_loop = tokio::spawn(accept_loop(listener, acceptor, backend));
        tracing::debug!(%addr, root = %root.display(), "git https server listening");
        GitHttpsServer { addr, ca_pem_path, requests, accept_loop, _tls_dir: tls_dir }
    }

    /// The clone URL of a repository under the root, e.g. `url("app.git")`.
    pub fn url(&self, repo: &str) -> String {
        format!("https://{}/{}", self.addr, repo.trim_start_matches('/'))
    }

    /// The PEM file of the CA that the server's certificate chains to.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// Every request answered so far, in order: `(method, path and query, status)`.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        self.requests.lock().expect("request log lock").clone()
    }
}

impl Drop for GitHttpsServer {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// A CA, and a server configuration whose certificate it signed for 127.0.0.1 and localhost.
fn tls_material() -> (String, rustls::ServerConfig) {
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params.distinguished_name.push(DnType::CommonName, "jobforge testkit git CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("generate the CA key");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("self-sign the CA");

    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("server certificate names");
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "localhost");
    // What a real server's leaf says it is for; strict TLS clients check it.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().expect("generate the server key");
    let certificate = params.signed_by(&key, &ca).expect("sign the server certificate");

    // An explicit provider: reqwest and rcgen bring aws-lc-rs into the same binary, and with
    // two providers compiled in, rustls refuses to pick a process default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("rustls protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("rustls server certificate");
    // The server speaks HTTP/1.1 only; saying so stops curl from offering h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca.pem(), config)
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, backend: Arc<Backend>) {
    let mut connections = JoinSet::new();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "git https server: accept failed");
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let backend = Arc::clone(&backend);
        connections.spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(error) => {
                    tracing::debug!(%peer, %error, "git https server: TLS handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request| {
                let backend = Arc::clone(&backend);
                async move { Ok::<_, Infallible>(backend.handle(request, peer).await) }
            });
            let served = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "git https server: connection ended with an error");
            }
        });
    }
}

/// Authorizes requests and hands them to `git http-backend`.
struct Backend {
    root: PathBuf,
    user: String,
    /// `user:password`, as a Basic `Authorization` header carries it once decoded.
    credentials: String,
    requests: RequestLog,
}

impl Backend {
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let method = request.method().to_string();
        let target = request
            .uri()
            .path_and_query()
            .map_or_else(|| request.uri().path().to_owned(), |target| target.as_str().to_owned());
        let response =
            if self.authorized(request.headers()) { self.run_cgi(request, peer).await } else { unauthorized() };
        tracing::debug!(%method, %target, status = %response.status(), "git https server");
        self.requests.lock().expect("request log lock").push((method, target, response.status().as_u16()));
        response
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some((scheme, encoded)) = value.trim().split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("basic")
            && BASE64.decode(encoded.trim()).is_ok_and(|decoded| decoded == self.credentials.as_bytes())
    }

    /// Run `git http-backend` as a CGI program (RFC 3875) for one request.
    async fn run_cgi(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let mut command = tokio::process::Command::new("git");
        command
            .arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1")
            .env("REQUEST_METHOD", parts.method.as_str())
            .env("PATH_INFO", parts.uri.path())
            .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
            // Also what makes http-backend accept pushes (`http.receivepack` defaults to
            // "only for authenticated users").
            .env("REMOTE_USER", &self.user)
            .env("REMOTE_ADDR", peer.ip().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Every header goes through as HTTP_*, as CGI prescribes. Two matter to git:
        // `Git-Protocol` (HTTP_GIT_PROTOCOL) selects protocol v2, without which a fetch of a
        // commit that no ref points at is refused, and `Content-Encoding` (HTTP_CONTENT_ENCODING)
        // lets http-backend inflate the gzip bodies git sends for requests over 1 KiB.
        for (name, value) in &parts.headers {
            let Ok(value) = value.to_str() else { continue };
            if name == header::CONTENT_TYPE {
                command.env("CONTENT_TYPE", value);
            } else if name == header::CONTENT_LENGTH {
                // Absent for chunked bodies: http-backend then reads stdin to its end.
                command.env("CONTENT_LENGTH", value);
            } else if name != header::AUTHORIZATION {
                let variable = name.as_str().to_ascii_uppercase().replace('-', "_");
                command.env(format!("HTTP_{variable}"), value);
            }
        }

        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => return bad_gateway(format!("cannot run git http-backend: {error}")),
        };
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        // Fed concurrently with reading the output, so neither pipe can fill up and stall the
        // other side.
        tokio::spawn(feed_stdin(Body::new(body), stdin));
        tokio::spawn(log_stderr(stderr));

        let mut stdout = BufReader::new(stdout);
        let mut response = Response::builder();
        let mut status = StatusCode::OK;
        loop {
            let mut line = String::new();
            match stdout.read_line(&mut line).await {
                Ok(0) => return bad_gateway("git http-backend exited before its headers".into()),
                Ok(_) => {}
                Err(error) => return bad_gateway(format!("reading git http-backend: {error}")),
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return bad_gateway(format!("git http-backend wrote a bad header line: {line:?}"));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("Status") {
                let code = value.split_whitespace().next().unwrap_or_default();
                match code.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()) {
                    Some(code) => status = code,
                    None => return bad_gateway(format!("git http-backend wrote {line:?}")),
                }
            } else {
                response = response.header(name, value);
            }
        }
        response
            .status(status)
            .body(Body::from_stream(cgi_body(stdout, child)))
            .unwrap_or_else(|error| bad_gateway(format!("git http-backend's headers: {error}")))
    }
}

async fn feed_stdin(body: Body, mut stdin: ChildStdin) {
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let written = match chunk {
            Ok(chunk) => stdin.write_all(&chunk).await,
            Err(error) => {
                tracing::debug!(%error, "git https server: request body ended early");
                return;
            }
        };
        // http-backend stops reading when it rejects a request; the response says why.
        if written.is_err() {
            return;
        }
    }
    // Dropping stdin is the end of the body for http-backend.
}

async fn log_stderr(stderr: tokio::process::ChildStderr) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::warn!(%line, "git http-backend");
    }
}

/// The rest of the CGI output after its headers; reaps the process once it is read.
fn cgi_body(
    stdout: BufReader<ChildStdout>,
    child: Child,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::unfold(Some((stdout, child)), |state| async move {
        let (mut stdout, mut child) = state?;
        let mut chunk = vec![0; 64 * 1024];
        match stdout.read(&mut chunk).await {
            Ok(0) => {
                match child.wait().await {
                    Ok(status) if !status.success() => {
                        tracing::warn!(%status, "git http-backend failed");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "waiting for git http-backend"),
                }
                None
            }
            Ok(read) => {
                chunk.truncate(read);
                Some((Ok(Bytes::from(chunk)), Some((stdout, child))))
            }
            Err(error) => Some((Err(error), None)),
        }
    })
}

fn unauthorized() -> Response<Body> {
    let mut response = Response::new(Body::from("authentication required\n"));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"git\""));
    response
}

fn bad_gateway(message: String) -> Response<Body> {
    tracing::warn!(%message, "git https server");
    let mut response = Response::new(Body::from(message + "\n"));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
