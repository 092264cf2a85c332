//! Tests of the fake Nomad: its responses against the recorded Nomad examples and the OpenAPI
//! schemas in `reference/` (a copy of `../shared/reference/`), and its behaviour (blocking queries, task lifecycles with
//! podman and on the host, logs, stop and purge, placement failures, validation, ACLs).
//!
//! Every test starts its own fake on a free port with its own data dir. Nothing sleeps for a
//! fixed time: tests wait through blocking queries, the log stream, or the fake's sync marker
//! for parked queries.

#[path = "fake_nomad/support.rs"]
mod support;

use std::time::{Duration, Instant};

use jobforge_testkit::git::EXAMPLE_OUTPUT;
use jobforge_testkit::registry::TestRegistry;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

/// Keys of recorded examples the fake does not reproduce: (example file, path, why).
const SKIPPED: &[(&str, &str, &str)] = &[
    (
        "GET_v1_allocation_ALLOCID.response.json",
        "Resources.Networks",
        "the fake allocates no network ports (tasks share the host network), so allocation networks are null",
    ),
    (
        "GET_v1_allocation_ALLOCID.response.json",
        "TaskResources.*.Networks",
        "the fake allocates no network ports (tasks share the host network), so allocation networks are null",
    ),
    (
        "GET_v1_allocation_ALLOCID.response.json",
        "RescheduleTracker.Events[].Delay",
        "the doc sample has the string \"5000000000\"; the server sends integer nanoseconds (README caveat)",
    ),
    (
        "GET_v1_job_JOBID_allocations.response.json",
        "[].PreviousAllocation",
        "not an AllocListStub field (structs.go Allocation.Stub copies NextAllocation only); the doc sample is hand-written",
    ),
    (
        "GET_v1_allocation_ALLOCID.response.json",
        "Job.TaskGroups[].Tasks[].Spreads",
        "structs.Task has no Spreads (jobs and groups do); the 2017 sample predates that",
    ),
    (
        "GET_v1_allocation_ALLOCID.response.json",
        "TaskStates.*.LastRestart",
        "an unset time: the 2017 sample shows \"0001-01-01T00:00:00Z\", the current ugorji encoder writes a zero \
         time.Time as null (as the 2021 GET /v1/allocations sample shows); the fake sends null",
    ),
    (
        "GET_v1_allocations.response.json",
        "[].DeploymentStatus",
        "deployments exist only for service jobs with update blocks; the fake has no deployments, so it is null",
    ),
];

fn skips(file: &str) -> Vec<&'static str> {
    SKIPPED.iter().filter(|(f, _, _)| *f == file).map(|(_, path, _)| *path).collect()
}

/// The fake's `actual` has the shape of the recorded `file` and validates against `schema`.
fn check_fidelity(openapi: &Value, file: &str, actual: &Value, schema: Value) {
    let problems = compare_shape(&example(file), actual, &skips(file));
    assert!(
        problems.is_empty(),
        "{file}: the fake differs from the recorded example:\n{}\nfake: {actual:#}",
        problems.join("\n")
    );
    let errors = schema_errors(openapi, schema, actual);
    assert!(
        errors.is_empty(),
        "{file}: the fake's answer fails the OpenAPI schema:\n{}\nfake: {actual:#}",
        errors.join("\n")
    );
}

/// A batch job shaped like the docs' samples (services with checks, task networks, meta), run
/// on the host: its first allocation fails and is rescheduled once, the second succeeds.
fn reschedule_job(marker: &str) -> Value {
    let script = "if [ -e \"$MARKER\" ]; then echo second; else touch \"$MARKER\"; echo first; exit 1; fi";
    json!({
        "ID": "example",
        "Type": "batch",
        "Datacenters": ["dc1"],
        "Meta": { "team": "builds" },
        "TaskGroups": [{
            "Name": "cache",
            "RestartPolicy": { "Attempts": 0, "Mode": "fail", "Interval": 60_000_000_000i64 },
            "ReschedulePolicy": {
                "Attempts": 1, "Interval": 3_600_000_000_000i64, "Delay": 5_000_000_000i64,
                "DelayFunction": "constant", "Unlimited": false,
            },
            "Tasks": [{
                "Name": "redis",
                "Driver": "docker",
                "Config": { "image": BUILDAH_IMAGE, "command": "/bin/sh", "args": ["-c", script] },
                "Env": { "MARKER": marker },
                "Services": [{
                    "Name": "redis-cache", "PortLabel": "db", "Provider": "nomad", "Tags": ["global", "cache"],
                    "Checks": [{ "Name": "alive", "Type": "tcp", "Interval": 10_000_000_000i64, "Timeout": 2_000_000_000i64 }],
                }],
                "Resources": { "CPU": 500, "MemoryMB": 64, "Networks": [{ "MBits": 10, "DynamicPorts": [{ "Label": "db" }] }] },
            }],
        }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_match_the_recorded_examples_and_the_openapi_schemas() {
    let fixture = start().await;
    let api = &fixture.api;
    let openapi = openapi();
    // The schemas really apply: a wrong type deep inside a job is caught.
    let wrong = json!({ "ID": "x", "TaskGroups": [{ "Tasks": [{ "KillTimeout": "5s" }] }] });
    assert!(!schema_errors(&openapi, schema_ref("Job"), &wrong).is_empty(), "the Job schema accepts anything");

    // The docs' periodic, parameterized job, registered as recorded (server fields included:
    // the server overwrites them), through the path route.
    let sample = example("GET_v1_job_JOBID.response.json");
    let registered = api.post("/v1/job/example", &json!({ "Job": sample })).await.ok();
    check_fidelity(&openapi, "POST_v1_job_JOBID.response.json", &registered, schema_ref("JobRegisterResponse"));
    assert_eq!(registered["EvalID"], "", "a periodic or parameterized parent gets no evaluation");
    let job = api.get("/v1/job/example?namespace=apps").await.ok();
    check_fidelity(&openapi, "GET_v1_job_JOBID.response.json", &job, schema_ref("Job"));
    assert_eq!(job["Status"], "running", "parents run until stopped");
    let jobs = api.get("/v1/jobs?namespace=apps").await.ok();
    check_fidelity(&openapi, "GET_v1_jobs.response.json", &jobs, schema_list("JobListStub"));

    // A job that fails once, is rescheduled after 5 s, and succeeds.
    let marker = fixture.dir.path().join("marker").display().to_string();
    let registered = api.register(&reschedule_job(&marker)).await;
    check_fidelity(&openapi, "POST_v1_jobs.response.json", &registered, schema_ref("JobRegisterResponse"));
    let allocs = api
        .allocs_until("example", "the rescheduled allocation completing", |allocs| {
            client_status(allocs).iter().filter(|s| *s == "complete").count() == 1
        })
        .await;
    let replacement = allocs.iter().find(|a| !a["RescheduleTracker"].is_null()).expect("a rescheduled allocation");
    let first = allocs.iter().find(|a| a["RescheduleTracker"].is_null()).expect("the first allocation");
    assert_eq!(first["ClientStatus"], "failed");
    assert_eq!(first["NextAllocation"], replacement["ID"]);
    assert_eq!(first["DesiredDescription"], "alloc was rescheduled because it failed");
    let delay = &replacement["RescheduleTracker"]["Events"][0];
    assert_eq!(delay["PrevAllocID"], first["ID"]);
    assert_eq!(delay["Delay"], 5_000_000_000i64);

    let job_allocs = Value::Array(vec![replacement.clone()]);
    check_fidelity(
        &openapi,
        "GET_v1_job_JOBID_allocations.response.json",
        &job_allocs,
        schema_list("AllocationListStub"),
    );
    let all_allocs = api.get("/v1/allocations").await.ok();
    check_fidelity(&openapi, "GET_v1_allocations.response.json", &all_allocs, schema_list("AllocationListStub"));
    let replacement_id = replacement["ID"].as_str().unwrap();
    let full = api.get(&format!("/v1/allocation/{replacement_id}")).await.ok();
    check_fidelity(&openapi, "GET_v1_allocation_ALLOCID.response.json", &full, schema_ref("Allocation"));
    assert_eq!(full["PreviousAllocation"], first["ID"]);
    let eval_allocs =
        api.get(&format!("/v1/evaluation/{}/allocations", replacement["EvalID"].as_str().unwrap())).await.ok();
    check_fidelity(
        &openapi,
        "GET_v1_evaluation_EVALID_allocations.response.json",
        &eval_allocs,
        schema_list("AllocationListStub"),
    );
    let evals = api.get("/v1/job/example/evaluations").await.ok();
    check_fidelity(&openapi, "GET_v1_job_JOBID_evaluations.response.json", &evals, schema_list("Evaluation"));
    let triggers: Vec<&str> = evals.as_array().unwrap().iter().map(|e| e["TriggeredBy"].as_str().unwrap()).collect();
    assert_eq!(triggers, ["job-register", "alloc-failure", "failed-follow-up"]);
    let all_evals = api.get("/v1/evaluations").await.ok();
    check_fidelity(&openapi, "GET_v1_evaluations.response.json", &all_evals, schema_list("Evaluation"));
    let summary = api.get("/v1/job/example/summary").await.ok();
    check_fidelity(&openapi, "GET_v1_job_JOBID_summary.response.json", &summary, schema_ref("JobSummary"));
    assert_eq!(summary["Summary"]["cache"]["Failed"], 1);
    assert_eq!(summary["Summary"]["cache"]["Complete"], 1);
    let stopped = api.delete("/v1/job/example").await.ok();
    check_fidelity(&openapi, "DELETE_v1_job_JOBID.response.json", &stopped, schema_ref("JobDeregisterResponse"));

    // A job that fits nowhere: its evaluation and the blocked one it leaves.
    let mut huge = host_job("huge", "true");
    huge["TaskGroups"][0]["Tasks"][0]["Resources"]["MemoryMB"] = json!(100_000);
    api.register(&huge).await;
    let evals =
        api.evals_until("huge", "a blocked evaluation", |evals| evals.iter().any(|e| e["Status"] == "blocked")).await;
    let blocked = evals.iter().find(|e| e["Status"] == "blocked").unwrap();
    let blocked = api.get(&format!("/v1/evaluation/{}?related=true", blocked["ID"].as_str().unwrap())).await.ok();
    check_fidelity(&openapi, "GET_v1_evaluation_EVALID.response.json", &blocked, schema_ref("Evaluation"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_queries_return_at_once_wake_on_change_and_time_out() {
    let fixture = start().await;
    let api = &fixture.api;

    // Without an index: at once, with the index headers.
    let started = Instant::now();
    let answer = api.get("/v1/jobs").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.index.is_some_and(|i| i >= 1));
    assert_eq!(answer.headers["X-Nomad-KnownLeader"], "true");
    assert!(answer.headers.contains_key("X-Nomad-LastContact"));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(api.get("/v1/jobs?index=1&wait=forever").await.text, "Invalid wait time");
    assert_eq!(api.get("/v1/jobs?index=x").await.text, "Invalid index");

    // A job whose task waits for a file: the query parked on its allocations wakes when the
    // task exits, well before `wait`.
    api.register(&host_job("waits", "while [ ! -e \"$NOMAD_TASK_DIR/go\" ]; do sleep 0.05; done; echo done")).await;
    let allocs = api.allocs_until("waits", "running", |a| client_status(a) == ["running"]).await;
    let alloc_id = allocs[0]["ID"].as_str().unwrap().to_owned();
    let index = api.get("/v1/job/waits/allocations").await.index.unwrap();
    let parked = {
        let api = api.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = api.get(&format!("/v1/job/waits/allocations?index={index}&wait=20s")).await;
            (started.elapsed(), answer)
        })
    };
    fixture.nomad.blocking_queries_waiting(1).await;
    std::fs::write(fixture.nomad.alloc_dir(&alloc_id).join("main/local/go"), "").unwrap();
    let (elapsed, answer) = parked.await.unwrap();
    assert!(answer.index.unwrap() > index, "the query returned the old index");
    assert!(elapsed < Duration::from_secs(15), "the query waited for its timeout instead of waking: {elapsed:?}");
    api.allocs_until("waits", "complete", |a| client_status(a) == ["complete"]).await;

    // Nothing changes: the query returns at `wait` (plus at most wait/16) with the same index.
    let index = api.get("/v1/job/waits/allocations").await.index.unwrap();
    let started = Instant::now();
    let answer = api.get(&format!("/v1/job/waits/allocations?index={index}&wait=300ms")).await;
    let elapsed = started.elapsed();
    assert_eq!(answer.index, Some(index));
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3), "returned after {elapsed:?}");

    // Another job's allocations move the table index but do not wake this job's query.
    let parked = {
        let api = api.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = api.get(&format!("/v1/job/waits/allocations?index={index}&wait=1500ms")).await;
            (started.elapsed(), answer)
        })
    };
    fixture.nomad.blocking_queries_waiting(1).await;
    api.register(&host_job("other", "true")).await;
    let other = api.allocs_until("other", "complete", |a| client_status(a) == ["complete"]).await;
    let (elapsed, answer) = parked.await.unwrap();
    assert!(other[0]["CreateIndex"].as_u64().unwrap() > index);
    assert!(elapsed >= Duration::from_millis(1500), "woke on another job's allocation after {elapsed:?}");
    assert!(answer.index.unwrap() > index, "the reported index is the whole table's");

    // A job read blocks on the job's modify index: a stop wakes it.
    let job = api.get("/v1/job/waits").await;
    let index = job.index.unwrap();
    assert_eq!(job.json()["ModifyIndex"].as_u64(), Some(index));
    let parked = {
        let api = api.clone();
        tokio::spawn(async move { api.get(&format!("/v1/job/waits?index={index}&wait=20s")).await })
    };
    fixture.nomad.blocking_queries_waiting(1).await;
    api.delete("/v1/job/waits").await.ok();
    let woken = parked.await.unwrap().ok();
    assert_eq!(woken["Stop"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_tasks_log_through_the_framed_and_plain_endpoints() {
    let fixture = start().await;
    let api = &fixture.api;
    api.register(&host_job("logs", "echo from host; echo err >&2")).await;
    let allocs = api.allocs_until("logs", "complete", |a| client_status(a) == ["complete"]).await;
    let alloc = &allocs[0];
    let alloc_id = alloc["ID"].as_str().unwrap();
    assert_eq!(event_types(alloc, "main"), ["Received", "Task Setup", "Started", "Terminated"]);
    assert_eq!(event(alloc, "main", "Terminated")["ExitCode"], 0);
    assert_eq!(event(alloc, "main", "Terminated")["Details"]["exit_code"], "0");
    assert_eq!(task_state(alloc, "main")["State"], "dead");
    assert_eq!(task_state(alloc, "main")["Failed"], false);
    assert_eq!(alloc["ClientDescription"], "All tasks have completed");

    assert_eq!(api.framed_log(alloc_id, "main", "stdout").await, b"from host\n");
    assert_eq!(api.framed_log(alloc_id, "main", "stderr").await, b"err\n");
    let answer = api.get(&format!("/v1/client/fs/logs/{alloc_id}?task=main&type=stdout")).await;
    assert_eq!(answer.headers["content-type"], "application/json");
    let frames = decode_frames(answer.text.as_bytes());
    assert_eq!(frames[0].file.as_deref(), Some("alloc/logs/main.stdout.0"));
    assert_eq!(frames[0].offset, Some(10), "a frame's offset is where its data ends");
    let plain = api.get(&format!("/v1/client/fs/logs/{alloc_id}?task=main&type=stdout&plain=true")).await;
    assert_eq!(plain.text, "from host\n");
    let tail =
        api.get(&format!("/v1/client/fs/logs/{alloc_id}?task=main&type=stdout&plain=true&origin=end&offset=4")).await;
    assert_eq!(tail.text, "ost\n");

    // Refusals, as the agent words them.
    let logs = |query: &str| format!("/v1/client/fs/logs/{alloc_id}?{query}");
    let cases = [
        (logs("type=stdout"), StatusCode::BAD_REQUEST, "must provide task name".to_owned()),
        (logs("task=main&type=both"), StatusCode::BAD_REQUEST, "must provide log type (stdout/stderr)".to_owned()),
        (
            logs("task=main&type=stdout&origin=middle"),
            StatusCode::BAD_REQUEST,
            "origin must be start or end".to_owned(),
        ),
        (logs("task=nope&type=stdout"), StatusCode::BAD_REQUEST, "unknown task name \"nope\"".to_owned()),
        (
            "/v1/client/fs/logs/0b9e7d6c-0000-0000-0000-000000000000?task=main&type=stdout".to_owned(),
            StatusCode::NOT_FOUND,
            "Unknown allocation \"0b9e7d6c-0000-0000-0000-000000000000\"".to_owned(),
        ),
    ];
    for (path, status, message) in cases {
        let answer = api.get(&path).await;
        assert_eq!((answer.status, answer.text.as_str()), (status, message.as_str()), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_logs_arrive_as_written_with_heartbeats_between() {
    let fixture = start().await;
    let api = &fixture.api;
    let script =
        "echo one; while [ ! -e \"$NOMAD_TASK_DIR/go\" ]; do sleep 0.05; done; echo two; sleep 2.5; echo three";
    api.register(&host_job("follow", script)).await;
    let allocs = api.allocs_until("follow", "running", |a| client_status(a) == ["running"]).await;
    let alloc_id = allocs[0]["ID"].as_str().unwrap().to_owned();
    let mut response = api
        .request(reqwest::Method::GET, &format!("/v1/client/fs/logs/{alloc_id}?task=main&type=stdout&follow=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut received = Vec::new();
    let mut events: Vec<String> = Vec::new();
    let mut released = false;
    let deadline = Instant::now() + PATIENCE;
    // Read the stream as it comes; release the task once its first line has arrived.
    while let Some(chunk) =
        tokio::time::timeout_at(deadline.into(), response.chunk()).await.expect("the stream stalled").unwrap()
    {
        received.extend_from_slice(&chunk);
        events = decode_frames(&received)
            .iter()
            .map(|f| if f.heartbeat { "{}".to_owned() } else { String::from_utf8_lossy(&f.data).into_owned() })
            .collect();
        if !released && events.iter().any(|e| e.contains("one")) {
            std::fs::write(fixture.nomad.alloc_dir(&alloc_id).join("main/local/go"), "").unwrap();
            released = true;
        }
    }
    let text: String = events.iter().filter(|e| *e != "{}").cloned().collect();
    assert_eq!(text, "one\ntwo\nthree\n", "frames: {events:?}");
    let two = events.iter().position(|e| e.contains("two")).unwrap();
    let three = events.iter().position(|e| e.contains("three")).unwrap();
    assert!(events[two..three].iter().any(|e| e == "{}"), "no heartbeat while the task was quiet: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_runs_see_what_the_buildah_container_would() {
    let fixture = start_with(|config| {
        config.host_volumes.insert("buildah-cache".into(), config.data_dir.join("buildah-cache"));
    })
    .await;
    let api = &fixture.api;
    let script = "echo \"FOO=$FOO\"; echo \"CONF=$CONF\"; echo \"DIR=$NOMAD_TASK_DIR\"; echo \"PWD=$(pwd)\"; \
                  sleep 300 & echo $! > \"$NOMAD_TASK_DIR/background\"; \
                  echo \"ROOT=$(buildah info --format '{{.store.GraphRoot}}')\"";
    let mut job = host_job("emulated", script);
    job["TaskGroups"][0]["Volumes"] = json!({ "cache": { "Type": "host", "Source": "buildah-cache" } });
    let task = &mut job["TaskGroups"][0]["Tasks"][0];
    task["VolumeMounts"] = json!([{ "Volume": "cache", "Destination": "/var/lib/containers" }]);
    task["Templates"] = json!([{ "EmbeddedTmpl": "FOO=bar\n", "DestPath": "secrets/build.env", "Envvars": true }]);
    task["Env"] = json!({ "CONF": "/local/app.conf", "CONTAINERS_STORAGE_CONF": "/local/storage.conf" });
    task["User"] = json!("build");
    task["Config"]["devices"] = json!([{ "host_path": "/dev/fuse" }]);
    task["Config"]["security_opt"] = json!(["label=disable"]);
    api.register(&job).await;
    // Without a volume at /var/lib/containers, buildah's storage is the task's own.
    api.register(&host_job("private", "echo \"ROOT=$(buildah info --format '{{.store.GraphRoot}}')\"")).await;

    let allocs = api.allocs_until("emulated", "complete", |a| client_status(a) == ["complete"]).await;
    let alloc_id = allocs[0]["ID"].as_str().unwrap();
    let out = String::from_utf8(api.framed_log(alloc_id, "main", "stdout").await).unwrap();
    let task_dir = fixture.nomad.alloc_dir(alloc_id).join("main");
    let graph_root = fixture.dir.path().join("data/buildah-cache/storage");
    let expected = [
        "FOO=bar".to_owned(),
        format!("CONF={}", task_dir.join("local/app.conf").display()),
        format!("DIR={}", task_dir.join("local").display()),
        format!("PWD={}", task_dir.display()),
        format!("ROOT={}", graph_root.display()),
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "what the task saw");
    let background = std::fs::read_to_string(task_dir.join("local/background")).unwrap();
    process_ends(background.trim(), "a process the task left behind").await;
    let runs = fixture.nomad.host_runs();
    let run = runs.iter().find(|r| r.alloc_id == alloc_id).unwrap();
    let ignored = run.ignored.join("\n");
    for setting in ["User: build", "devices:", "security_opt:", "CONTAINERS_STORAGE_CONF=/local/storage.conf"] {
        assert!(ignored.contains(setting), "{setting} not recorded as ignored: {ignored}");
    }
    assert_eq!(run.argv[0], "/bin/sh");

    let allocs = api.allocs_until("private", "complete", |a| client_status(a) == ["complete"]).await;
    let alloc_id = allocs[0]["ID"].as_str().unwrap();
    let out = String::from_utf8(api.framed_log(alloc_id, "main", "stdout").await).unwrap();
    let private = fixture.nomad.alloc_dir(alloc_id).join("main/private/containers/storage");
    assert_eq!(out, format!("ROOT={}\n", private.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_job_kills_its_tasks_and_completes_the_allocation() {
    let fixture = start().await;
    let api = &fixture.api;
    // Ignores SIGTERM, so the kill has to escalate after the kill timeout.
    let script = "trap '' TERM; echo $$ > \"$NOMAD_TASK_DIR/pid\"; echo ready; while true; do sleep 0.1; done";
    let mut job = host_job("long", script);
    job["TaskGroups"][0]["Tasks"][0]["KillTimeout"] = json!(1_000_000_000);
    api.register(&job).await;
    let allocs = api.allocs_until("long", "running", |a| client_status(a) == ["running"]).await;
    let alloc_id = allocs[0]["ID"].as_str().unwrap().to_owned();
    wait_for_output(api, &alloc_id, "ready").await;
    let pid = std::fs::read_to_string(fixture.nomad.alloc_dir(&alloc_id).join("main/local/pid")).unwrap();
    assert_eq!(api.get("/v1/job/long").await.ok()["Status"], "running");

    let stopped = api.delete("/v1/job/long").await.ok();
    assert!(!stopped["EvalID"].as_str().unwrap().is_empty());
    let allocs = api.allocs_until("long", "complete", |a| client_status(a) == ["complete"]).await;
    let alloc = &allocs[0];
    assert_eq!(event_types(alloc, "main"), ["Received", "Task Setup", "Started", "Killing", "Terminated", "Killed"]);
    let killing = event(alloc, "main", "Killing");
    assert_eq!(killing["DisplayMessage"], "Sent interrupt. Waiting 1s before force killing");
    assert_eq!(killing["KillTimeout"], 1_000_000_000);
    assert_eq!(event(alloc, "main", "Terminated")["Signal"], 9, "SIGTERM was ignored, so SIGKILL ended it");
    assert_eq!(event(alloc, "main", "Killed")["DisplayMessage"], "Task successfully killed");
    assert_eq!(task_state(alloc, "main")["Failed"], false, "a killed task is not failed");
    assert_eq!(alloc["DesiredStatus"], "stop");
    assert_eq!(alloc["DesiredDescription"], "alloc not needed due to job update");
    let job = api.job_until("long", "dead", |j| j["Status"] == "dead").await;
    assert_eq!(job["Stop"], true);
    process_ends(pid.trim(), "the task's process").await;
}

/// Wait until a killed process is gone (or a zombie). SIGKILL takes effect asynchronously and
/// /proc offers no notification, so this checks every 20 ms, within a deadline.
async fn process_ends(pid: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            return;
        }
        assert!(Instant::now() < deadline, "{what} ({pid}) is still alive: {stat}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Follow a task's stdout until `needle` shows up.
async fn wait_for_output(api: &Api, alloc_id: &str, needle: &str) {
    let mut response = api
        .request(reqwest::Method::GET, &format!("/v1/client/fs/logs/{alloc_id}?task=main&type=stdout&follow=true"))
        .send()
        .await
        .unwrap();
    let mut received = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while let Some(chunk) =
        tokio::time::timeout_at(deadline.into(), response.chunk()).await.expect("no output").unwrap()
    {
        received.extend_from_slice(&chunk);
        let text: Vec<u8> = decode_frames(&received).into_iter().flat_map(|f| f.data).collect();
        if String::from_utf8_lossy(&text).contains(needle) {
            return;
        }
    }
    panic!("{needle:?} never appeared in the output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reregistering_enforce_index_and_purge() {
    let fixture = start().await;
    let api = &fixture.api;
    let job = host_job("purged", "echo hi");
    let first = api.register(&job).await;
    api.allocs_until("purged", "complete", |a| client_status(a) == ["complete"]).await;

    // The same job again: a new evaluation, no new version, no new allocation.
    let second = api.register(&job).await;
    assert_ne!(second["EvalID"], first["EvalID"]);
    assert!(!second["EvalID"].as_str().unwrap().is_empty());
    assert_eq!(second["JobModifyIndex"], first["JobModifyIndex"]);
    let evals = api
        .evals_until("purged", "both evaluations complete", |e| {
            e.len() == 2 && e.iter().all(|e| e["Status"] == "complete")
        })
        .await;
    assert_eq!(evals.len(), 2);
    let stored = api.get("/v1/job/purged").await.ok();
    assert_eq!(stored["Version"], 0);
    assert_eq!(api.get("/v1/job/purged/allocations").await.ok().as_array().unwrap().len(), 1);
    assert_eq!(fixture.nomad.registrations("purged"), 2);

    // Check-and-set.
    let enforce = |index: u64| json!({ "Job": job, "EnforceIndex": true, "JobModifyIndex": index });
    let conflict = api.post("/v1/jobs", &enforce(0)).await;
    assert_eq!(conflict.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(conflict.text, "Enforcing job modify index 0: job already exists");
    let modify_index = stored["JobModifyIndex"].as_u64().unwrap();
    let stale = api.post("/v1/jobs", &enforce(modify_index + 100)).await;
    assert_eq!(
        stale.text,
        format!(
            "Enforcing job modify index {}: job exists with conflicting job modify index: {modify_index}",
            modify_index + 100
        )
    );
    assert_eq!(api.post("/v1/jobs", &enforce(modify_index)).await.status, StatusCode::OK);
    assert_eq!(fixture.nomad.registrations("purged"), 3, "refused registrations are not counted");

    // Purge: the job is gone at once; its allocations and evaluations stay listed.
    let purged = api.delete("/v1/job/purged?purge=true").await.ok();
    assert!(!purged["EvalID"].as_str().unwrap().is_empty());
    let gone = api.get("/v1/job/purged").await;
    assert_eq!((gone.status, gone.text.as_str()), (StatusCode::NOT_FOUND, "job not found"));
    assert!(gone.index.is_some(), "a not-found read still carries the index");
    assert_eq!(api.get("/v1/job/purged/allocations").await.ok().as_array().unwrap().len(), 1);
    let evals = api.get("/v1/job/purged/evaluations").await.ok();
    assert!(evals.as_array().unwrap().iter().any(|e| e["TriggeredBy"] == "job-deregister"));
    assert!(fixture.nomad.jobs().is_empty());
    assert_eq!(api.get("/v1/jobs?prefix=pur").await.ok(), json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_do_not_fit_stay_pending_with_a_blocked_evaluation() {
    let fixture = start().await;
    let api = &fixture.api;

    let mut memory = host_job("memory", "true");
    memory["TaskGroups"][0]["Tasks"][0]["Resources"]["MemoryMB"] = json!(100_000);
    let mut nowhere = host_job("nowhere", "true");
    nowhere["Datacenters"] = json!(["nowhere"]);
    let mut windows = host_job("windows", "true");
    windows["Constraints"] = json!([{ "LTarget": "${attr.kernel.name}", "RTarget": "windows", "Operand": "=" }]);
    for job in [&memory, &nowhere, &windows] {
        api.register(job).await;
    }
    for (id, check) in [
        ("memory", json!({ "NodesEvaluated": 1, "NodesExhausted": 1, "DimensionExhausted": { "memory": 1 } })),
        ("nowhere", json!({ "NodesEvaluated": 0, "NodesAvailable": { "nowhere": 0 } })),
        (
            "windows",
            json!({ "NodesEvaluated": 1, "NodesFiltered": 1, "ConstraintFiltered": { "${attr.kernel.name} = windows": 1 } }),
        ),
    ] {
        let evals = api.evals_until(id, "a blocked evaluation", |e| e.iter().any(|e| e["Status"] == "blocked")).await;
        let placing = evals.iter().find(|e| e["TriggeredBy"] == "job-register").unwrap();
        let blocked = evals.iter().find(|e| e["Status"] == "blocked").unwrap();
        assert_eq!(placing["Status"], "complete");
        assert_eq!(placing["BlockedEval"], blocked["ID"]);
        assert_eq!(blocked["TriggeredBy"], "queued-allocs");
        assert_eq!(blocked["PreviousEval"], placing["ID"]);
        let metrics = &placing["FailedTGAllocs"]["build"];
        for (key, value) in check.as_object().unwrap() {
            assert_eq!(&metrics[key], value, "{id}: {key} in {metrics:#}");
        }
        assert_eq!(placing["QueuedAllocations"]["build"], 1);
        let job = api.get(&format!("/v1/job/{id}")).await.ok();
        assert_eq!(job["Status"], "pending", "{id}");
        let summary = api.get(&format!("/v1/job/{id}/summary")).await.ok();
        assert_eq!(summary["Summary"]["build"]["Queued"], 1);
        assert_eq!(api.get(&format!("/v1/job/{id}/allocations")).await.ok(), json!([]));
    }

    // Capacity freed by one job unblocks another.
    let mut big = host_job("big", "echo ready; while true; do sleep 0.1; done");
    big["TaskGroups"][0]["Tasks"][0]["Resources"]["MemoryMB"] = json!(6000);
    let mut waiting = host_job("waiting", "echo placed");
    waiting["TaskGroups"][0]["Tasks"][0]["Resources"]["MemoryMB"] = json!(6000);
    api.register(&big).await;
    api.allocs_until("big", "running", |a| client_status(a) == ["running"]).await;
    api.register(&waiting).await;
    api.evals_until("waiting", "a blocked evaluation", |e| e.iter().any(|e| e["Status"] == "blocked")).await;
    api.delete("/v1/job/big").await.ok();
    api.allocs_until("waiting", "placed and complete", |a| client_status(a) == ["complete"]).await;
    let evals = api.get("/v1/job/waiting/evaluations").await.ok();
    assert!(evals.as_array().unwrap().iter().all(|e| e["Status"] == "complete"), "{evals:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_use_nomads_codes_and_texts() {
    let fixture = start().await;
    let api = &fixture.api;
    let valid = host_job("valid", "true");
    let mut no_groups = valid.clone();
    no_groups["TaskGroups"] = json!([]);
    let mut bad_type = valid.clone();
    bad_type["Type"] = json!("nope");
    let mut no_driver = valid.clone();
    no_driver["TaskGroups"][0]["Tasks"][0]["Driver"] = json!("");
    let mut no_id = valid.clone();
    no_id.as_object_mut().unwrap().remove("ID");
    let mut string_timeout = valid.clone();
    string_timeout["TaskGroups"][0]["Tasks"][0]["KillTimeout"] = json!("5s");
    let cases = [
        ("/v1/jobs", json!({ "Job": no_id }), StatusCode::BAD_REQUEST, "Job ID hasn't been provided".to_owned()),
        ("/v1/job/other", json!({ "Job": valid }), StatusCode::BAD_REQUEST, "Job ID does not match name".to_owned()),
        ("/v1/jobs", json!({}), StatusCode::BAD_REQUEST, "Job must be specified".to_owned()),
        (
            "/v1/jobs",
            json!({ "Job": no_groups }),
            StatusCode::INTERNAL_SERVER_ERROR,
            "1 error occurred:\n\t* Missing job task groups\n\n".to_owned(),
        ),
        (
            "/v1/jobs",
            json!({ "Job": bad_type }),
            StatusCode::INTERNAL_SERVER_ERROR,
            "1 error occurred:\n\t* Invalid job type: \"nope\"\n\n".to_owned(),
        ),
        (
            "/v1/jobs",
            json!({ "Job": no_driver }),
            StatusCode::INTERNAL_SERVER_ERROR,
            "1 error occurred:\n\t* Task group build validation failed: 1 error occurred:\n\t* Task main validation \
             failed: 1 error occurred:\n\t* Missing task driver\n\n\n\n\n\n"
                .to_owned(),
        ),
    ];
    for (path, body, status, text) in cases {
        let answer = api.post(path, &body).await;
        assert_eq!((answer.status, answer.text.as_str()), (status, text.as_str()), "{body}");
        assert!(answer.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    }
    let decode = api.post("/v1/jobs", &json!({ "Job": string_timeout })).await;
    assert_eq!(decode.status, StatusCode::BAD_REQUEST);
    assert!(decode.text.starts_with("json: cannot unmarshal string"), "{}", decode.text);
    assert_eq!(
        api.send(api.request(reqwest::Method::POST, "/v1/jobs").body("{")).await.status,
        StatusCode::BAD_REQUEST
    );

    let not_found = [
        ("/v1/job/missing", "job not found"),
        ("/v1/job/missing/summary", "job not found"),
        ("/v1/allocation/0b9e7d6c-0000-0000-0000-000000000000", "alloc not found"),
        ("/v1/evaluation/0b9e7d6c-0000-0000-0000-000000000000", "eval not found"),
    ];
    for (path, text) in not_found {
        let answer = api.get(path).await;
        assert_eq!((answer.status, answer.text.as_str()), (StatusCode::NOT_FOUND, text), "{path}");
    }
    let unknown = api.delete("/v1/job/missing").await.ok();
    assert_eq!(unknown["EvalID"], "");
    assert_eq!(unknown["JobModifyIndex"], 0);
    let wrong = api.send(api.request(reqwest::Method::PATCH, "/v1/job/missing")).await;
    assert_eq!((wrong.status, wrong.text.as_str()), (StatusCode::METHOD_NOT_ALLOWED, "Invalid method"));
    assert_eq!(api.get("/v1/jobs").await.ok(), json!([]), "an empty list is [], never null");
    assert_eq!(api.get("/v1/status/leader").await.ok(), json!("127.0.0.1:4647"));
    assert_eq!(api.get("/v1/agent/health").await.ok()["server"]["ok"], true);
    assert_eq!(api.get("/v1/agent/self").await.ok()["config"]["Datacenter"], "dc1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_tokens_are_enforced_when_configured() {
    let fixture = start_with(|config| config.acl_token = Some("s3cret".into())).await;
    let anonymous = &fixture.api;
    let denied = anonymous.get("/v1/jobs").await;
    assert_eq!((denied.status, denied.text.as_str()), (StatusCode::FORBIDDEN, "Permission denied"));
    let wrong = anonymous.with_token("guess").get("/v1/jobs").await;
    assert_eq!((wrong.status, wrong.text.as_str()), (StatusCode::FORBIDDEN, "ACL token not found"));
    assert_eq!(anonymous.with_token("s3cret").get("/v1/jobs").await.status, StatusCode::OK);
    let bearer = anonymous.send(anonymous.request(reqwest::Method::GET, "/v1/jobs").bearer_auth("s3cret")).await;
    assert_eq!(bearer.status, StatusCode::OK);
    let denied_logs = anonymous.get("/v1/client/fs/logs/x?task=main&type=stdout").await;
    assert_eq!(denied_logs.status, StatusCode::FORBIDDEN);
    assert_eq!(anonymous.get("/v1/agent/health").await.status, StatusCode::OK);
    assert_eq!(anonymous.get("/v1/status/leader").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_follow_the_policy_then_give_up() {
    let fixture = start().await;
    let api = &fixture.api;
    let mut job = host_job("flaky", "echo try; exit 2");
    job["TaskGroups"][0]["RestartPolicy"] =
        json!({ "Attempts": 1, "Delay": 100_000_000, "Interval": 10_000_000_000i64, "Mode": "fail" });
    api.register(&job).await;
    let allocs = api.allocs_until("flaky", "failed", |a| client_status(a) == ["failed"]).await;
    let alloc = &allocs[0];
    assert_eq!(
        event_types(alloc, "main"),
        ["Received", "Task Setup", "Started", "Terminated", "Restarting", "Started", "Terminated", "Not Restarting"]
    );
    assert!(event(alloc, "main", "Restarting")["DisplayMessage"].as_str().unwrap().starts_with("Task restarting in 1"));
    let not_restarting = event(alloc, "main", "Not Restarting");
    assert_eq!(not_restarting["DisplayMessage"], "Exceeded allowed attempts 1 in interval 10s and mode is \"fail\"");
    assert_eq!(not_restarting["FailsTask"], true);
    assert_eq!(task_state(alloc, "main")["Restarts"], 1);
    assert_eq!(api.framed_log(alloc["ID"].as_str().unwrap(), "main", "stdout").await, b"try\ntry\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_without_data_keeps_the_task_pending_until_stopped() {
    let fixture = start().await;
    let api = &fixture.api;
    let mut job = host_job("secretive", "echo never");
    job["TaskGroups"][0]["Tasks"][0]["Templates"] = json!([{
        "EmbeddedTmpl": "{{ with secret \"secret/data/app\" }}PASS={{ .Data.data.password }}{{ end }}",
        "DestPath": "secrets/app.env",
        "Envvars": true,
    }]);
    api.register(&job).await;
    let allocs = api
        .allocs_until("secretive", "a Template event", |a| {
            a.first().is_some_and(|a| event_types(a, "main").contains(&"Template".to_owned()))
        })
        .await;
    let alloc = &allocs[0];
    assert_eq!(event(alloc, "main", "Template")["DisplayMessage"], "Missing: vault.read(secret/data/app)");
    assert_eq!(alloc["ClientStatus"], "pending");
    let alloc_id = alloc["ID"].as_str().unwrap();
    let logs = api.get(&format!("/v1/client/fs/logs/{alloc_id}?task=main&type=stdout")).await;
    assert_eq!(
        (logs.status, logs.text.as_str()),
        (StatusCode::NOT_FOUND, "task \"main\" not started yet. No logs available")
    );
    api.delete("/v1/job/secretive").await.ok();
    let allocs = api.allocs_until("secretive", "complete", |a| client_status(a) == ["complete"]).await;
    assert_eq!(event_types(&allocs[0], "main"), ["Received", "Task Setup", "Template", "Killing", "Killed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_sends_heartbeats_and_job_events() {
    let fixture = start().await;
    let api = &fixture.api;
    let mut response = api.request(reqwest::Method::GET, "/v1/event/stream?topic=Job:streamed").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let first = response.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"{}\n");
    api.register(&host_job("other-job", "true")).await;
    api.register(&host_job("streamed", "true")).await;
    let mut received = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let line = loop {
        let chunk =
            tokio::time::timeout_at(deadline.into(), response.chunk()).await.expect("no event").unwrap().unwrap();
        received.extend_from_slice(&chunk);
        if let Some(end) = received.iter().position(|b| *b == b'\n') {
            break serde_json::from_slice::<Value>(&received[..end]).unwrap();
        }
    };
    let event = &line["Events"][0];
    assert_eq!(event["Topic"], "Job");
    assert_eq!(event["Type"], "JobRegistered");
    assert_eq!(event["Key"], "streamed");
    assert_eq!(event["Payload"]["Job"]["ID"], "streamed");
    assert_eq!(line["Index"], event["Index"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_tasks_run_for_real() {
    let registry = TestRegistry::start();
    let image = push_test_image(&registry.host()).await;
    let fixture = start_with(|config| config.insecure_registries.push(registry.host())).await;
    let api = &fixture.api;
    let podman_job = |id: &str, config: Value| {
        let mut job = host_job(id, "");
        job["TaskGroups"][0]["Tasks"][0]["Config"] = config;
        job
    };
    // Always pulled, so every run shows the `Driver` event whatever the others pulled first.
    let shell =
        |script: &str| json!({ "image": image, "command": "/bin/sh", "args": ["-c", script], "force_pull": true });
    let mut templated = podman_job("env", shell("echo \"$NOMAD_TASK_DIR\"; ulimit -n; cat /local/greeting.txt"));
    templated["TaskGroups"][0]["Tasks"][0]["Templates"] =
        json!([{ "EmbeddedTmpl": "hello from a template\n", "DestPath": "local/greeting.txt" }]);
    let mut long = podman_job("long", shell("echo ready; sleep 300"));
    long["TaskGroups"][0]["Tasks"][0]["KillTimeout"] = json!(1_000_000_000);
    let jobs = [
        podman_job("ok", shell("echo hi from podman")),
        podman_job("fails", shell("echo bad >&2; exit 3")),
        podman_job("entrypoint", json!({ "image": image })),
        podman_job("nopull", json!({ "image": format!("{}/jobforge/missing:1", registry.host()) })),
        templated,
        long,
    ];
    for job in &jobs {
        api.register(job).await;
    }

    let (ok, fails, entrypoint, nopull, env, long) = tokio::join!(
        api.allocs_until("ok", "complete", |a| client_status(a) == ["complete"]),
        api.allocs_until("fails", "failed", |a| client_status(a) == ["failed"]),
        api.allocs_until("entrypoint", "complete", |a| client_status(a) == ["complete"]),
        api.allocs_until("nopull", "failed", |a| client_status(a) == ["failed"]),
        api.allocs_until("env", "complete", |a| client_status(a) == ["complete"]),
        api.allocs_until("long", "running", |a| client_status(a) == ["running"]),
    );
    let id = |allocs: &[Value]| allocs[0]["ID"].as_str().unwrap().to_owned();

    let types = event_types(&ok[0], "main");
    assert_eq!(types, ["Received", "Task Setup", "Driver", "Started", "Terminated"]);
    assert_eq!(event(&ok[0], "main", "Driver")["DisplayMessage"], format!("Downloading image {image}"));
    assert_eq!(api.framed_log(&id(&ok), "main", "stdout").await, b"hi from podman\n");

    assert_eq!(event(&fails[0], "main", "Terminated")["ExitCode"], 3);
    let not_restarting = event(&fails[0], "main", "Not Restarting");
    assert_eq!(not_restarting["DisplayMessage"], "Policy allows no restarts");
    assert_eq!(not_restarting["FailsTask"], true);
    assert_eq!(task_state(&fails[0], "main")["Failed"], true);
    assert_eq!(fails[0]["ClientDescription"], "Failed tasks");
    assert_eq!(api.framed_log(&id(&fails), "main", "stderr").await, b"bad\n");

    let output = String::from_utf8(api.framed_log(&id(&entrypoint), "main", "stdout").await).unwrap();
    assert_eq!(output.trim_end(), EXAMPLE_OUTPUT, "the image's own command runs when no command is given");

    let driver_failure = event(&nopull[0], "main", "Driver Failure");
    assert!(driver_failure["DisplayMessage"].as_str().unwrap().starts_with("Failed to pull"), "{driver_failure:#}");
    assert_eq!(event(&nopull[0], "main", "Not Restarting")["FailsTask"], true);

    let output = String::from_utf8(api.framed_log(&id(&env), "main", "stdout").await).unwrap();
    assert_eq!(output, "/local\n1024\nhello from a template\n");

    wait_for_output(api, &id(&long), "ready").await;
    api.delete("/v1/job/long").await.ok();
    let long = api.allocs_until("long", "complete", |a| client_status(a) == ["complete"]).await;
    assert_eq!(
        event_types(&long[0], "main"),
        ["Received", "Task Setup", "Driver", "Started", "Killing", "Terminated", "Killed"]
    );
    let podman = fixture.nomad.podman_command();
    let name = format!("{}-main", id(&long));
    let listed = tokio::process::Command::new(&podman[0])
        .args(&podman[1..])
        .args(["ps", "--all", "--filter", &format!("name={name}"), "--format", "{{.Names}}"])
        .output()
        .await
        .unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "", "the stopped container is still there");
}
