//! Tests for the git fixtures: `GitRepo` makes real repositories that git can clone, and
//! `GitHttpsServer` serves them through `git http-backend` to authenticated clients only.
//!
//! Every client here is the real `git`, run as a build would run it: without the user's git
//! config and never prompting. The server runs on the test's runtime, so clients that talk to
//! it run through `tokio::process` rather than blocking that runtime.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use jobforge_testkit::git::{EXAMPLE_DOCKERFILE, EXAMPLE_HELLO, GitHttpsServer, GitRepo, busybox_path};

const USER: &str = "ci-bot";
// A colon and a space: Basic credentials split at the first colon only.
const PASSWORD: &str = "correct horse:battery";

/// git as a client: no user or system config, no prompts, no askpass program.
fn git_client(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    command
}

/// A client of `server`: trusts its CA and, when given `credentials`, answers its challenge
/// through a credential helper that reads them from the environment (never from the URL).
fn https_client(dir: &Path, server: &GitHttpsServer, credentials: Option<(&str, &str)>) -> Command {
    let mut command = git_client(dir);
    command.env("GIT_SSL_CAINFO", server.ca_pem_path());
    if let Some((user, password)) = credentials {
        // git also calls the helper to "store" or "erase"; only "get" expects an answer.
        let helper = concat!(
            r#"credential.helper=!f() { test "$1" = get || exit 0; "#,
            r#"echo "username=$TEST_GIT_USER"; echo "password=$TEST_GIT_PASSWORD"; }; f"#,
        );
        command.env("TEST_GIT_USER", user).env("TEST_GIT_PASSWORD", password).args(["-c", helper]);
    }
    command
}

async fn run(command: Command) -> Output {
    let description = format!("{command:?}");
    tokio::process::Command::from(command)
        .output()
        .await
        .unwrap_or_else(|error| panic!("cannot run {description}: {error}"))
}

fn succeeded(output: Output) -> String {
    assert!(output.status.success(), "git failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let mut command = git_client(dir);
    command.args(args);
    succeeded(command.output().expect("run git"))
}

/// An example repository with a second commit on top, served as `app.git`: the first commit is
/// no longer a branch tip. Returns the repository, the root to serve and the first commit.
fn served_example() -> (GitRepo, tempfile::TempDir, String) {
    let repo = GitRepo::example();
    let first = git_in(repo.path(), &["rev-parse", "HEAD"]);
    repo.write("second.txt", "only in the second commit\n");
    repo.commit("second commit");
    let root = tempfile::tempdir().expect("server root");
    repo.bare_clone_into(root.path(), "app");
    (repo, root, first)
}

fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("scratch directory")
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

#[test]
fn example_repo_commits_the_image_context_on_main() {
    let repo = GitRepo::example();

    assert_eq!(read(repo.path().join("Dockerfile")), EXAMPLE_DOCKERFILE);
    assert_eq!(read(repo.path().join("hello.txt")), EXAMPLE_HELLO);
    let busybox = std::fs::read(repo.path().join("busybox")).expect("read the copied busybox");
    assert!(busybox == std::fs::read(busybox_path()).expect("read busybox"), "busybox differs");
    assert_eq!(git_in(repo.path(), &["branch", "--show-current"]), "main");
    assert_eq!(git_in(repo.path(), &["rev-list", "--count", "HEAD"]), "1");
    assert_eq!(git_in(repo.path(), &["status", "--porcelain"]), "");
    assert_eq!(git_in(repo.path(), &["ls-tree", "--name-only", "HEAD"]), "Dockerfile\nbusybox\nhello.txt");
    // COPY keeps the mode git checks out, and the image needs busybox executable.
    assert!(git_in(repo.path(), &["ls-tree", "HEAD", "busybox"]).starts_with("100755 "));
}

#[test]
fn repo_builders_make_branches_tags_and_commits() {
    let repo = GitRepo::new();
    let first = repo.write("a/b/c.txt", "nested\n").write_bytes("data.bin", &[0, 1, 2]).commit("one");
    assert_eq!(first, git_in(repo.path(), &["rev-parse", "HEAD"]));
    assert_eq!(first.len(), 40);

    repo.tag("v1").branch("feature");
    let second = repo.remove("a").write("feature.txt", "feature\n").commit("two");
    assert_eq!(git_in(repo.path(), &["branch", "--show-current"]), "feature");
    assert_eq!(git_in(repo.path(), &["ls-tree", "--name-only", "HEAD"]), "data.bin\nfeature.txt");

    repo.checkout("main");
    assert_eq!(git_in(repo.path(), &["rev-parse", "HEAD"]), first);
    assert!(!repo.path().join("feature.txt").exists());
    assert_eq!(read(repo.path().join("a/b/c.txt")), "nested\n");
    assert_eq!(git_in(repo.path(), &["rev-parse", "v1"]), first);
    assert_eq!(git_in(repo.path(), &["rev-parse", "feature"]), second);

    // Author and committer come from the repository, not from anyone's global config.
    assert_eq!(
        git_in(repo.path(), &["log", "-1", "--format=%an <%ae> / %cn <%ce>"]),
        "jobforge tests <tests@jobforge.invalid> / jobforge tests <tests@jobforge.invalid>"
    );
}

#[test]
fn clone_by_file_url_gets_the_content() {
    let repo = GitRepo::example();
    let clients = scratch_dir();

    let mut clone = git_client(clients.path());
    clone.args(["clone", "--quiet", &repo.file_url(), "copy"]);
    succeeded(clone.output().expect("run git clone"));

    let copy = clients.path().join("copy");
    assert_eq!(read(copy.join("hello.txt")), EXAMPLE_HELLO);
    assert_eq!(git_in(&copy, &["rev-parse", "HEAD"]), git_in(repo.path(), &["rev-parse", "HEAD"]));
}

#[tokio::test]
async fn https_clone_with_credentials_answers_the_challenge_and_gets_the_content() {
    let (repo, root, _) = served_example();
    let server = GitHttpsServer::start(root.path(), USER, PASSWORD).await;
    let url = server.url("app.git");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let clients = scratch_dir();

    let mut clone = https_client(clients.path(), &server, Some((USER, PASSWORD)));
    clone.args(["clone", "--quiet", &url, "app"]);
    succeeded(run(clone).await);

    let app = clients.path().join("app");
    assert_eq!(read(app.join("hello.txt")), EXAMPLE_HELLO);
    assert_eq!(read(app.join("second.txt")), "only in the second commit\n");
    assert_eq!(git_in(&app, &["rev-parse", "HEAD"]), git_in(repo.path(), &["rev-parse", "HEAD"]));

    // git asks anonymously first, is challenged, then repeats the request with credentials.
    let requests = server.requests();
    let advertisement = "/app.git/info/refs?service=git-upload-pack";
    let expected_start =
        [("GET".to_owned(), advertisement.to_owned(), 401), ("GET".to_owned(), advertisement.to_owned(), 200)];
    assert!(requests.starts_with(&expected_start), "{requests:#?}");
    let fetched = ("POST".to_owned(), "/app.git/git-upload-pack".to_owned(), 200);
    assert!(requests.len() > 2, "{requests:#?}");
    assert!(requests[2..].iter().all(|request| *request == fetched), "{requests:#?}");
}

#[tokio::test]
async fn https_clone_without_or_with_wrong_credentials_is_refused() {
    let (_repo, root, _) = served_example();
    let server = GitHttpsServer::start(root.path(), USER, PASSWORD).await;
    let clients = scratch_dir();

    let mut anonymous = https_client(clients.path(), &server, None);
    anonymous.args(["clone", "--quiet", &server.url("app.git"), "anonymous"]);
    let output = run(anonymous).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    // With prompts off and no helper, git gives up when asked for a user name.
    assert!(stderr.contains("could not read Username"), "{stderr}");

    let mut wrong = https_client(clients.path(), &server, Some((USER, "not the password")));
    wrong.args(["clone", "--quiet", &server.url("app.git"), "wrong"]);
    let output = run(wrong).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("Authentication failed"), "{stderr}");

    assert!(!clients.path().join("anonymous/hello.txt").exists());
    assert!(!clients.path().join("wrong/hello.txt").exists());
    let statuses: Vec<u16> = server.requests().iter().map(|(_, _, status)| *status).collect();
    assert!(!statuses.is_empty() && statuses.iter().all(|status| *status == 401), "{statuses:?}");
}

#[tokio::test]
async fn https_shallow_fetch_of_a_commit_no_ref_points_at() {
    let (_repo, root, first) = served_example();
    let server = GitHttpsServer::start(root.path(), USER, PASSWORD).await;
    let clients = scratch_dir();
    git_in(clients.path(), &["init", "--quiet", "--template=", "."]);

    // Fetching a commit that is no branch tip needs protocol v2 (v0 refuses unadvertised
    // objects), so this passes only if the Git-Protocol header reaches http-backend.
    let mut fetch = https_client(clients.path(), &server, Some((USER, PASSWORD)));
    fetch.args(["fetch", "--quiet", "--depth", "1", &server.url("app.git"), &first]);
    succeeded(run(fetch).await);
    git_in(clients.path(), &["checkout", "--quiet", "FETCH_HEAD"]);

    assert_eq!(git_in(clients.path(), &["rev-parse", "HEAD"]), first);
    assert_eq!(git_in(clients.path(), &["rev-list", "--count", "HEAD"]), "1");
    assert_eq!(read(clients.path().join("hello.txt")), EXAMPLE_HELLO);
    assert!(!clients.path().join("second.txt").exists());
}

#[tokio::test]
async fn https_push_with_credentials_updates_the_served_repository() {
    let (_repo, root, _) = served_example();
    let server = GitHttpsServer::start(root.path(), USER, PASSWORD).await;
    let clients = scratch_dir();
    let mut clone = https_client(clients.path(), &server, Some((USER, PASSWORD)));
    clone.args(["clone", "--quiet", &server.url("app.git"), "app"]);
    succeeded(run(clone).await);
    let app = clients.path().join("app");
    std::fs::write(app.join("pushed.txt"), "pushed\n").expect("write a file to push");
    git_in(&app, &["add", "pushed.txt"]);
    git_in(&app, &["-c", "user.name=pusher", "-c", "user.email=pusher@jobforge.invalid", "commit", "-qm", "push"]);

    let mut push = https_client(&app, &server, Some((USER, PASSWORD)));
    push.args(["push", "--quiet", "origin", "main"]);
    succeeded(run(push).await);

    let bare = root.path().join("app.git");
    assert_eq!(git_in(&bare, &["rev-parse", "main"]), git_in(&app, &["rev-parse", "HEAD"]));
    assert!(server.requests().contains(&("POST".to_owned(), "/app.git/git-receive-pack".to_owned(), 200)));
}

#[tokio::test]
async fn https_clone_with_a_gzip_request_body() {
    // Each branch tip is one `want` line, so thirty of them make a request body over the 1 KiB
    // above which git compresses it. The tips must differ: git sends one line per object.
    let repo = GitRepo::example();
    for index in 0..30 {
        repo.branch(&format!("topic-{index}")).commit(&format!("topic {index}"));
    }
    repo.checkout("main");
    let root = scratch_dir();
    repo.bare_clone_into(root.path(), "many-branches");
    let server = GitHttpsServer::start(root.path(), USER, PASSWORD).await;
    let clients = scratch_dir();

    let mut clone = https_client(clients.path(), &server, Some((USER, PASSWORD)));
    clone.env("GIT_TRACE_CURL", "1").env("GIT_TRACE_CURL_NO_DATA", "1").args([
        "clone",
        "--quiet",
        "--mirror",
        &server.url("many-branches.git"),
        "mirror",
    ]);
    let output = run(clone).await;
    let trace = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{trace}");

    assert!(trace.contains("Content-Encoding: gzip"), "git sent no gzip body:\n{trace}");
    let mirror = clients.path().join("mirror");
    assert_eq!(git_in(&mirror, &["rev-parse", "topic-29"]), git_in(repo.path(), &["rev-parse", "topic-29"]));
    assert_eq!(git_in(&mirror, &["branch", "--list", "topic-*"]).lines().count(), 30);
}
