//! Reading a build's checkout out of its allocation: `NomadClient`'s `fs_ls`, `fs_stat` and
//! `fs_cat` against the fake Nomad agent from the testkit, and `NomadBackend::checkout` on top
//! of them, which must give what the local backend's checkout reader gives and never read
//! outside the checkout.
//!
//! Each job here stands in for a build: a task named `build` that leaves a checkout in
//! `$NOMAD_TASK_DIR/src`, as the build script does, run on the host by the fake.

use std::time::Duration;

use jobforge_core::JobId;
use jobforge_core::RunKey;
use jobforge_core::config::RelPath;
use jobforge_core::ports::Backend;
use jobforge_nomad::api::ClientStatus;
use jobforge_nomad::render::RenderConfig;
use jobforge_nomad::{Blocking, NomadBackend, NomadBackendConfig, NomadClient, NomadConfig, NomadError};
use jobforge_testkit::fake_nomad::{FakeNomad, FakeNomadConfig};
use serde_json::json;
use wiremock::matchers::{method, path as url_path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DOCKERFILE: &str = "FROM scratch\n# copy it\nCOPY hello.txt /\n";

/// A checkout like a build leaves it, with what must not be read or listed: git's own
/// directories, a Dockerfile that is a link out of the checkout, a directory reached through
/// a link, a Dockerfile over the size bound, and directories deeper than the listing goes.
const CHECKOUT: &str = r#"set -e
src="$NOMAD_TASK_DIR/src"
mkdir -p "$src/.git/objects" "$src/app/.git" "$src/docker" "$src/a/b/c/d/e/f/g/h/i"
printf 'FROM scratch\n# copy it\nCOPY hello.txt /\n' > "$src/Dockerfile"
printf 'hi\n' > "$src/hello.txt"
printf 'FROM scratch\n' > "$src/docker/Dockerfile.dev"
printf 'outside\n' > "$NOMAD_TASK_DIR/outside"
ln -s ../outside "$src/escape"
ln -s docker "$src/viadir"
: > "$src/a/b/c/d/e/f/g/h/i/deep.txt"
head -c 1100000 /dev/zero | tr '\0' x > "$src/big.Dockerfile"
"#;

/// What the local backend lists for [`CHECKOUT`]: `.git` left out at every level, links listed
/// as names, eight levels deep, sorted.
const LISTED: &[&str] = &[
    "Dockerfile",
    "a/",
    "a/b/",
    "a/b/c/",
    "a/b/c/d/",
    "a/b/c/d/e/",
    "a/b/c/d/e/f/",
    "a/b/c/d/e/f/g/",
    "a/b/c/d/e/f/g/h/",
    "app/",
    "big.Dockerfile",
    "docker/",
    "docker/Dockerfile.dev",
    "escape",
    "hello.txt",
    "viadir",
];

fn client(nomad: &FakeNomad) -> NomadClient {
    let mut config = NomadConfig::new(nomad.url().parse().expect("a url"));
    config.timeout = Duration::from_secs(20);
    NomadClient::new(config).expect("a client")
}

/// The Nomad job ID of `job`'s build, as the backend names it.
fn build_job_id(job: JobId) -> String {
    RenderConfig::default().job_id(&RunKey::build(job).id())
}

/// Register a build-like job running `script` on the host; returns its allocation once the
/// task has ended.
async fn run_build_task(nomad: &FakeNomad, job: JobId, script: &str) -> String {
    let id = build_job_id(job);
    let body = json!({"Job": {
        "ID": id, "Name": id, "Type": "batch", "Datacenters": ["dc1"],
        "TaskGroups": [{
            "Name": "build",
            "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
            "ReschedulePolicy": {"Attempts": 0, "Unlimited": false},
            "Tasks": [{
                "Name": "build", "Driver": "docker",
                "Config": {"image": "quay.io/buildah/stable", "command": "/bin/sh", "args": ["-c", script]},
                "Resources": {"CPU": 100, "MemoryMB": 64},
            }],
        }],
    }});
    let answer = reqwest::Client::new().put(format!("{}/v1/jobs", nomad.url())).json(&body).send().await.unwrap();
    assert!(answer.status().is_success(), "register: {}", answer.text().await.unwrap_or_default());

    let client = client(nomad);
    let wait = async {
        let mut index = 0;
        loop {
            let blocking = Blocking { index, wait: Duration::from_secs(10) };
            let (allocs, meta) = client.job_allocations(&id, Some(blocking)).await.expect("the allocations");
            if let Some(alloc) = allocs.iter().find(|a| a.is_terminal()) {
                assert_eq!(alloc.client_status, ClientStatus::Complete, "the task made its checkout: {alloc:#?}");
                return alloc.id.clone();
            }
            index = meta.index.max(1);
        }
    };
    tokio::time::timeout(Duration::from_secs(120), wait).await.expect("the task ends in time")
}

fn backend(nomad: &FakeNomad) -> NomadBackend {
    NomadBackend::new(client(nomad), NomadBackendConfig::default())
}

fn path(text: &str) -> RelPath {
    RelPath::try_from(text.to_owned()).expect("a checked path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fs_calls_read_an_allocations_directory_as_nomad_answers() {
    let dir = tempfile::tempdir().unwrap();
    let nomad = FakeNomad::start(FakeNomadConfig::new(dir.path().join("nomad"))).await;
    let alloc = run_build_task(&nomad, JobId::new(), CHECKOUT).await;
    let client = client(&nomad);

    let root: Vec<String> = client.fs_ls(&alloc, "/").await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(root, ["alloc", "build"], "the allocation's directory");
    let src = client.fs_ls(&alloc, "build/local/src").await.unwrap();
    let names: Vec<(&str, bool, &str)> = src.iter().map(|e| (e.name.as_str(), e.is_dir, &e.file_mode[..1])).collect();
    assert_eq!(
        names,
        [
            (".git", true, "d"),
            ("Dockerfile", false, "-"),
            ("a", true, "d"),
            ("app", true, "d"),
            ("big.Dockerfile", false, "-"),
            ("docker", true, "d"),
            ("escape", false, "L"),
            ("hello.txt", false, "-"),
            ("viadir", false, "L"),
        ],
        "sorted by name, links as links"
    );
    assert!(src.iter().all(|e| e.mod_time.is_some()), "{src:#?}");
    let dockerfile = src.iter().find(|e| e.name == "Dockerfile").unwrap();
    assert!(dockerfile.is_regular_file() && dockerfile.size == DOCKERFILE.len() as i64, "{dockerfile:?}");

    let stat = client.fs_stat(&alloc, "build/local/src/Dockerfile").await.unwrap();
    assert_eq!((stat.name.as_str(), stat.size, stat.is_dir), ("Dockerfile", DOCKERFILE.len() as i64, false));
    let through_link = client.fs_stat(&alloc, "build/local/src/viadir").await.unwrap();
    assert!(through_link.is_dir, "stat follows a link: {through_link:?}");
    let text = client.fs_cat(&alloc, "build/local/src/Dockerfile", 1024).await.unwrap();
    assert_eq!(&text[..], DOCKERFILE.as_bytes());
    let big = client.fs_cat(&alloc, "build/local/src/big.Dockerfile", 1024 * 1024).await.unwrap_err();
    assert!(matches!(&big, NomadError::Decode { message, .. } if message.contains("more than 1048576")), "{big}");

    // Nomad's refusals, in its words.
    let missing = client.fs_ls(&alloc, "build/local/src/nothing").await.unwrap_err();
    assert!(matches!(&missing, NomadError::NotFound(m) if m.ends_with("no such file or directory")), "{missing}");
    let missing = client.fs_stat(&alloc, "build/local/src/nothing").await.unwrap_err();
    assert!(matches!(&missing, NomadError::NotFound(m) if m.starts_with("stat ")), "{missing}");
    let missing = client.fs_cat(&alloc, "build/local/src/nothing", 1024).await.unwrap_err();
    assert!(matches!(&missing, NomadError::BadRequest(m) if m.ends_with("no such file or directory")), "{missing}");
    let directory = client.fs_cat(&alloc, "build/local/src", 1024).await.unwrap_err();
    assert_eq!(directory, NomadError::BadRequest("file \"build/local/src\" is a directory".into()));
    let escaping = client.fs_stat(&alloc, "build/../../..").await.unwrap_err();
    assert_eq!(escaping.status(), Some(500), "{escaping}");
    assert!(escaping.to_string().contains("Path escapes the alloc directory"), "{escaping}");
    let escaping = client.fs_cat(&alloc, "../../../../../../etc/hostname", 1024).await.unwrap_err();
    assert_eq!(escaping, NomadError::BadRequest("Path escapes the alloc directory".into()));
    let unknown = client.fs_ls("0b9e7d6c-0000-0000-0000-000000000000", "/").await.unwrap_err();
    assert_eq!(unknown, NomadError::NotFound("Unknown allocation \"0b9e7d6c-0000-0000-0000-000000000000\"".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builds_checkout_is_read_as_the_local_backend_reads_it_and_never_outside() {
    let dir = tempfile::tempdir().unwrap();
    let nomad = FakeNomad::start(FakeNomadConfig::new(dir.path().join("nomad"))).await;
    let job = JobId::new();
    run_build_task(&nomad, job, CHECKOUT).await;
    let backend = backend(&nomad);

    let checkout = backend.checkout(job, &path("Dockerfile")).await.expect("a checkout");
    assert_eq!(checkout.files, LISTED);
    assert_eq!(checkout.dockerfile.as_deref(), Some(DOCKERFILE));
    let nested = backend.checkout(job, &path("docker/Dockerfile.dev")).await.unwrap();
    assert_eq!(nested.dockerfile.as_deref(), Some("FROM scratch\n"));
    // Not read: a link out of the checkout (Nomad would follow it: it stays in the allocation's
    // directory), a file reached through a linked directory, a file over 1 MiB, a directory,
    // nothing at all. The names are listed all the same.
    for unread in ["escape", "viadir/Dockerfile.dev", "big.Dockerfile", "docker", "missing", "a/b/nothing"] {
        let checkout = backend.checkout(job, &path(unread)).await.expect("a checkout");
        assert_eq!(checkout.dockerfile, None, "{unread} is not read");
        assert_eq!(checkout.files, LISTED, "{unread}");
    }
    // No build allocation, no checkout.
    assert_eq!(backend.checkout(JobId::new(), &path("Dockerfile")).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_checkout_is_listed_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let nomad = FakeNomad::start(FakeNomadConfig::new(dir.path().join("nomad"))).await;
    // 5100 names in one directory; then 400 directories of one file each.
    let wide = JobId::new();
    let wide_script = r#"set -e; mkdir -p "$NOMAD_TASK_DIR/src/wide"; cd "$NOMAD_TASK_DIR/src/wide"
        i=0; while [ $i -lt 5100 ]; do : > "f$i"; i=$((i+1)); done"#;
    let many = JobId::new();
    let many_script = r#"set -e; cd "$NOMAD_TASK_DIR"; mkdir src; cd src
        i=0; while [ $i -lt 400 ]; do mkdir "d$i"; : > "d$i/x"; i=$((i+1)); done"#;
    let (_, _) = tokio::join!(run_build_task(&nomad, wide, wide_script), run_build_task(&nomad, many, many_script));
    let backend = backend(&nomad);

    let listed = backend.checkout(wide, &path("Dockerfile")).await.expect("a checkout").files;
    assert_eq!(listed.len(), 5000, "at most 5000 names");
    assert_eq!(listed[0], "wide/");

    // Each directory is a request: the listing stops asking after a few hundred, and keeps
    // what it has.
    let listed = backend.checkout(many, &path("Dockerfile")).await.expect("a checkout").files;
    let directories = listed.iter().filter(|f| f.ends_with('/')).count();
    let inside = listed.iter().filter(|f| f.ends_with("/x")).count();
    assert_eq!(directories, 400, "the root's names are all listed");
    assert!((100..400).contains(&inside), "{inside} directories listed of 400");
}

/// Against a scripted Nomad: a listing that fails for another reason than a missing directory
/// ends the walk at once (every further request would fail the same way, each after its
/// timeout), keeping what is listed; a directory gone in between only leaves a gap.
#[tokio::test]
async fn a_failing_listing_ends_the_walk_and_a_vanished_directory_only_leaves_a_gap() {
    const ALLOCATIONS: &str =
        include_str!("../../../reference/nomad-examples/GET_v1_job_JOBID_allocations.response.json");
    const ALLOC: &str = "ed344e0a-7290-d117-41d3-a64f853ca3c2";
    let server = MockServer::start().await;
    let job = JobId::new();
    let json = |body: serde_json::Value| ResponseTemplate::new(200).set_body_json(body);
    let text = |status: u16, body: &str| {
        ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "text/plain; charset=utf-8")
    };
    let entry = |name: &str, is_dir: bool| {
        let mode = if is_dir { "drwxr-xr-x" } else { "-rw-r--r--" };
        json!({"Name": name, "IsDir": is_dir, "Size": 13, "FileMode": mode, "ModTime": "2026-01-15T10:00:00Z"})
    };
    Mock::given(method("GET"))
        .and(url_path(format!("/v1/job/{}/allocations", build_job_id(job))))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(ALLOCATIONS.as_bytes().to_vec(), "application/json")
                .insert_header("X-Nomad-Index", "9"),
        )
        .mount(&server)
        .await;
    let ls = |dir: &str| {
        Mock::given(method("GET")).and(url_path(format!("/v1/client/fs/ls/{ALLOC}"))).and(query_param("path", dir))
    };
    let root =
        json!([entry("Dockerfile", false), entry("a-gone", true), entry("b-failing", true), entry("c-later", true)]);
    ls("build/local/src").respond_with(json(root)).expect(1).mount(&server).await;
    ls("build/local/src/a-gone")
        .respond_with(text(404, "open /x: no such file or directory"))
        .expect(1)
        .mount(&server)
        .await;
    ls("build/local/src/b-failing").respond_with(text(500, "rpc error: EOF")).expect(1).mount(&server).await;
    ls("build/local/src/c-later").respond_with(json(json!([entry("never", false)]))).expect(0).mount(&server).await;
    let file = |endpoint: &str| {
        Mock::given(method("GET"))
            .and(url_path(format!("/v1/client/fs/{endpoint}/{ALLOC}")))
            .and(query_param("path", "build/local/src/Dockerfile"))
    };
    file("stat").respond_with(json(entry("Dockerfile", false))).expect(1).mount(&server).await;
    file("cat").respond_with(text(200, "FROM scratch\n")).expect(1).mount(&server).await;

    let client = NomadClient::new(NomadConfig::new(server.uri().parse().unwrap())).unwrap();
    let backend = NomadBackend::new(client, NomadBackendConfig::default());
    let checkout = backend.checkout(job, &path("Dockerfile")).await.expect("a checkout");
    assert_eq!(checkout.dockerfile.as_deref(), Some("FROM scratch\n"));
    assert_eq!(checkout.files, ["Dockerfile", "a-gone/", "b-failing/", "c-later/"]);
}
