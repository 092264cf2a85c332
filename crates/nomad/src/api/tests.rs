//! The read types against Nomad's recorded examples (`reference/nomad-examples/`, every response
//! that has a type here) and against the JSON habits those samples do not show.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::*;

/// The text of a recorded example.
macro_rules! example {
    ($file:literal) => {
        ($file, include_str!(concat!("../../../../reference/nomad-examples/", $file)))
    };
}

/// Reads an example (or any JSON) as `T`, naming it when that fails.
#[track_caller]
fn read<T: DeserializeOwned>((name, text): (&str, &str)) -> T {
    match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => panic!("{name} does not read as {}: {error}", std::any::type_name::<T>()),
    }
}

fn time(text: &str) -> Option<DateTime<Utc>> {
    Some(DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc))
}

/// The recorded responses with no type here, and why; every other response must be read below.
const NOT_READ: &[&str] = &[
    "POST_v1_allocation_ALLOCID_stop.response.json", // we stop jobs, not allocations
    "POST_v1_job_JOBID_dispatch.response.json",      // no parameterized jobs
    "POST_v1_job_JOBID_dispatch_payload.response.json",
    "POST_v1_jobs_parse.response.json", // no HCL
    "GET_v1_event_stream.frame.json",   // the event stream is not used (yet)
];

const READ: &[&str] = &[
    "GET_v1_jobs.response.json",
    "POST_v1_jobs.response.json",
    "GET_v1_job_JOBID.response.json",
    "GET_v1_job_JOBID_versions.response.json",
    "GET_v1_job_JOBID_allocations.response.json",
    "GET_v1_job_JOBID_evaluations.response.json",
    "GET_v1_job_JOBID_summary.response.json",
    "POST_v1_job_JOBID.response.json",
    "POST_v1_job_JOBID_evaluate.response.json",
    "DELETE_v1_job_JOBID.response.json",
    "GET_v1_allocations.response.json",
    "GET_v1_allocation_ALLOCID.response.json",
    "GET_v1_evaluations.response.json",
    "GET_v1_evaluation_EVALID.response.json",
    "GET_v1_evaluation_EVALID_allocations.response.json",
    "GET_v1_client_fs_ls_ALLOCID.response.json",
    "GET_v1_client_fs_stat_ALLOCID.response.json",
];

#[test]
fn every_recorded_response_is_read_or_deliberately_not() {
    let manifest: Vec<serde_json::Value> = read(example!("manifest.json"));
    for entry in manifest {
        let file = entry["file"].as_str().unwrap();
        let kind = entry["kind"].as_str().unwrap();
        if kind.starts_with("response") {
            assert!(
                READ.contains(&file) || NOT_READ.contains(&file),
                "{file} is a recorded response that no test reads: add it to a test (or to NOT_READ, saying why)"
            );
        }
    }
}

#[test]
fn job_list() {
    let jobs: Vec<JobListStub> = read(example!("GET_v1_jobs.response.json"));
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!((job.id.as_str(), job.kind.as_str(), job.priority), ("example", "service", 50));
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!((job.create_index, job.modify_index, job.job_modify_index), (52, 93, 52));
    assert!(job.datacenters.is_empty() && !job.stop && !job.periodic, "absent keys read as zero values");
    let summary = job.job_summary.as_ref().unwrap();
    assert_eq!(summary.summary["cache"], TaskGroupSummary { queued: 1, complete: 1, ..TaskGroupSummary::default() });
    assert_eq!(summary.children, Some(JobChildrenSummary::default()));
}

#[test]
fn register_responses() {
    let created: RegisterResponse = read(example!("POST_v1_jobs.response.json"));
    assert_eq!(created.eval_id, "", "the docs' sample; a real batch job gets an eval");
    assert_eq!((created.job_modify_index, created.warnings.as_str(), created.known_leader), (109, "", false));

    for example in [example!("POST_v1_job_JOBID.response.json"), example!("POST_v1_job_JOBID_evaluate.response.json")] {
        let updated: RegisterResponse = read(example);
        assert_eq!(updated.eval_id, "d092fdc0-e1fd-2536-67d8-43af8ca798ac", "{}", example.0);
        assert_eq!((updated.eval_create_index, updated.job_modify_index, updated.index), (35, 34, 0));
    }
}

#[test]
fn deregister_response() {
    let stopped: DeregisterResponse = read(example!("DELETE_v1_job_JOBID.response.json"));
    assert_eq!(stopped.eval_id, "d092fdc0-e1fd-2536-67d8-43af8ca798ac");
    assert_eq!((stopped.eval_create_index, stopped.job_modify_index), (35, 34));
    assert_eq!(stopped.volume_eval_id, "");
}

#[test]
fn job_read_back() {
    let info: JobInfo = read(example!("GET_v1_job_JOBID.response.json"));
    assert_eq!(info.job.id, "example");
    assert_eq!(info.job.kind, "batch");
    assert_eq!(info.job.namespace.as_deref(), Some("apps"));
    assert_eq!(info.job.datacenters, ["dc1"]);
    assert_eq!(info.job.constraints[0].r_target, "linux");
    assert_eq!(info.job.meta["foo"], "bar");
    assert_eq!((info.node_pool.as_str(), &info.status), ("prod", &JobStatus::Running));
    assert_eq!((info.create_index, info.modify_index, info.job_modify_index), (7, 7, 7));
    let group = &info.job.task_groups[0];
    assert_eq!((group.name.as_str(), group.count), ("cache", 1));
    assert_eq!(group.restart_policy.as_ref().unwrap().mode, "delay");
    let names: Vec<_> = group.tasks.iter().map(|task| task.name.as_str()).collect();
    assert_eq!(names, ["init", "redis"]);
    let redis = &group.tasks[1];
    assert_eq!(redis.config["image"], "redis:latest");
    assert_eq!((redis.user.as_str(), redis.kill_timeout), ("foo-user", Some(5_000_000_000)));
    assert_eq!(redis.templates[0].dest_path, "local/config.conf");
    assert!(!redis.templates[0].envvars, "absent in this old sample: reads as false");
    assert!(redis.vault.is_none() && redis.volume_mounts.is_empty());
}

#[test]
fn job_versions_read_as_jobs() {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Versions {
        versions: Vec<JobInfo>,
    }
    let versions: Versions = read(example!("GET_v1_job_JOBID_versions.response.json"));
    let seen: Vec<_> = versions.versions.iter().map(|v| (v.version, v.stable, v.status.clone())).collect();
    assert_eq!(seen, [(1, true, JobStatus::Running), (0, false, JobStatus::Pending)]);
    let newest = &versions.versions[0];
    assert_eq!(newest.submit_time, 1_608_316_675_000_588_800);
    assert_eq!(from_unix_nanos(newest.submit_time), time("2020-12-18T18:37:55.000588800Z"));
    assert!(!newest.stop && !newest.dispatched && newest.parent_id.is_empty());
    let policy = newest.job.task_groups[0].reschedule_policy.as_ref().unwrap();
    assert!(policy.unlimited && policy.delay_function == "exponential");
    assert_eq!(newest.job.task_groups[0].tasks[0].env["foo"], "bar");
}

#[test]
fn job_allocations() {
    let allocations: Vec<AllocListStub> = read(example!("GET_v1_job_JOBID_allocations.response.json"));
    let alloc = &allocations[0];
    assert_eq!(alloc.id, "ed344e0a-7290-d117-41d3-a64f853ca3c2");
    assert_eq!((alloc.job_id.as_str(), alloc.task_group.as_str()), ("example", "cache"));
    assert_eq!((&alloc.client_status, &alloc.desired_status), (&ClientStatus::Running, &DesiredStatus::Run));
    assert!(!alloc.is_terminal());
    assert_eq!(alloc.previous_allocation, "516d2753-0513-cfc7-57ac-2d6fac18b9dc");
    assert_eq!(alloc.next_allocation, "cd13d9b9-4f97-7184-c88b-7b451981616b");
    let reschedule = &alloc.reschedule_tracker.as_ref().unwrap().events[0];
    assert_eq!((reschedule.delay, reschedule.reschedule_time), (5_000_000_000, 1_517_434_161_192_946_200));

    let redis = &alloc.task_states["redis"];
    assert_eq!(redis.state, TaskStatus::Running);
    assert_eq!(redis.started_at, time("2017-05-25T23:41:23.240184101Z"));
    assert_eq!(redis.finished_at, None, "0001-01-01T00:00:00Z is unset");
    let kinds: Vec<_> = redis.events.iter().map(|event| event.kind.clone()).collect();
    assert_eq!(
        kinds,
        [TaskEventType::Received, TaskEventType::TaskSetup, TaskEventType::Driver, TaskEventType::Started]
    );
    assert_eq!(redis.events[1].describe(), "Building Task Directory");
    assert_eq!(redis.events[2].describe(), "Downloading image redis:7", "old events: the driver message");
    assert_eq!(redis.events[3].exit_code(), 0);
    assert_eq!(redis.last_event(&TaskEventType::Started).map(|event| event.time), Some(1_495_755_683_227_522_000));
}

#[test]
fn allocation_list_with_current_fields() {
    let allocations: Vec<AllocListStub> = read(example!("GET_v1_allocations.response.json"));
    let alloc = &allocations[0];
    assert_eq!(alloc.id, "5457f16d-0f87-8e6b-5e91-0c7da3a41eb7");
    assert_eq!(
        (alloc.namespace.as_str(), alloc.node_name.as_str(), alloc.job_type.as_str()),
        ("default", "linux", "service")
    );
    assert_eq!(alloc.client_description, "Tasks are running");
    assert_eq!(alloc.desired_transition, DesiredTransition::default(), "null flags read as unset");
    assert!(alloc.reschedule_tracker.is_none() && alloc.preempted_allocations.is_empty());
    let deployment = alloc.deployment_status.as_ref().unwrap();
    assert_eq!(deployment.healthy, Some(true));
    assert_eq!(deployment.timestamp, time("2021-11-04T09:14:22.054814Z"), "an offset time, read as UTC");

    let redis = &alloc.task_states["redis"];
    assert_eq!((redis.finished_at, redis.last_restart), (None, None), "null times are unset");
    assert_eq!(redis.started_at, time("2021-11-04T09:14:12.04996Z"));
    assert_eq!(redis.events[0].describe(), "Task received by client");
    assert_eq!(redis.events[1].details["message"], "Building Task Directory");
    assert!(redis.events[0].details.is_empty());
    assert_eq!(alloc.modify_time, 1_636_017_262_190_928_000);
}

#[test]
fn evaluation_allocations() {
    let allocations: Vec<AllocListStub> = read(example!("GET_v1_evaluation_EVALID_allocations.response.json"));
    let alloc = &allocations[0];
    assert_eq!(alloc.eval_id, "5456bd7a-9fc0-c0dd-6131-cbee77f57577");
    assert_eq!((alloc.modify_time, alloc.create_time), (0, 1_495_747_371_794_276_400), "absent reads as 0");
    let redis = &alloc.task_states["redis"];
    assert_eq!((redis.started_at, redis.restarts), (None, 0));
    assert_eq!(redis.events.len(), 3);
}

#[test]
fn allocation() {
    let alloc: Allocation = read(example!("GET_v1_allocation_ALLOCID.response.json"));
    assert_eq!(alloc.id, "a8198d79-cfdb-6593-a999-1e9adabcba2e");
    assert_eq!(alloc.name, "example.cache[0]");
    assert_eq!(alloc.client_status, ClientStatus::Running);
    assert_eq!((alloc.create_index, alloc.modify_index, alloc.alloc_modify_index), (54, 57, 54));
    let reschedule = &alloc.reschedule_tracker.as_ref().unwrap().events[0];
    assert_eq!(reschedule.delay, 5_000_000_000, "the sample's string \"5000000000\" reads as the integer");
    assert_eq!(reschedule.prev_alloc_id, "516d2753-0513-cfc7-57ac-2d6fac18b9dc");

    let job = alloc.job.as_ref().unwrap();
    assert_eq!((job.job.id.as_str(), &job.status), ("example", &JobStatus::Pending));
    assert_eq!(job.job.task_groups[0].tasks[0].config["image"], "redis:7");
    assert!(job.job.task_groups[0].tasks[0].env.is_empty(), "Env: null");

    let metrics = alloc.metrics.as_ref().unwrap();
    assert_eq!((metrics.nodes_evaluated, metrics.nodes_in_pool, metrics.allocation_time), (1, 1, 31729));
    assert_eq!(metrics.nodes_available["dc1"], 1);
    assert!(metrics.scores["fb2170a8-257d-3c64-b14d-bc06cc94e34c.binpack"] > 0.62);

    let redis = &alloc.task_states["redis"];
    assert_eq!((redis.state.clone(), redis.failed), (TaskStatus::Running, false));
    assert_eq!((redis.finished_at, redis.last_restart), (None, None));
    assert_eq!(redis.started_at, time("2017-07-25T23:36:26.106431265Z"));
    assert_eq!(redis.events[1].driver_message, "Downloading image redis:7");
}

#[test]
fn evaluation_lists() {
    for (example, id, modify) in [
        (example!("GET_v1_job_JOBID_evaluations.response.json"), "a9c5effc-2242-51b2-f1fe-054ee11ab189", 10),
        (example!("GET_v1_evaluations.response.json"), "5456bd7a-9fc0-c0dd-6131-cbee77f57577", 55),
    ] {
        let evaluations: Vec<Evaluation> = read(example);
        let eval = &evaluations[0];
        assert_eq!((eval.id.as_str(), eval.modify_index), (id, modify), "{}", example.0);
        assert_eq!(eval.status, EvalStatus::Complete);
        assert!(eval.status.is_terminal());
        assert_eq!(eval.triggered_by, "job-register");
        assert!(eval.failed_tg_allocs.is_empty() && eval.class_eligibility.is_empty(), "null maps read as empty");
        assert_eq!(eval.queued_allocations["cache"], 0);
    }
}

#[test]
fn blocked_evaluation() {
    let eval: Evaluation = read(example!("GET_v1_evaluation_EVALID.response.json"));
    assert_eq!(eval.id, "2deb5f06-a100-f01a-3316-5e501a4965e7");
    assert_eq!(eval.status, EvalStatus::Blocked);
    assert!(!eval.status.is_terminal());
    assert_eq!(eval.status_description, "created to place remaining allocations");
    assert_eq!(eval.triggered_by, "queued-allocs");
    assert_eq!(eval.previous_eval, "0f98f7ea-59ae-4d90-d9bd-b8ce80b9e100");
    let failed = &eval.failed_tg_allocs["cache"];
    assert_eq!((failed.nodes_evaluated, failed.nodes_filtered, failed.nodes_exhausted), (0, 0, 0));
    assert_eq!(failed.nodes_available["dc1"], 0);
    assert!(failed.constraint_filtered.is_empty() && failed.dimension_exhausted.is_empty());
    assert_eq!(
        failed.describe(),
        "0 nodes evaluated, 0 filtered, 0 exhausted; no node is ready in the job's datacenters and node pool"
    );
    let related = &eval.related_evals[0];
    assert_eq!((related.blocked_eval.as_str(), &related.status), (eval.id.as_str(), &EvalStatus::Complete));
    assert_eq!(related.deployment_id, "79ae0a49-acf6-0fcf-183f-8646f3167b88");
    assert_eq!(eval.create_time, 1_647_394_818_583_344_000);
}

#[test]
fn job_summary() {
    let summary: JobSummary = read(example!("GET_v1_job_JOBID_summary.response.json"));
    assert_eq!(summary.job_id, "example");
    assert_eq!(summary.summary["cache"].running, 1);
    assert_eq!(summary.summary["cache"].unknown, 0, "absent in the sample");
    assert_eq!((summary.create_index, summary.modify_index), (7, 13));
}

#[test]
fn zero_values_may_be_absent_from_allocations_and_evaluations() {
    let alloc: Allocation = read(("minimal allocation", r#"{"ID":"a1","ClientStatus":"pending"}"#));
    assert_eq!((alloc.id.as_str(), &alloc.client_status), ("a1", &ClientStatus::Pending));
    assert!(alloc.task_states.is_empty() && alloc.job.is_none() && alloc.metrics.is_none());
    assert_eq!(alloc.desired_status, DesiredStatus::Other(String::new()), "absent: Nomad's zero value");

    let eval: Evaluation = read(("minimal evaluation", r#"{"ID":"e1","Status":"failed"}"#));
    assert_eq!(eval.status, EvalStatus::Failed);
    assert_eq!((eval.create_index, eval.wait), (0, 0));
}

#[test]
fn null_collections_read_as_empty() {
    let text = r#"{"ID":"a1","TaskStates":{"build":{"State":"dead","Failed":true,"Events":null,
        "StartedAt":null,"FinishedAt":"2024-05-01T10:00:00Z","LastRestart":""}},
        "PreemptedAllocations":null,"RescheduleTracker":{"Events":null},"Job":null,
        "DesiredTransition":{"Migrate":null,"Reschedule":true}}"#;
    let alloc: AllocListStub = read(("nulls", text));
    let build = &alloc.task_states["build"];
    assert!(build.failed && build.events.is_empty());
    assert_eq!((build.started_at, build.last_restart), (None, None));
    assert_eq!(build.finished_at, time("2024-05-01T10:00:00Z"));
    assert!(alloc.reschedule_tracker.unwrap().events.is_empty());
    assert_eq!(alloc.desired_transition.reschedule, Some(true));
}

#[test]
fn unknown_status_values_are_kept_not_refused() {
    let alloc: AllocListStub =
        read(("new values", r#"{"ClientStatus":"hibernating","TaskStates":{"t":{"State":"paused"}}}"#));
    assert_eq!(alloc.client_status, ClientStatus::Other("hibernating".into()));
    assert!(!alloc.is_terminal());
    assert_eq!(alloc.task_states["t"].state.as_str(), "paused");
    let eval: Evaluation = read(("new eval status", r#"{"Status":"deferred"}"#));
    assert_eq!(eval.status.to_string(), "deferred");
    assert_eq!(ClientStatus::from("lost"), ClientStatus::Lost);
    assert!(ClientStatus::Lost.is_terminal() && ClientStatus::Failed.is_terminal());
}

#[test]
fn a_failed_task_event_says_why() {
    // A current server's Terminated event for an OOM-killed build, then the policy giving up.
    let text = r#"{"State":"dead","Failed":true,"Events":[
        {"Type":"Terminated","Time":1714557600000000000,"ExitCode":137,"Signal":9,
         "DisplayMessage":"Exit Code: 137, Signal: 9, Exit Message: \"OOM Killed\"",
         "Details":{"exit_code":"137","signal":"9","oom_killed":"true","exit_message":"OOM Killed"}},
        {"Type":"Not Restarting","Time":1714557600100000000,"FailsTask":true,
         "RestartReason":"Policy allows no restarts","DisplayMessage":"Policy allows no restarts",
         "Details":{"fails_task":"true","restart_reason":"Policy allows no restarts"}}]}"#;
    let state: TaskState = read(("failed task", text));
    let terminated = state.last_event(&TaskEventType::Terminated).unwrap();
    assert_eq!((terminated.exit_code(), terminated.signal), (137, 9));
    assert!(terminated.oom_killed() && !terminated.fails_task());
    assert_eq!(from_unix_nanos(terminated.time), time("2024-05-01T10:00:00Z"));
    let gave_up = state.last_event(&TaskEventType::NotRestarting).unwrap();
    assert!(gave_up.fails_task());
    assert_eq!(gave_up.describe(), "Policy allows no restarts");

    // Details win over the deprecated flat field; either alone is read.
    let details_only: TaskEvent = read(("details", r#"{"Type":"Terminated","Details":{"exit_code":"2"}}"#));
    assert_eq!(details_only.exit_code(), 2);
    let flat_only: TaskEvent = read(("flat", r#"{"Type":"Terminated","ExitCode":3}"#));
    assert_eq!(flat_only.exit_code(), 3);
}

#[test]
fn placement_failures_are_explained() {
    let text = r#"{"NodesEvaluated":3,"NodesFiltered":2,"NodesExhausted":1,"NodesInPool":3,
        "ConstraintFiltered":{"${attr.kernel.name} = linux":2},"DimensionExhausted":{"memory":1},
        "CoalescedFailures":2}"#;
    let metric: AllocMetric = read(("metric", text));
    assert_eq!(
        metric.describe(),
        "3 nodes evaluated, 2 filtered, 1 exhausted; constraint \"${attr.kernel.name} = linux\" filtered 2; \
         memory exhausted on 1 (2 more allocations failed the same way)"
    );
}

#[test]
fn a_reschedule_delay_that_is_not_a_number_is_refused() {
    let error = serde_json::from_str::<RescheduleEvent>(r#"{"Delay":"soon"}"#).unwrap_err();
    assert!(error.to_string().contains("expected an integer"), "{error}");
}

#[test]
fn stream_frames() {
    let frame: StreamFrame = read(("frame", r#"{"Offset":5,"Data":"aGVsbG8=","File":"alloc/logs/t.stdout.0"}"#));
    assert_eq!((&frame.data[..], frame.offset), (&b"hello"[..], 5));
    assert!(!frame.is_heartbeat());
    assert!(read::<StreamFrame>(("heartbeat", "{}")).is_heartbeat());
    let event: StreamFrame = read(("event", r#"{"File":"alloc/logs/t.stdout.0","FileEvent":"file truncated"}"#));
    assert_eq!(event.file_event, Some(FileEvent::Truncated));
    assert!(!event.is_heartbeat());
    assert_eq!(
        serde_json::to_string(&frame).unwrap(),
        r#"{"Offset":5,"Data":"aGVsbG8=","File":"alloc/logs/t.stdout.0"}"#
    );
}

#[test]
fn directory_entries() {
    let listing: Vec<AllocFileInfo> = read(example!("GET_v1_client_fs_ls_ALLOCID.response.json"));
    let names: Vec<(&str, bool, i64)> = listing.iter().map(|e| (e.name.as_str(), e.is_dir, e.size)).collect();
    assert_eq!(names, [("alloc", true, 4096), ("redis", true, 4096)]);
    assert_eq!(listing[0].file_mode, "drwxrwxr-x");
    assert_eq!(listing[0].mod_time, time("2016-03-15T15:40:00.414236712-07:00"));
    assert!(!listing[0].is_regular_file());

    let stat: AllocFileInfo = read(example!("GET_v1_client_fs_stat_ALLOCID.response.json"));
    assert_eq!((stat.name.as_str(), stat.is_dir, stat.size), ("redis-syslog-collector.out", false, 96));
    assert!(stat.is_regular_file());
    let again: AllocFileInfo = serde_json::from_value(serde_json::to_value(&stat).unwrap()).unwrap();
    assert_eq!(again, stat);

    // Only a mode without a type letter is a regular file: a link, a pipe or a device is not.
    for mode in ["Lrwxrwxrwx", "prw-r--r--", "Dcrw-rw-rw-", "Srwxr-xr-x", ""] {
        let entry = AllocFileInfo { file_mode: mode.into(), ..AllocFileInfo::default() };
        assert!(!entry.is_regular_file(), "{mode}");
    }
    let zero: AllocFileInfo = read(("zero values", r#"{"Name":"x","ModTime":null}"#));
    assert_eq!((zero.mod_time, zero.file_mode.as_str(), zero.size, zero.is_dir), (None, "", 0, false));
}

#[test]
fn what_is_read_writes_back_the_same() {
    // Our types also write Nomad's wire form (a fake Nomad may serve them): a round trip keeps
    // every field they hold.
    let alloc: Allocation = read(example!("GET_v1_allocation_ALLOCID.response.json"));
    let again: Allocation = serde_json::from_value(serde_json::to_value(&alloc).unwrap()).unwrap();
    assert_eq!(again, alloc);
    let written = serde_json::to_value(&alloc).unwrap();
    assert_eq!(written["TaskStates"]["redis"]["FinishedAt"], UNSET_TIME);
    assert_eq!(written["ClientStatus"], "running");

    let info: JobInfo = read(example!("GET_v1_job_JOBID.response.json"));
    let again: JobInfo = serde_json::from_value(serde_json::to_value(&info).unwrap()).unwrap();
    assert_eq!(again, info);

    let eval: Evaluation = read(example!("GET_v1_evaluation_EVALID.response.json"));
    let again: Evaluation = serde_json::from_value(serde_json::to_value(&eval).unwrap()).unwrap();
    assert_eq!(again, eval);
}
