//! What each phase runs, as snapshots: a change to a command line shows up in review.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jobforge_core::config::{EnvName, TestCase};
use jobforge_core::ports::{BuildWork, PublishWork, RunSpec, RunWork, TestWork};
use jobforge_core::secret::{Credentials, SecretValue};
use jobforge_core::{JobId, RunKey};

use super::*;

fn tools() -> Tools {
    Tools {
        git: "git".into(),
        buildah: "buildah".into(),
        podman: "podman".into(),
        skopeo: "skopeo".into(),
        storage_root: "/data/containers/storage".into(),
        run_root: "/run/jobforge/x/storage".into(),
        podman_tmp: "/run/jobforge/x/libpod".into(),
        storage_driver: "overlay".into(),
        oci_runtime: "runc".into(),
        ulimits: vec!["nofile=1024:1024".into()],
        insecure: vec!["127.0.0.1:5000".parse().unwrap()],
        test_network: crate::tools::TestNetwork::Private,
    }
}

fn job() -> JobId {
    "0193e5d2-7c1a-7b3e-9f00-2a4c6e8b0d1f".parse().unwrap()
}

fn places() -> Places {
    Places {
        run_dir: PathBuf::from("/data/runs/RUN"),
        work_dir: PathBuf::from("/data/work/JOB"),
        env: BTreeMap::from([("PATH".to_owned(), "/usr/bin".to_owned())]),
        git_ca_bundle: None,
        data_dir: PathBuf::from("/data"),
    }
}

fn creds(user: &str, pass: &str) -> Credentials {
    Credentials { username: SecretValue::new(user), password: SecretValue::new(pass) }
}

fn digest_ref(repo: &str) -> jobforge_core::image::ImageRef {
    format!("127.0.0.1:5000/{repo}@sha256:{}", "a".repeat(64)).parse().unwrap()
}

/// The steps, with the secret files shown only by path and secret values masked the way the
/// shim masks its log.
fn render(plan: &Plan) -> serde_json::Value {
    let shown = serde_json::json!({
        "steps": plan.spec.steps,
        "files": plan.spec.files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>(),
        "meta": plan.meta,
    });
    let masker = jobforge_core::mask::Masker::new(&plan.spec.mask);
    serde_json::from_str(&masker.mask(&shown.to_string())).unwrap()
}

/// Secret values may reach a step only through its environment, never its arguments.
fn assert_not_in_argv(plan: &Plan, secrets: &[&str]) {
    for step in &plan.spec.steps {
        let argv = serde_json::to_string(&step.action).unwrap();
        for secret in secrets {
            assert!(!argv.contains(secret), "{secret} is in the arguments of {argv}");
        }
    }
}

#[test]
fn build_with_private_git_and_registry() {
    let run = RunSpec {
        id: RunKey::build(job()).id(),
        work: RunWork::Build(BuildWork {
            repo_url: serde_json::from_value(serde_json::json!("https://git.example.com/app.git")).unwrap(),
            git_ref: serde_json::from_value(serde_json::json!("main")).unwrap(),
            git_credentials: Some("git/app".parse().unwrap()),
            dockerfile: serde_json::from_value(serde_json::json!("docker/Dockerfile")).unwrap(),
            context: serde_json::from_value(serde_json::json!(".")).unwrap(),
            build_args: BTreeMap::from([(
                serde_json::from_value::<EnvName>(serde_json::json!("VERSION")).unwrap(),
                "1.2".into(),
            )]),
            no_cache: false,
            image: format!("127.0.0.1:5000/temp/{}:latest", job()).parse().unwrap(),
            registry_credentials: Some("registry/local".parse().unwrap()),
        }),
        resources: Default::default(),
    };
    let secrets = Resolved {
        git: Some(creds("git-user", "git-token-123")),
        registries: BTreeMap::from([("127.0.0.1:5000".parse().unwrap(), creds("reg-user", "reg-pass-456"))]),
        test_env: BTreeMap::new(),
    };
    let plan = plan(&tools(), &places(), &run, &secrets);
    assert_not_in_argv(&plan, &["git-token-123", "reg-pass-456", "reg-user"]);
    assert!(plan.spec.mask.iter().any(|value| value.expose() == "git-token-123"));
    insta::assert_json_snapshot!(render(&plan));
}

#[test]
fn build_of_a_commit_falls_back_to_a_full_fetch() {
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let run = RunSpec {
        id: RunKey::build(job()).id(),
        work: RunWork::Build(BuildWork {
            repo_url: serde_json::from_value(serde_json::json!("file:///srv/git/app")).unwrap(),
            git_ref: serde_json::from_value(serde_json::json!(sha)).unwrap(),
            git_credentials: None,
            dockerfile: serde_json::from_value(serde_json::json!("Dockerfile")).unwrap(),
            context: serde_json::from_value(serde_json::json!(".")).unwrap(),
            build_args: BTreeMap::new(),
            no_cache: true,
            image: "registry.example.com/temp/x:latest".parse().unwrap(),
            registry_credentials: None,
        }),
        resources: Default::default(),
    };
    let plan = plan(&tools(), &places(), &run, &Resolved::default());
    insta::assert_json_snapshot!(render(&plan));
}

#[test]
fn test_command_and_entry_point() {
    let work = |case| TestWork {
        image: digest_ref(&format!("temp/{}", job())),
        case,
        env: BTreeMap::from([(serde_json::from_value(serde_json::json!("MODE")).unwrap(), "ci".into())]),
        vault_secrets: Vec::new(),
        registry_credentials: None,
        constraints: Vec::new(),
        gpu_required: false,
    };
    let secrets = Resolved {
        test_env: BTreeMap::from([(
            serde_json::from_value(serde_json::json!("API_TOKEN")).unwrap(),
            SecretValue::new("tok-789"),
        )]),
        ..Resolved::default()
    };
    let command = RunSpec {
        id: RunKey::test(job(), 0).id(),
        work: RunWork::Test(work(TestCase::Command("make test && echo 'done'".into()))),
        resources: jobforge_core::config::Resources { memory: Some(512), ..Default::default() },
    };
    let entry = RunSpec {
        id: RunKey::test(job(), 1).id(),
        work: RunWork::Test(work(TestCase::EntryPoint)),
        resources: Default::default(),
    };
    let command_plan = plan(&tools(), &places(), &command, &secrets);
    assert_not_in_argv(&command_plan, &["tok-789"]);
    let token = command_plan.spec.steps[0].secret_env.get("API_TOKEN");
    assert_eq!(token.map(jobforge_core::secret::SecretValue::expose), Some("tok-789"));
    // The values are there for the shim, and nowhere a log line could print them.
    let printed = format!("{:?}", command_plan.spec);
    assert!(!printed.contains("tok-789") && printed.contains("API_TOKEN"), "{printed}");
    insta::assert_json_snapshot!("test_command", render(&command_plan));
    insta::assert_json_snapshot!("test_entry_point", render(&plan(&tools(), &places(), &entry, &Resolved::default())));
}

#[test]
fn publish_copies_the_digest_to_every_tag() {
    let run = RunSpec {
        id: RunKey::publish(job()).id(),
        work: RunWork::Publish(PublishWork {
            source: digest_ref(&format!("temp/{}", job())),
            targets: vec!["127.0.0.1:5000/team/app:v1".parse().unwrap(), "ghcr.io/team/app:latest".parse().unwrap()],
            source_credentials: None,
            target_credentials: None,
        }),
        resources: Default::default(),
    };
    let plan = plan(&tools(), &places(), &run, &Resolved::default());
    insta::assert_json_snapshot!(render(&plan));
    let _ = TestCase::EntryPoint;
}

#[test]
fn tests_get_the_hosts_network_only_when_the_operator_says_so() {
    let spec = RunSpec {
        id: RunKey::test(job(), 0).id(),
        work: RunWork::Test(TestWork {
            image: "127.0.0.1:5000/temp/x@sha256:0000000000000000000000000000000000000000000000000000000000000000"
                .parse()
                .unwrap(),
            case: TestCase::Command("true".into()),
            env: Default::default(),
            vault_secrets: Vec::new(),
            registry_credentials: None,
            constraints: Vec::new(),
            gpu_required: false,
        }),
        resources: Default::default(),
    };
    let argv = |tools: &Tools| -> String {
        let plan = plan(tools, &places(), &spec, &Resolved::default());
        serde_json::to_string(&plan.spec).unwrap()
    };
    assert!(!argv(&tools()).contains("\"--network\""), "a private network by default");
    let host = Tools { test_network: crate::tools::TestNetwork::Host, ..tools() };
    assert!(argv(&host).contains("\"--network\",\"host\""));
}
