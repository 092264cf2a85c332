//! The rendered jobs: snapshots, one assertion per line of the seed spec, and validation
//! against Nomad's OpenAPI `Job` schema.

use std::collections::BTreeMap;

use jobforge_core::config::TestCase;
use jobforge_core::ports::{BuildWork, PublishWork, RunSpec, RunWork, TestWork};
use jobforge_core::{JobId, RunKey};
use serde_json::{Value, json};

use super::*;

fn job_id() -> JobId {
    "0193e5d2-7c1a-7b3e-9f00-2a4c6e8b0d1f".parse().unwrap()
}

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

fn config() -> RenderConfig {
    RenderConfig { insecure_registries: vec!["127.0.0.1:5000".parse().unwrap()], ..RenderConfig::default() }
}

fn pinned() -> ImageRef {
    format!("127.0.0.1:5000/temp/{}@sha256:{}", job_id(), "a".repeat(64)).parse().unwrap()
}

fn build_run(git: bool, registry: bool) -> RunSpec {
    RunSpec {
        id: RunKey::build(job_id()).id(),
        work: RunWork::Build(BuildWork {
            repo_url: from_json(json!("https://git.example.com/team/app.git")),
            git_ref: from_json(json!("main")),
            git_credentials: git.then(|| "nomad/jobs/app-git".parse().unwrap()),
            dockerfile: from_json(json!("Dockerfile")),
            context: from_json(json!(".")),
            build_args: BTreeMap::from([(from_json(json!("VERSION")), "1.2; rm -rf /".into())]),
            no_cache: false,
            image: format!("127.0.0.1:5000/temp/{}:latest", job_id()).parse().unwrap(),
            registry_credentials: registry.then(|| "nomad/jobs/app-registry".parse().unwrap()),
        }),
        resources: Default::default(),
    }
}

fn test_run(index: u32, case: TestCase) -> RunSpec {
    RunSpec {
        id: RunKey::test(job_id(), index).id(),
        work: RunWork::Test(TestWork {
            image: pinned(),
            case,
            env: BTreeMap::new(),
            vault_secrets: Vec::new(),
            registry_credentials: None,
            constraints: Vec::new(),
            gpu_required: false,
        }),
        resources: Default::default(),
    }
}

fn publish_run() -> RunSpec {
    RunSpec {
        id: RunKey::publish(job_id()).id(),
        work: RunWork::Publish(PublishWork {
            source: pinned(),
            targets: vec![
                "127.0.0.1:5000/team/app:v1".parse().unwrap(),
                "127.0.0.1:5000/team/app:latest".parse().unwrap(),
            ],
            source_credentials: None,
            target_credentials: None,
        }),
        resources: Default::default(),
    }
}

fn rendered(run: &RunSpec) -> Value {
    serde_json::to_value(render(&config(), run)).unwrap()
}

fn task(job: &Value) -> &Value {
    &job["TaskGroups"][0]["Tasks"][0]
}

#[test]
fn snapshots() {
    insta::assert_json_snapshot!("build", rendered(&build_run(true, true)));
    insta::assert_json_snapshot!("test_command", rendered(&test_run(0, TestCase::Command("make test".into()))));
    insta::assert_json_snapshot!("test_entry_point", rendered(&test_run(1, TestCase::EntryPoint)));
    insta::assert_json_snapshot!("publish", rendered(&publish_run()));
}

/// Each assertion is one line of the seed spec (`shared/seed/nomad-job-orchestration-spec.md`).
#[test]
fn the_build_job_carries_every_seed_requirement() {
    let job = rendered(&build_run(false, false));
    let task = task(&job);
    let group = &job["TaskGroups"][0];
    let templates = task["Templates"].as_array().unwrap();
    let template = |dest: &str| templates.iter().find(|t| t["DestPath"] == dest).unwrap_or_else(|| panic!("{dest}"));

    // "Image: quay.io/buildah/stable"
    assert_eq!(task["Config"]["image"], "quay.io/buildah/stable");
    // "Clone Git repository ... Build Docker image using buildah bud ... Push temporary image
    // to registry as <registry>/temp/<job-id>:latest"
    let script = task["Config"]["args"][1].as_str().unwrap();
    assert!(script.contains("git fetch") && script.contains("buildah bud") && script.contains("buildah push"));
    assert_eq!(task["Env"]["JF_IMAGE"], format!("127.0.0.1:5000/temp/{}:latest", job_id()));
    // "User Namespace Mappings: user = "build:10000:65536""
    assert_eq!(task["User"], "build");
    assert_eq!(template("local/subuid")["EmbeddedTmpl"], "build:10000:65536\n");
    assert_eq!(template("local/subgid")["EmbeddedTmpl"], "build:10000:65536\n");
    let mounts = task["Config"]["mount"].as_array().unwrap();
    assert!(mounts.iter().any(|m| m["source"] == "local/subuid" && m["target"] == "/etc/subuid"));
    // "Fuse Device Access: device "/dev/fuse""
    assert_eq!(task["Config"]["devices"][0]["host_path"], "/dev/fuse");
    // "Storage Configuration: Mount persistent volume to /var/lib/containers"
    assert_eq!(task["VolumeMounts"][0]["Destination"], "/var/lib/containers");
    // "Host Volume: /opt/nomad/data/buildah-cache:/var/lib/containers" (client host_volume
    // "buildah-cache" points at /opt/nomad/data/buildah-cache; see docs/nomad.md)
    assert_eq!(group["Volumes"]["buildah-cache"]["Type"], "host");
    assert_eq!(group["Volumes"]["buildah-cache"]["Source"], "buildah-cache");
    assert_eq!(task["VolumeMounts"][0]["Volume"], "buildah-cache");
    // "Isolation Mode: BUILDAH_ISOLATION=chroot"
    assert_eq!(task["Env"]["BUILDAH_ISOLATION"], "chroot");
    assert!(script.contains("--isolation chroot"));
    // "Privilege Escalation: allow_privilege_escalation = true for rootless mode"
    assert_eq!(task["Config"]["security_opt"], json!(["no-new-privileges:false"]));
    // "Build Caching ... Enable Buildah layer caching"
    assert!(script.contains("--layers"));
    assert!(template("local/storage.conf")["EmbeddedTmpl"].as_str().unwrap().contains("/var/lib/containers/storage"));
}

#[test]
fn test_jobs_have_exactly_the_seed_config() {
    let command = rendered(&test_run(0, TestCase::Command("make test && echo ok".into())));
    // "Job config: {"image": "<temp-image>", "command": "sh", "args": ["-c", "<test-command>"]}"
    assert_eq!(
        task(&command)["Config"],
        json!({"image": pinned().to_string(), "command": "sh", "args": ["-c", "make test && echo ok"]})
    );
    // "Driver: Nomad's native Docker driver"
    assert_eq!(task(&command)["Driver"], "docker");
    // "Job config: {"image": "<temp-image>"} (no command - uses image's ENTRYPOINT/CMD)"
    let entry = rendered(&test_run(1, TestCase::EntryPoint));
    assert_eq!(task(&entry)["Config"], json!({"image": pinned().to_string()}));
    // "Multiple test commands run as separate Nomad jobs"
    assert_ne!(command["ID"], entry["ID"]);
    assert_eq!(command["ID"], format!("jobforge-test-{}-0", job_id()));
}

#[test]
fn the_publish_job_pulls_retags_and_pushes_with_buildah() {
    let job = rendered(&publish_run());
    let task = task(&job);
    // "Image: quay.io/buildah/stable"
    assert_eq!(task["Config"]["image"], "quay.io/buildah/stable");
    let script = task["Config"]["args"][1].as_str().unwrap();
    // "Pull temporary image from registry; Retag image for each specified tag in image_tags;
    // Push final images to target registry using buildah push"
    assert!(script.contains("buildah pull") && script.contains("buildah tag") && script.contains("buildah push"));
    assert_eq!(task["Env"]["JF_SOURCE"], pinned().to_string());
    assert_eq!(task["Env"]["JF_TARGETS"], "127.0.0.1:5000/team/app:v1 127.0.0.1:5000/team/app:latest");
}

#[test]
fn every_job_is_a_one_shot_batch_job_with_meta() {
    for run in [build_run(true, true), test_run(0, TestCase::EntryPoint), publish_run()] {
        let job = rendered(&run);
        let group = &job["TaskGroups"][0];
        assert_eq!(job["Type"], "batch", "{}", job["ID"]);
        assert_eq!(group["RestartPolicy"]["Attempts"], 0);
        assert_eq!(group["ReschedulePolicy"]["Attempts"], 0);
        assert_eq!(group["ReschedulePolicy"]["Unlimited"], false);
        assert_eq!(task(&job)["RestartPolicy"]["Attempts"], 0);
        assert_eq!(task(&job)["KillTimeout"], 30 * SECOND_NS);
        assert_eq!(job["Meta"][META_JOB_ID], job_id().to_string());
        assert_eq!(job["Meta"][META_PHASE], run.id.key().phase.to_string());
        assert!(task(&job)["Resources"]["CPU"].as_i64().unwrap() > 0);
        assert!(group["EphemeralDisk"]["SizeMB"].as_i64().unwrap() > 0);
    }
}

#[test]
fn credentials_are_vault_templates_by_path_and_user_data_is_environment() {
    let job = rendered(&build_run(true, true));
    let task = task(&job);
    let text = job.to_string();
    let git = task["Templates"].as_array().unwrap().iter().find(|t| t["DestPath"] == "secrets/git.env").unwrap();
    assert_eq!(git["Envvars"], true);
    assert!(git["EmbeddedTmpl"].as_str().unwrap().contains(r#"with secret "secret/data/nomad/jobs/app-git""#));
    assert_eq!(task["Vault"]["Role"], "jobforge");
    // The build arg with shell syntax is a value in the environment, not part of the script.
    assert_eq!(task["Env"]["JF_BUILD_ARG_VERSION"], "1.2; rm -rf /");
    assert_eq!(task["Config"]["args"][1], BUILD_SCRIPT, "the script is the same constant for every job");
    assert!(!text.contains("VaultToken") && !text.contains("\"Policies\""), "workload identity, not tokens");
}

#[test]
fn job_ids_round_trip() {
    let config = config();
    for run in [build_run(false, false), test_run(3, TestCase::EntryPoint), publish_run()] {
        let id = config.job_id(&run.id);
        assert_eq!(config.run_id(&id), Some(run.id.clone()));
    }
    assert_eq!(config.run_id("other-build-x"), None);
    assert_eq!(config.run_id("jobforgex-build-0193e5d2-7c1a-7b3e-9f00-2a4c6e8b0d1f"), None);
}

#[test]
fn rendered_jobs_validate_against_the_openapi_job_schema() {
    let spec: Value = serde_saphyr::from_str(include_str!("../../../../reference/nomad-openapi.yaml")).unwrap();
    let mut schema = spec.clone();
    schema["$ref"] = json!("#/components/schemas/Job");
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut gpu = test_run(2, TestCase::Command("nvidia-smi".into()));
    if let RunWork::Test(work) = &mut gpu.work {
        work.gpu_required = true;
        work.constraints.push(from_json(json!({"attribute": "${attr.kernel.name}", "operand": "=", "value": "linux"})));
        work.vault_secrets.push(from_json(json!({"path": "app/db", "fields": {"password": "DB_PASSWORD"}})));
    }
    for run in [build_run(true, true), test_run(0, TestCase::EntryPoint), gpu, publish_run()] {
        let job = rendered(&run);
        let errors: Vec<String> =
            validator.iter_errors(&job).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{} does not fit the Job schema:\n{}", job["ID"], errors.join("\n"));
    }
    // The schema really is checking: a wrong type is refused.
    let mut broken = rendered(&publish_run());
    broken["TaskGroups"][0]["Count"] = json!("one");
    assert!(!validator.is_valid(&broken));
}
