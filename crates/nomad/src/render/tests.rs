//! The rendered jobs: snapshots, one assertion per line of the seed spec, and validation
//! against Nomad's OpenAPI `Job` schema.

use std::collections::BTreeMap;
use std::process::Command;

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
            registry_credentials: Some("nomad/jobs/app-registry".parse().unwrap()),
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
    // "Job config: {"image": "<temp-image>", "command": "sh", "args": ["-c", "<test-command>"]}":
    // the command runs as `sh -c` would run it, through a constant wrapper, because Nomad would
    // interpolate it in `args` (see `command_tests_run_the_command_literally_through_sh`).
    assert_eq!(
        task(&command)["Config"],
        json!({"image": pinned().to_string(), "command": "sh", "args": ["-c", script(TEST_SCRIPT), "sh"]})
    );
    assert_eq!(task(&command)["Env"][TEST_COMMAND_VAR], "make test && echo ok");
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
    assert_eq!(task["Env"]["JF_BUILD_ARG_NAMES"], "VERSION");
    assert_eq!(task["Config"]["args"][1], script(BUILD_SCRIPT), "the script is the same constant for every job");
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

/// What Nomad's `ReplaceEnv` does to an `Env` value: each `${key}` (key of
/// `[a-zA-Z0-9_\-.\[\]]+`) it knows becomes its value; anything else stays.
fn nomad_replace_env(text: &str, known: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let len = after.find(|c: char| !(c.is_ascii_alphanumeric() || "_-.[]".contains(c))).unwrap_or(after.len());
        match known.get(&after[..len]) {
            Some(value) if len > 0 && after[len..].starts_with('}') => {
                out.push_str(value);
                rest = &after[len + 1..];
            }
            _ => {
                out.push('$');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Variables a Nomad client knows, for [`nomad_replace_env`].
fn client_variables() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("NOMAD_TASK_DIR", "/local"),
        ("NOMAD_SECRETS_DIR", "/secrets"),
        ("NOMAD_ALLOC_DIR", "/alloc"),
        ("NOMAD_JOB_NAME", "jobforge-test-x"),
        ("attr.unique.hostname", "node-1"),
        ("node.datacenter", "dc1"),
        ("HOME", "/root"),
    ])
}

/// Every string of a driver config, with where it is.
fn config_strings(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(text) => out.push((at.to_owned(), text.clone())),
        Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, v)| config_strings(v, &format!("{at}[{i}]"), out))
        }
        Value::Object(map) => map.iter().for_each(|(k, v)| config_strings(v, &format!("{at}.{k}"), out)),
        _ => {}
    }
}

/// The values a caller could fill with Nomad's interpolation syntax, in every field that
/// reaches a task.
const HOSTILE: &str = "${NOMAD_TASK_DIR} ${attr.unique.hostname} %{ if true }x%{ endif } \\0044 \\ $HOME";

fn hostile_runs() -> Vec<RunSpec> {
    let mut build = build_run(true, true);
    if let RunWork::Build(work) = &mut build.work {
        // A URL cannot hold `${` (a brace is no URL character), but `$` it may.
        work.repo_url = from_json(json!("https://git.example.com/$HOME/a$(id)/app.git"));
        work.git_ref = from_json(json!("feature/${NOMAD_JOB_NAME}"));
        work.dockerfile = from_json(json!("${NOMAD_TASK_DIR}/Dockerfile"));
        work.context = from_json(json!("ctx/${node.datacenter}"));
        work.build_args.insert(from_json(json!("X")), HOSTILE.into());
    }
    let mut command = test_run(0, TestCase::Command(format!("echo '{HOSTILE}'")));
    let mut entry = test_run(1, TestCase::EntryPoint);
    for run in [&mut command, &mut entry] {
        if let RunWork::Test(work) = &mut run.work {
            work.env.insert(from_json(json!("A")), HOSTILE.into());
            work.gpu_required = true;
        }
    }
    vec![build, command, entry, publish_run()]
}

#[test]
fn no_callers_value_reaches_env_or_driver_config_for_nomad_to_interpolate() {
    for run in hostile_runs() {
        let job = rendered(&run);
        let task = task(&job);
        let mut strings = Vec::new();
        config_strings(&task["Config"], "Config", &mut strings);
        for (at, text) in &strings {
            // Nomad evaluates the driver config as an HCL template.
            assert!(!text.contains("${") && !text.contains("%{"), "{} {at}: {text}", job["ID"]);
        }
        if matches!(&run.work, RunWork::Test(work) if work.case == TestCase::EntryPoint) {
            // Refused at submission (`unsupported`) when a value holds `${...}`; rendered as is.
            assert_eq!(task["Env"]["A"], HOSTILE);
            continue;
        }
        for (name, value) in task["Env"].as_object().unwrap() {
            let value = value.as_str().unwrap();
            assert!(!value.contains('$'), "{} Env.{name}: {value}", job["ID"]);
        }
    }
}

#[test]
fn encoded_values_decode_to_the_callers_in_the_task() {
    let values = [
        "plain",
        "",
        "${NOMAD_TASK_DIR} $HOME ${HOME:+x} \\ \\\\ \\n \\0044 \\c %b %{x} '\" ` ;|&",
        "trailing newlines\n\n",
        "\nleading newline",
        "ünïcode ✓",
    ];
    for value in values {
        let encoded = encode(value);
        assert!(!encoded.contains('$') && !encoded.contains('\n'), "{encoded}");
        // What the script gets after Nomad's interpolation, decoded by `jf_decode` in sh.
        let env = nomad_replace_env(&encoded, &client_variables());
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!("{DECODE_SCRIPT}jf_decode V; printf '%s' \"$V\""))
            .env("V", env)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8(output.stdout).unwrap(), value);
    }
}

/// The rendered test task, run by sh as the docker driver would run it (its `Env` after
/// Nomad's interpolation, plus what a Vault template adds), prints what `sh -c COMMAND` prints
/// with the caller's values as they were sent.
#[test]
fn command_tests_run_the_command_literally_through_sh() {
    let command = "echo '${NOMAD_TASK_DIR}' ${HOME:+x} \"$0\" $# \"$A\"; printf '[%s]\\n' \"$B\" \"$SECRET\"; \
                   set | grep -c '^jf_'; echo \"${JF_TEST_COMMAND:-unset}\"; exit 3";
    let caller_env = [("A", "${NOMAD_JOB_NAME}"), ("B", "two\nlines \\0044 \\\\ ${attr.unique.hostname}\n\n")];
    // A Vault template's variable: Nomad puts it in the environment as the template renders it.
    let secret = ("SECRET", "s3cr\\0044t ${x}");
    let mut run = test_run(0, TestCase::Command(command.into()));
    if let RunWork::Test(work) = &mut run.work {
        for (name, value) in caller_env {
            work.env.insert(from_json(json!(name)), value.into());
        }
        work.vault_secrets.push(from_json(json!({"path": "app/db", "fields": {"password": "SECRET"}})));
    }
    let job = rendered(&run);
    let task = task(&job);
    let config = &task["Config"];
    let args: Vec<&str> = config["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[2..], ["sh", "A", "B"], "the names to decode, not the template's");
    let mut env: Vec<(String, String)> = task["Env"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), nomad_replace_env(v.as_str().unwrap(), &client_variables())))
        .collect();
    env.push((secret.0.into(), secret.1.into()));
    env.push(("HOME".into(), "/root".into()));
    let through_nomad =
        Command::new(config["command"].as_str().unwrap()).args(&args).env_clear().envs(env).output().unwrap();
    let meant = Command::new("sh")
        .args(["-c", command])
        .env_clear()
        .envs(caller_env)
        .envs([secret, ("HOME", "/root")])
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert_eq!(text(&through_nomad.stderr), text(&meant.stderr));
    assert_eq!(text(&through_nomad.stdout), text(&meant.stdout));
    assert_eq!(through_nomad.status.code(), Some(3));
    assert!(text(&meant.stdout).starts_with("${NOMAD_TASK_DIR} x sh 0 ${NOMAD_JOB_NAME}\n"), "{}", text(&meant.stdout));
}

#[test]
fn test_tasks_get_no_registry_credentials() {
    for case in [TestCase::Command("env".into()), TestCase::EntryPoint] {
        let run = test_run(0, case);
        assert!(matches!(&run.work, RunWork::Test(work) if work.registry_credentials.is_some()));
        let job = rendered(&run);
        let task = task(&job);
        let text = task.to_string();
        assert!(!text.contains("app-registry"), "no template reads the registry secret: {text}");
        assert!(!text.contains("JF_REGISTRY") && !text.contains("USERNAME"), "{text}");
        assert!(task["Config"].get("auth").is_none(), "{text}");
        assert!(task["Templates"].as_array().is_none_or(Vec::is_empty), "{text}");
        assert!(task["Vault"].is_null(), "no Vault identity for a test that reads no secret: {text}");
    }
    // The build still pushes with them.
    let job = rendered(&build_run(false, true));
    assert!(task(&job)["Templates"].to_string().contains("nomad/jobs/app-registry"));
}

#[test]
fn the_scripts_hold_nothing_nomad_would_interpolate() {
    for (name, text) in [
        ("decode.sh", DECODE_SCRIPT),
        ("build.sh", BUILD_SCRIPT),
        ("publish.sh", PUBLISH_SCRIPT),
        ("test.sh", TEST_SCRIPT),
    ] {
        assert!(!text.contains("${") && !text.contains("%{"), "{name} holds an HCL template sequence");
        let status = Command::new("sh").args(["-n", "-c", &script(text)]).status().unwrap();
        assert!(status.success(), "{name} is not valid sh");
    }
}

#[test]
fn nomads_interpolation_syntax_is_recognized() {
    for yes in ["${a}", "x${attr.unique.hostname}y", "${meta.gpu-capable}", "${a[0]}", "$${a}", "${ ${b}"] {
        assert!(nomad_interpolates(yes), "{yes}");
    }
    for no in ["", "$a", "${}", "${a", "${a b}", "${a:-x}", "{a}", "$ {a}"] {
        assert!(!nomad_interpolates(no), "{no}");
    }
}
