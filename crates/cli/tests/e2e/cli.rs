//! The CLI as the original's users call it: `submit -global` with a deep merge,
//! `--image-tags`, the config inline or on stdin, flags after the file, the original command
//! names; `--watch` on a real terminal; completions and the manual page.

use assert_cmd::Command;
use jobforge_testkit::git::GitRepo;
use jobforge_testkit::registry::TestRegistry;
use serde_json::{Value, json};

use crate::support::*;

fn json_out(output: &std::process::Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.lines().next().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn submit_merges_the_global_config_adds_tags_and_reads_inline_yaml_and_stdin() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let repo = GitRepo::example();
    let global = data.path().join("global.yaml");
    std::fs::write(
        &global,
        format!(
            "registry_url: {}\nclear_cache: true\nimage_tags: [g]\ntest_commands: [\"true\"]\ntest: {{env: {{A: '1', B: '2'}}}}\n",
            registry.host()
        ),
    )
    .unwrap();
    let build = data.path().join("build.yaml");
    std::fs::write(
        &build,
        format!("repo_url: {}\nimage_name: merged\nclear_cache: false\ntest: {{env: {{B: '3'}}}}\n", repo.file_url()),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let mut command = Command::new(jobforge());
        command.args(["--url", service.url.as_str()]).args(args);
        command
    };

    // The original's spelling: `-global` before, flags after the file.
    let build_arg = build.display().to_string();
    let global_arg = global.display().to_string();
    let out =
        cli(&["submit-job", "-global", &global_arg, &build_arg, "--image-tags", "a,b", "--json"]).assert().success();
    let id = json_out(out.get_output())["job_id"].as_str().unwrap().to_owned();
    let out = cli(&["--json", "get-status", &id]).assert().success();
    let config = json_out(out.get_output())["config"].clone();
    assert_eq!(config["clear_cache"], json!(false), "an explicit false wins: {config}");
    assert_eq!(config["image_tags"], json!(["g", "a", "b"]), "{config}");
    assert_eq!(config["test"]["env"], json!({"A": "1", "B": "3"}), "maps merge key by key: {config}");
    assert_eq!(config["registry_url"], json!(registry.host()));

    let inline = format!(
        "repo_url: {}\nimage_name: inline\nregistry_url: {}\ntest_commands: [\"true\"]\n",
        repo.file_url(),
        registry.host()
    );
    let out = cli(&["submit", &inline, "--json"]).assert().success();
    let inline_id = json_out(out.get_output())["job_id"].as_str().unwrap().to_owned();
    let out = cli(&["submit", "--json"]).write_stdin(inline.replace("inline", "from-stdin")).assert().success();
    assert!(json_out(out.get_output())["job_id"].is_string());

    let client = service.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(wait_end(&client, inline_id.parse().unwrap()));
    let logs = cli(&["get-logs", &inline_id, "build"]).assert().success();
    let logs = String::from_utf8_lossy(&logs.get_output().stdout).into_owned();
    assert!(logs.contains("[build]") && !logs.contains("[test"), "{logs}");
    let history = cli(&["get-history", "1", "0"]).assert().success();
    assert!(String::from_utf8_lossy(&history.get_output().stdout).contains("3 job(s) in total"));
    rt.block_on(wait_end(&client, id.parse().unwrap()));
    let late = cli(&["kill-job", &id]).assert().code(2);
    assert!(String::from_utf8_lossy(&late.get_output().stderr).contains("already finished"));

    let refused = cli(&["submit", "no-such-file.yaml"]).assert().code(2);
    assert!(String::from_utf8_lossy(&refused.get_output().stderr).contains("no job file \"no-such-file.yaml\""));
}

#[test]
fn watch_on_a_terminal_draws_the_phases_and_ends_with_the_diagnosis() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let repo = repo_with_dockerfile(&format!("{BUSYBOX_BASE}COPY helo.txt /hello.txt\n"));
    let job = data.path().join("job.yaml");
    std::fs::write(
        &job,
        format!(
            "repo_url: {}\nimage_name: app\nregistry_url: {}\ntest_commands: [\"true\"]\n",
            repo.file_url(),
            registry.host()
        ),
    )
    .unwrap();
    // `script` runs the CLI on a pseudo-terminal, as a person would.
    let command = format!("{} --url {} submit {} --watch", jobforge(), service.url, job.display());
    let out = std::process::Command::new("script").args(["-qefc", &command, "/dev/null"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for expected in ["build", "FAILED in", "cause: dockerfile at Dockerfile:4", "did you mean `hello.txt`?"] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
    assert!(text.contains("[build]   Error: building at STEP"), "the log scrolls above the phase lines:\n{text}");
}

#[test]
fn completions_and_the_manual_page_come_from_the_same_definitions() {
    let bash = Command::new(jobforge()).args(["completions", "bash"]).assert().success();
    let bash = String::from_utf8_lossy(&bash.get_output().stdout).into_owned();
    assert!(bash.contains("jobforge") && bash.contains("submit") && bash.contains("--image-tags"), "{bash}");
    let man = Command::new(jobforge()).arg("man").assert().success();
    let man = String::from_utf8_lossy(&man.get_output().stdout).into_owned();
    assert!(man.contains(".TH jobforge") && man.contains("submit"), "{man}");
}
