//! Job specs as Nomad's HTTP agent and job endpoint treat them: decode the body's `Job` into the
//! server struct's shape, apply the API's canonical defaults and the server's mutators, and
//! validate with Nomad's own messages.
//!
//! Decoding follows Go's `encoding/json` into the `api` structs: unknown fields are dropped,
//! field names match case-insensitively, a wrong JSON type is a 400 decode error. The result
//! carries every field of the server struct, with Go's zero value for plain fields and `null`
//! for unset pointers, slices and maps (Nomad encodes nil as `null`, not `[]`). Durations are
//! integer nanoseconds. Validation errors are go-multierror text, returned as 500 by the caller.
//!
//! Pure functions on `serde_json::Value`; no state, no IO.

use serde_json::{Map, Value, json};

/// One field of a Go struct, as JSON: its name and kind.
pub(crate) struct F(pub &'static str, pub K);

/// The JSON kind of a Go field.
#[derive(Clone, Copy)]
pub(crate) enum K {
    Str,
    Int,
    Bool,
    /// `time.Duration`: integer nanoseconds.
    Dur,
    /// Pointer scalars: `null` when unset.
    OptInt,
    OptDur,
    OptStr,
    /// A struct held by value: always an object.
    Val(&'static [F]),
    /// A pointer to a struct: `null` when unset.
    Obj(&'static [F]),
    /// A slice: `null` when unset.
    List(&'static K),
    /// A map with string keys: `null` when unset.
    Map(&'static K),
    /// Anything, kept as sent (driver config, structs this fake does not model).
    Any,
}

const CONSTRAINT: &[F] = &[F("LTarget", K::Str), F("RTarget", K::Str), F("Operand", K::Str)];
const AFFINITY: &[F] = &[F("LTarget", K::Str), F("RTarget", K::Str), F("Operand", K::Str), F("Weight", K::Int)];
const SPREAD_TARGET: &[F] = &[F("Value", K::Str), F("Percent", K::Int)];
const SPREAD: &[F] = &[F("Attribute", K::Str), F("Weight", K::Int), F("SpreadTarget", K::List(&K::Obj(SPREAD_TARGET)))];
const UPDATE: &[F] = &[
    F("Stagger", K::Dur),
    F("MaxParallel", K::Int),
    F("HealthCheck", K::Str),
    F("MinHealthyTime", K::Dur),
    F("HealthyDeadline", K::Dur),
    F("ProgressDeadline", K::Dur),
    F("Canary", K::Int),
    F("AutoRevert", K::Bool),
    F("AutoPromote", K::Bool),
];
const MIGRATE: &[F] =
    &[F("MaxParallel", K::Int), F("HealthCheck", K::Str), F("MinHealthyTime", K::Dur), F("HealthyDeadline", K::Dur)];
const PERIODIC: &[F] = &[
    F("Enabled", K::Bool),
    F("Spec", K::Str),
    F("Specs", K::List(&K::Str)),
    F("SpecType", K::Str),
    F("ProhibitOverlap", K::Bool),
    F("TimeZone", K::Str),
];
const PARAMETERIZED: &[F] =
    &[F("Payload", K::Str), F("MetaRequired", K::List(&K::Str)), F("MetaOptional", K::List(&K::Str))];
const RESTART: &[F] = &[
    F("Attempts", K::Int),
    F("Interval", K::Dur),
    F("Delay", K::Dur),
    F("Mode", K::Str),
    F("RenderTemplates", K::Bool),
];
const RESCHEDULE: &[F] = &[
    F("Attempts", K::Int),
    F("Interval", K::Dur),
    F("Delay", K::Dur),
    F("DelayFunction", K::Str),
    F("MaxDelay", K::Dur),
    F("Unlimited", K::Bool),
];
const EPHEMERAL_DISK: &[F] = &[F("Sticky", K::Bool), F("SizeMB", K::Int), F("Migrate", K::Bool)];
const PORT: &[F] =
    &[F("Label", K::Str), F("Value", K::Int), F("To", K::Int), F("HostNetwork", K::Str), F("IgnoreCollision", K::Bool)];
const NETWORK: &[F] = &[
    F("Mode", K::Str),
    F("Device", K::Str),
    F("CIDR", K::Str),
    F("IP", K::Str),
    F("Hostname", K::Str),
    F("MBits", K::Int),
    F("DNS", K::Any),
    F("ReservedPorts", K::List(&K::Obj(PORT))),
    F("DynamicPorts", K::List(&K::Obj(PORT))),
    F("CNI", K::Any),
];
const CHECK: &[F] = &[
    F("Name", K::Str),
    F("Type", K::Str),
    F("Command", K::Str),
    F("Args", K::List(&K::Str)),
    F("Path", K::Str),
    F("Protocol", K::Str),
    F("PortLabel", K::Str),
    F("Expose", K::Bool),
    F("AddressMode", K::Str),
    F("Interval", K::Dur),
    F("Timeout", K::Dur),
    F("InitialStatus", K::Str),
    F("TLSServerName", K::Str),
    F("TLSSkipVerify", K::Bool),
    F("Method", K::Str),
    F("Header", K::Map(&K::List(&K::Str))),
    F("CheckRestart", K::Any),
    F("GRPCService", K::Str),
    F("GRPCUseTLS", K::Bool),
    F("TaskName", K::Str),
    F("SuccessBeforePassing", K::Int),
    F("FailuresBeforeCritical", K::Int),
    F("FailuresBeforeWarning", K::Int),
    F("Body", K::Str),
    F("OnUpdate", K::Str),
];
const SERVICE: &[F] = &[
    F("Name", K::Str),
    F("TaskName", K::Str),
    F("PortLabel", K::Str),
    F("AddressMode", K::Str),
    F("Address", K::Str),
    F("EnableTagOverride", K::Bool),
    F("Tags", K::List(&K::Str)),
    F("CanaryTags", K::List(&K::Str)),
    F("Checks", K::List(&K::Obj(CHECK))),
    F("Connect", K::Any),
    F("Meta", K::Map(&K::Str)),
    F("CanaryMeta", K::Map(&K::Str)),
    F("TaggedAddresses", K::Map(&K::Str)),
    F("Namespace", K::Str),
    F("OnUpdate", K::Str),
    F("Provider", K::Str),
    F("Cluster", K::Str),
    F("Identity", K::Any),
    F("Weights", K::Any),
];
const VAULT: &[F] = &[
    F("Role", K::Str),
    F("Cluster", K::Str),
    F("Namespace", K::Str),
    F("Env", K::Bool),
    F("DisableFile", K::Bool),
    F("ChangeMode", K::Str),
    F("ChangeSignal", K::Str),
    F("AllowTokenExpiration", K::Bool),
];
const TEMPLATE_WAIT: &[F] = &[F("Min", K::OptDur), F("Max", K::OptDur)];
const TEMPLATE: &[F] = &[
    F("SourcePath", K::Str),
    F("DestPath", K::Str),
    F("EmbeddedTmpl", K::Str),
    F("ChangeMode", K::Str),
    F("ChangeSignal", K::Str),
    F("ChangeScript", K::Any),
    F("Splay", K::Dur),
    F("Perms", K::Str),
    F("Uid", K::OptInt),
    F("Gid", K::OptInt),
    F("LeftDelim", K::Str),
    F("RightDelim", K::Str),
    F("Envvars", K::Bool),
    F("VaultGrace", K::Dur),
    F("Wait", K::Obj(TEMPLATE_WAIT)),
    F("ErrMissingKey", K::Bool),
    F("Once", K::Bool),
];
const ARTIFACT: &[F] = &[
    F("GetterSource", K::Str),
    F("GetterOptions", K::Map(&K::Str)),
    F("GetterHeaders", K::Map(&K::Str)),
    F("GetterMode", K::Str),
    F("GetterInsecure", K::Bool),
    F("RelativeDest", K::Str),
    F("Chown", K::Bool),
];
const VOLUME_REQUEST: &[F] = &[
    F("Name", K::Str),
    F("Type", K::Str),
    F("Source", K::Str),
    F("ReadOnly", K::Bool),
    F("Sticky", K::Bool),
    F("AccessMode", K::Str),
    F("AttachmentMode", K::Str),
    F("MountOptions", K::Any),
    F("PerAlloc", K::Bool),
];
const VOLUME_MOUNT: &[F] = &[
    F("Volume", K::Str),
    F("Destination", K::Str),
    F("ReadOnly", K::Bool),
    F("PropagationMode", K::Str),
    F("SELinuxLabel", K::Str),
];
const LIFECYCLE: &[F] = &[F("Hook", K::Str), F("Sidecar", K::Bool)];
const DISPATCH_PAYLOAD: &[F] = &[F("File", K::Str)];
const LOG_CONFIG: &[F] = &[F("MaxFiles", K::Int), F("MaxFileSizeMB", K::Int), F("Disabled", K::Bool)];
const RESOURCES: &[F] = &[
    F("CPU", K::Int),
    F("Cores", K::Int),
    F("MemoryMB", K::Int),
    F("MemoryMaxMB", K::Int),
    F("DiskMB", K::Int),
    F("IOPS", K::Int),
    F("Networks", K::List(&K::Obj(NETWORK))),
    F("Devices", K::List(&K::Any)),
    F("NUMA", K::Any),
];
const TASK: &[F] = &[
    F("Name", K::Str),
    F("Driver", K::Str),
    F("User", K::Str),
    F("Config", K::Map(&K::Any)),
    F("Env", K::Map(&K::Str)),
    F("Services", K::List(&K::Obj(SERVICE))),
    F("Vault", K::Obj(VAULT)),
    F("Consul", K::Any),
    F("Templates", K::List(&K::Obj(TEMPLATE))),
    F("Constraints", K::List(&K::Obj(CONSTRAINT))),
    F("Affinities", K::List(&K::Obj(AFFINITY))),
    F("Resources", K::Obj(RESOURCES)),
    F("RestartPolicy", K::Obj(RESTART)),
    F("DispatchPayload", K::Obj(DISPATCH_PAYLOAD)),
    F("Lifecycle", K::Obj(LIFECYCLE)),
    F("Meta", K::Map(&K::Str)),
    F("KillTimeout", K::Dur),
    F("LogConfig", K::Obj(LOG_CONFIG)),
    F("Artifacts", K::List(&K::Obj(ARTIFACT))),
    F("Leader", K::Bool),
    F("ShutdownDelay", K::Dur),
    F("VolumeMounts", K::List(&K::Obj(VOLUME_MOUNT))),
    F("ScalingPolicies", K::List(&K::Any)),
    F("KillSignal", K::Str),
    F("Kind", K::Str),
    F("CSIPluginConfig", K::Any),
    F("Identity", K::Any),
    F("Identities", K::List(&K::Any)),
    F("Actions", K::List(&K::Any)),
    F("Schedule", K::Any),
];
const TASK_GROUP: &[F] = &[
    F("Name", K::Str),
    F("Count", K::Int),
    F("Update", K::Obj(UPDATE)),
    F("Migrate", K::Obj(MIGRATE)),
    F("Constraints", K::List(&K::Obj(CONSTRAINT))),
    F("Scaling", K::Any),
    F("RestartPolicy", K::Obj(RESTART)),
    F("Disconnect", K::Any),
    F("Tasks", K::List(&K::Obj(TASK))),
    F("EphemeralDisk", K::Obj(EPHEMERAL_DISK)),
    F("Meta", K::Map(&K::Str)),
    F("ReschedulePolicy", K::Obj(RESCHEDULE)),
    F("Affinities", K::List(&K::Obj(AFFINITY))),
    F("Spreads", K::List(&K::Obj(SPREAD))),
    F("Networks", K::List(&K::Obj(NETWORK))),
    F("Consul", K::Any),
    F("Services", K::List(&K::Obj(SERVICE))),
    F("Volumes", K::Map(&K::Obj(VOLUME_REQUEST))),
    F("ShutdownDelay", K::OptDur),
    F("StopAfterClientDisconnect", K::OptDur),
    F("MaxClientDisconnect", K::OptDur),
    F("PreventRescheduleOnLost", K::Bool),
];
/// `structs.Job`, plus the `api.Job`-only fields `Reschedule` and `Migrate` (merged into the
/// groups and then dropped, as the server struct has no such fields).
const JOB: &[F] = &[
    F("Stop", K::Bool),
    F("Region", K::Str),
    F("Namespace", K::Str),
    F("ID", K::Str),
    F("ParentID", K::Str),
    F("Name", K::Str),
    F("Type", K::Str),
    F("Priority", K::Int),
    F("AllAtOnce", K::Bool),
    F("Datacenters", K::List(&K::Str)),
    F("NodePool", K::Str),
    F("Constraints", K::List(&K::Obj(CONSTRAINT))),
    F("Affinities", K::List(&K::Obj(AFFINITY))),
    F("Spreads", K::List(&K::Obj(SPREAD))),
    F("TaskGroups", K::List(&K::Obj(TASK_GROUP))),
    F("Update", K::Val(UPDATE)),
    F("Multiregion", K::Any),
    F("Periodic", K::Obj(PERIODIC)),
    F("ParameterizedJob", K::Obj(PARAMETERIZED)),
    F("Dispatched", K::Bool),
    F("DispatchIdempotencyToken", K::Str),
    F("Payload", K::OptStr),
    F("Meta", K::Map(&K::Str)),
    F("ConsulToken", K::Str),
    F("ConsulNamespace", K::Str),
    F("VaultToken", K::Str),
    F("VaultNamespace", K::Str),
    F("NomadTokenID", K::Str),
    F("Status", K::Str),
    F("StatusDescription", K::Str),
    F("Stable", K::Bool),
    F("Version", K::Int),
    F("SubmitTime", K::Int),
    F("CreateIndex", K::Int),
    F("ModifyIndex", K::Int),
    F("JobModifyIndex", K::Int),
    F("VersionTag", K::Any),
    F("UI", K::Any),
    F("Reschedule", K::Obj(RESCHEDULE)),
    F("Migrate", K::Obj(MIGRATE)),
];

const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// A body Go's JSON decoder would refuse: answered 400 with this text.
#[derive(Debug)]
pub(crate) struct DecodeError(pub String);

/// The submitted job, decoded, defaulted and mutated as the server stores it. `namespace` is
/// the winner of Nomad's precedence (query, then request wrapper, then `Job.Namespace`).
pub(crate) fn canonicalize(raw: &Value, namespace: &str) -> Result<Value, DecodeError> {
    let mut job = decode(raw, &K::Obj(JOB), "Job")?;
    let Some(j) = job.as_object_mut() else {
        return Err(DecodeError("Job must be specified".to_owned()));
    };
    j.insert("Namespace".into(), json!(namespace));
    default_if(j, "Region", |v| v.is_null() || v == "", json!("global"));
    if j["Name"].is_null() {
        let id = j["ID"].clone();
        j.insert("Name".into(), id);
    }
    default_if(j, "Type", Value::is_null, json!("service"));
    default_if(j, "Priority", |v| v.is_null() || v == 0, json!(50));
    default_if(j, "Datacenters", |v| v.as_array().is_none_or(Vec::is_empty), json!(["*"]));
    default_if(j, "NodePool", |v| v.is_null() || v == "", json!("default"));
    let job_type = j["Type"].as_str().unwrap_or_default().to_owned();

    // The API fills a service job's update block; the server keeps only its first two fields.
    let given_update = j["Update"].clone();
    let update_given = given_update.get("Stagger").is_some_and(|v| !v.is_null())
        || given_update.get("MaxParallel").is_some_and(|v| !v.is_null());
    let mut update = Map::new();
    if update_given || job_type == "service" {
        update.insert("Stagger".into(), or(&given_update["Stagger"], json!(30 * SECOND)));
        update.insert("MaxParallel".into(), or(&given_update["MaxParallel"], json!(1)));
    }
    j.insert("Update".into(), Value::Object(update));

    if let Some(periodic) = j.get_mut("Periodic").and_then(Value::as_object_mut) {
        default_if(periodic, "Enabled", Value::is_null, json!(true));
        default_if(periodic, "SpecType", Value::is_null, json!("cron"));
        default_if(periodic, "TimeZone", Value::is_null, json!("UTC"));
    }
    if let Some(parameterized) = j.get_mut("ParameterizedJob").and_then(Value::as_object_mut) {
        default_if(parameterized, "Payload", |v| v.is_null() || v == "", json!("optional"));
    }

    let job_reschedule = j.remove("Reschedule").unwrap_or(Value::Null);
    let job_migrate = j.remove("Migrate").unwrap_or(Value::Null);
    let job_update = given_update;
    if let Some(groups) = j.get_mut("TaskGroups").and_then(Value::as_array_mut) {
        for group in groups.iter_mut().filter_map(Value::as_object_mut) {
            canonicalize_group(group, &job_type, &job_reschedule, &job_update, &job_migrate);
        }
    }
    fill(&mut job, &K::Obj(JOB));
    Ok(job)
}

fn canonicalize_group(g: &mut Map<String, Value>, job_type: &str, reschedule: &Value, update: &Value, migrate: &Value) {
    default_if(g, "Count", Value::is_null, json!(1));
    let disk = merge(json!({"Sticky": false, "SizeMB": 300, "Migrate": false}), &g["EphemeralDisk"]);
    g.insert("EphemeralDisk".into(), disk);
    let restart = merge(default_restart(job_type), &g["RestartPolicy"]);
    g.insert("RestartPolicy".into(), restart.clone());
    let resched = merge(merge(default_reschedule(job_type), reschedule), &g["ReschedulePolicy"]);
    g.insert("ReschedulePolicy".into(), resched);
    if job_type == "service" {
        let default_update = json!({
            "Stagger": 30 * SECOND, "MaxParallel": 1, "HealthCheck": "checks",
            "MinHealthyTime": 10 * SECOND, "HealthyDeadline": 5 * MINUTE,
            "ProgressDeadline": 10 * MINUTE, "Canary": 0, "AutoRevert": false, "AutoPromote": false,
        });
        let tg_update = merge(merge(default_update, update), &g["Update"]);
        g.insert("Update".into(), tg_update);
        let default_migrate = json!({
            "MaxParallel": 1, "HealthCheck": "checks", "MinHealthyTime": 10 * SECOND,
            "HealthyDeadline": 5 * MINUTE,
        });
        let tg_migrate = merge(merge(default_migrate, migrate), &g["Migrate"]);
        g.insert("Migrate".into(), tg_migrate);
    } else {
        // Update and migrate blocks mean nothing to batch and system schedulers.
        g.insert("Update".into(), Value::Null);
        g.insert("Migrate".into(), Value::Null);
    }
    for network in g.get_mut("Networks").and_then(Value::as_array_mut).into_iter().flatten() {
        canonicalize_network(network);
    }
    for service in g.get_mut("Services").and_then(Value::as_array_mut).into_iter().flatten() {
        canonicalize_service(service);
    }
    if let Some(volumes) = g.get_mut("Volumes").and_then(Value::as_object_mut) {
        for (name, volume) in volumes.iter_mut() {
            if let Some(volume) = volume.as_object_mut() {
                default_if(volume, "Name", |v| v.is_null() || v == "", json!(name));
            }
        }
    }
    let mut signals = Vec::new();
    for task in g.get_mut("Tasks").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(task) = task.as_object_mut() {
            canonicalize_task(task, &restart, &mut signals);
        }
    }
    // The server's implied-constraints mutator: a task that needs a signal delivered can only
    // run on a node whose OS supports it.
    if !signals.is_empty() {
        signals.sort();
        signals.dedup();
        let constraint =
            json!({"LTarget": "${attr.os.signals}", "RTarget": signals.join(","), "Operand": "set_contains"});
        match g.get_mut("Constraints").and_then(Value::as_array_mut) {
            Some(list) => list.push(constraint),
            None => {
                g.insert("Constraints".into(), json!([constraint]));
            }
        }
    }
}

fn canonicalize_task(t: &mut Map<String, Value>, group_restart: &Value, signals: &mut Vec<String>) {
    default_if(t, "KillTimeout", Value::is_null, json!(5 * SECOND));
    let log_config = merge(json!({"MaxFiles": 10, "MaxFileSizeMB": 10, "Disabled": false}), &t["LogConfig"]);
    t.insert("LogConfig".into(), log_config);
    if t["Resources"].is_null() {
        t.insert("Resources".into(), json!({}));
    }
    if let Some(resources) = t.get_mut("Resources").and_then(Value::as_object_mut) {
        let no_cores = resources.get("Cores").is_none_or(|v| v.is_null() || v == 0);
        if no_cores {
            default_if(resources, "CPU", Value::is_null, json!(100));
        }
        default_if(resources, "MemoryMB", Value::is_null, json!(300));
    }
    let restart = merge(group_restart.clone(), &t["RestartPolicy"]);
    t.insert("RestartPolicy".into(), restart);
    let hookless = t["Lifecycle"].get("Hook").is_some_and(|h| h.is_null() || h == "");
    if hookless {
        t.insert("Lifecycle".into(), Value::Null);
    }
    for template in t.get_mut("Templates").and_then(Value::as_array_mut).into_iter().flatten() {
        let Some(template) = template.as_object_mut() else { continue };
        default_if(template, "ChangeMode", Value::is_null, json!("restart"));
        default_if(template, "Splay", Value::is_null, json!(5 * SECOND));
        // api-facts.md gives the default mode as "644".
        default_if(template, "Perms", Value::is_null, json!("644"));
        default_if(template, "LeftDelim", Value::is_null, json!("{{"));
        default_if(template, "RightDelim", Value::is_null, json!("}}"));
        if template["ChangeMode"] == "signal"
            && let Some(signal) = template["ChangeSignal"].as_str()
        {
            let signal = signal.to_uppercase();
            signals.push(signal.clone());
            template.insert("ChangeSignal".into(), json!(signal));
        }
    }
    for artifact in t.get_mut("Artifacts").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(artifact) = artifact.as_object_mut() {
            default_if(artifact, "GetterMode", Value::is_null, json!("any"));
            default_if(artifact, "RelativeDest", Value::is_null, json!("local/"));
        }
    }
    if let Some(vault) = t.get_mut("Vault").and_then(Value::as_object_mut) {
        default_if(vault, "Env", Value::is_null, json!(true));
        default_if(vault, "ChangeMode", Value::is_null, json!("restart"));
        default_if(vault, "Cluster", Value::is_null, json!("default"));
        if vault["ChangeMode"] == "signal"
            && let Some(signal) = vault["ChangeSignal"].as_str()
        {
            signals.push(signal.to_uppercase());
        }
    }
    if let Some(signal) = t.get("KillSignal").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        signals.push(signal.to_uppercase());
    }
    for service in t.get_mut("Services").and_then(Value::as_array_mut).into_iter().flatten() {
        canonicalize_service(service);
    }
    if let Some(networks) = t.get_mut("Resources").and_then(|r| r.get_mut("Networks")).and_then(Value::as_array_mut) {
        for network in networks.iter_mut() {
            canonicalize_network(network);
        }
    }
}

fn canonicalize_network(network: &mut Value) {
    for key in ["ReservedPorts", "DynamicPorts"] {
        for port in network.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(port) = port.as_object_mut() {
                default_if(port, "HostNetwork", |v| v.is_null() || v == "", json!("default"));
            }
        }
    }
}

fn canonicalize_service(service: &mut Value) {
    let Some(service) = service.as_object_mut() else { return };
    default_if(service, "Provider", |v| v.is_null() || v == "", json!("consul"));
    default_if(service, "AddressMode", |v| v.is_null() || v == "", json!("auto"));
    default_if(service, "OnUpdate", |v| v.is_null() || v == "", json!("require_healthy"));
    for check in service.get_mut("Checks").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(check) = check.as_object_mut() {
            default_if(check, "OnUpdate", |v| v.is_null() || v == "", json!("require_healthy"));
        }
    }
}

fn default_restart(job_type: &str) -> Value {
    match job_type {
        "batch" | "sysbatch" => {
            json!({"Attempts": 3, "Interval": 24 * HOUR, "Delay": 15 * SECOND, "Mode": "fail", "RenderTemplates": false})
        }
        _ => {
            json!({"Attempts": 2, "Interval": 30 * MINUTE, "Delay": 15 * SECOND, "Mode": "fail", "RenderTemplates": false})
        }
    }
}

fn default_reschedule(job_type: &str) -> Value {
    match job_type {
        "batch" => {
            json!({"Attempts": 1, "Interval": 24 * HOUR, "Delay": 5 * SECOND, "DelayFunction": "constant", "MaxDelay": 0, "Unlimited": false})
        }
        "service" => {
            json!({"Attempts": 0, "Interval": 0, "Delay": 30 * SECOND, "DelayFunction": "exponential", "MaxDelay": HOUR, "Unlimited": true})
        }
        _ => json!({"Attempts": 0, "Interval": 0, "Delay": 0, "DelayFunction": "", "MaxDelay": 0, "Unlimited": false}),
    }
}

/// `base` with every non-null field of `over` on top (the `api` structs' `Merge`).
fn merge(mut base: Value, over: &Value) -> Value {
    if let (Some(base_map), Some(over_map)) = (base.as_object_mut(), over.as_object()) {
        for (key, value) in over_map {
            if !value.is_null() {
                base_map.insert(key.clone(), value.clone());
            }
        }
    }
    base
}

fn default_if(map: &mut Map<String, Value>, key: &str, unset: impl Fn(&Value) -> bool, value: Value) {
    let current = map.get(key).unwrap_or(&Value::Null);
    if unset(current) {
        map.insert(key.to_owned(), value);
    }
}

fn or(value: &Value, default: Value) -> Value {
    if value.is_null() { default } else { value.clone() }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn go_type(kind: &K) -> &'static str {
    match kind {
        K::Str | K::OptStr => "string",
        K::Int | K::OptInt => "int",
        K::Bool => "bool",
        K::Dur | K::OptDur => "time.Duration",
        K::Val(_) | K::Obj(_) => "struct",
        K::List(_) => "slice",
        K::Map(_) => "map",
        K::Any => "interface {}",
    }
}

/// Decode `value` as `kind`: every struct field present (`null` when absent), unknown keys
/// dropped, types checked like Go's decoder.
fn decode(value: &Value, kind: &K, path: &str) -> Result<Value, DecodeError> {
    let mismatch = || {
        DecodeError(format!(
            "json: cannot unmarshal {} into Go struct field {path} of type {}",
            json_type(value),
            go_type(kind)
        ))
    };
    if value.is_null() {
        return Ok(Value::Null);
    }
    match kind {
        K::Str | K::OptStr => value.is_string().then(|| value.clone()).ok_or_else(mismatch),
        K::Bool => value.is_boolean().then(|| value.clone()).ok_or_else(mismatch),
        K::Int | K::Dur | K::OptInt | K::OptDur => integer(value).ok_or_else(mismatch),
        K::Any => Ok(value.clone()),
        K::Val(fields) | K::Obj(fields) => {
            let object = value.as_object().ok_or_else(mismatch)?;
            let mut out = Map::new();
            for F(name, field_kind) in fields.iter() {
                // Go matches keys case-insensitively, preferring an exact match.
                let given = object
                    .get(*name)
                    .or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v));
                let decoded = match given {
                    Some(given) => decode(given, field_kind, &format!("{path}.{name}"))?,
                    None => Value::Null,
                };
                out.insert((*name).to_owned(), decoded);
            }
            Ok(Value::Object(out))
        }
        K::List(item) => {
            let items = value.as_array().ok_or_else(mismatch)?;
            items.iter().map(|v| decode(v, item, path)).collect::<Result<Vec<_>, _>>().map(Value::Array)
        }
        K::Map(item) => {
            let object = value.as_object().ok_or_else(mismatch)?;
            let mut out = Map::new();
            for (key, v) in object {
                out.insert(key.clone(), decode(v, item, path)?);
            }
            Ok(Value::Object(out))
        }
    }
}

/// A JSON number Go would store in an integer field: integral, in range.
fn integer(value: &Value) -> Option<Value> {
    if let Some(i) = value.as_i64() {
        return Some(json!(i));
    }
    if let Some(u) = value.as_u64() {
        return Some(json!(u));
    }
    let f = value.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 9.2e18).then(|| json!(f as i64))
}

/// Replace the `null`s Go would not emit (plain strings, numbers, bools, structs by value)
/// with zero values, recursively.
fn fill(value: &mut Value, kind: &K) {
    match kind {
        K::Str if value.is_null() => *value = json!(""),
        K::Int | K::Dur if value.is_null() => *value = json!(0),
        K::Bool if value.is_null() => *value = json!(false),
        K::Val(fields) | K::Obj(fields) => {
            if value.is_null() {
                if matches!(kind, K::Obj(_)) {
                    return;
                }
                *value = Value::Object(Map::new());
            }
            if let Some(object) = value.as_object_mut() {
                for F(name, field_kind) in fields.iter() {
                    let field = object.entry((*name).to_owned()).or_insert(Value::Null);
                    fill(field, field_kind);
                }
            }
        }
        K::List(item) => {
            for element in value.as_array_mut().into_iter().flatten() {
                fill(element, item);
            }
        }
        K::Map(item) => {
            for element in value.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
                fill(element, item);
            }
        }
        _ => {}
    }
}

/// go-multierror's text for a list of errors (`1 error occurred:\n\t* ...\n\n`).
pub(crate) fn multierror(errors: &[String]) -> String {
    if errors.len() == 1 {
        return format!("1 error occurred:\n\t* {}\n\n", errors[0]);
    }
    let points: Vec<String> = errors.iter().map(|e| format!("* {e}")).collect();
    format!("{} errors occurred:\n\t{}\n\n", errors.len(), points.join("\n\t"))
}

const OPERANDS: &[&str] = &[
    "=",
    "==",
    "is",
    "!=",
    "not",
    "<",
    "<=",
    ">",
    ">=",
    "regexp",
    "version",
    "semver",
    "is_set",
    "is_not_set",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
    "distinct_hosts",
    "distinct_property",
];

/// `Job.Validate()` plus the job endpoint's own checks, as one multierror text; `None` if the
/// job is valid.
pub(crate) fn validate(job: &Value) -> Option<String> {
    let mut errors = Vec::new();
    let text = |key: &str| job[key].as_str().unwrap_or_default().to_owned();
    let (id, name, job_type) = (text("ID"), text("Name"), text("Type"));
    if text("Region").is_empty() {
        errors.push("Missing job region".to_owned());
    }
    if id.is_empty() {
        errors.push("Missing job ID".to_owned());
    } else if id.contains(' ') {
        errors.push("Job ID contains a space".to_owned());
    } else if id.contains('\0') {
        errors.push("Job ID contains a null character".to_owned());
    }
    if name.is_empty() {
        errors.push("Missing job name".to_owned());
    } else if name.contains('\0') {
        errors.push("Job Name contains a null character".to_owned());
    }
    if text("Namespace").is_empty() {
        errors.push("Job must be in a namespace".to_owned());
    }
    match job_type.as_str() {
        "service" | "batch" | "system" | "sysbatch" => {}
        "" => errors.push("Missing job type".to_owned()),
        other => errors.push(format!("Invalid job type: {other:?}")),
    }
    let datacenters = job["Datacenters"].as_array().cloned().unwrap_or_default();
    if datacenters.is_empty() {
        errors.push("Missing job datacenters".to_owned());
    }
    if datacenters.iter().any(|dc| dc.as_str().is_none_or(str::is_empty)) {
        errors.push("Job datacenter must be non-empty string".to_owned());
    }
    let groups = job["TaskGroups"].as_array().cloned().unwrap_or_default();
    if groups.is_empty() {
        errors.push("Missing job task groups".to_owned());
    }
    for (i, constraint) in list(&job["Constraints"]).iter().enumerate() {
        if let Some(err) = validate_constraint(constraint) {
            errors.push(format!("Constraint {} validation failed: {}", i + 1, err));
        }
    }
    let mut seen: Vec<String> = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let group_name = group["Name"].as_str().unwrap_or_default();
        if group_name.is_empty() {
            errors.push(format!("Job task group {} missing name", i + 1));
        } else if let Some(existing) = seen.iter().position(|n| n == group_name) {
            errors.push(format!("Job task group {} redefines '{}' from group {}", i + 1, group_name, existing + 1));
        }
        seen.push(group_name.to_owned());
        let count = group["Count"].as_i64().unwrap_or(0);
        if job_type == "system" && count > 1 {
            errors.push(format!(
                "Job task group {group_name} has count {count}. Count cannot exceed 1 with system scheduler"
            ));
        }
    }
    for group in &groups {
        let group_errors = validate_group(group, &job_type);
        if !group_errors.is_empty() {
            let group_name = group["Name"].as_str().unwrap_or_default();
            errors.push(format!("Task group {group_name} validation failed: {}", multierror(&group_errors)));
        }
    }
    let periodic_enabled = job["Periodic"]["Enabled"].as_bool().unwrap_or(false);
    if periodic_enabled && job_type != "batch" && job_type != "sysbatch" {
        errors.push("Periodic can only be used with \"batch\" or \"sysbatch\" scheduler".to_owned());
    }
    if !job["ParameterizedJob"].is_null() && job_type != "batch" && job_type != "sysbatch" {
        errors.push("Parameterized job can only be used with \"batch\" or \"sysbatch\" scheduler".to_owned());
    }
    let priority = job["Priority"].as_i64().unwrap_or(0);
    if !(1..=100).contains(&priority) {
        errors.push("job priority must be between [1, 100]".to_owned());
    }
    (!errors.is_empty()).then(|| multierror(&errors))
}

fn list(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

fn validate_group(group: &Value, job_type: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let group_name = group["Name"].as_str().unwrap_or_default();
    if group_name.is_empty() {
        errors.push("Missing task group name".to_owned());
    }
    if group["Count"].as_i64().unwrap_or(0) < 0 {
        errors.push("Task group count can't be negative".to_owned());
    }
    let tasks = list(&group["Tasks"]);
    if tasks.is_empty() {
        errors.push("Missing tasks for task group".to_owned());
    }
    for (i, constraint) in list(&group["Constraints"]).iter().enumerate() {
        if let Some(err) = validate_constraint(constraint) {
            errors.push(format!("Constraint {} validation failed: {}", i + 1, err));
        }
    }
    // The policies' own multierrors are appended whole, so they nest in the text.
    match group["RestartPolicy"].is_object() {
        true => {
            let restart_errors = validate_restart(&group["RestartPolicy"]);
            if !restart_errors.is_empty() {
                errors.push(multierror(&restart_errors));
            }
        }
        false => errors.push(format!("Task Group {group_name} should have a restart policy")),
    }
    if job_type != "system" {
        let reschedule_errors = validate_reschedule(&group["ReschedulePolicy"]);
        if !reschedule_errors.is_empty() {
            errors.push(multierror(&reschedule_errors));
        }
    }
    let mut seen: Vec<String> = Vec::new();
    let mut leaders = 0;
    for (i, task) in tasks.iter().enumerate() {
        let task_name = task["Name"].as_str().unwrap_or_default();
        if task_name.is_empty() {
            errors.push(format!("Task {} missing name", i + 1));
        } else if let Some(existing) = seen.iter().position(|n| n == task_name) {
            errors.push(format!("Task {} redefines '{}' from task {}", i + 1, task_name, existing + 1));
        }
        seen.push(task_name.to_owned());
        if task["Leader"].as_bool().unwrap_or(false) {
            leaders += 1;
        }
    }
    if leaders > 1 {
        errors.push("Only one task may be marked as leader".to_owned());
    }
    if let Some(volumes) = group["Volumes"].as_object() {
        for (name, volume) in volumes {
            let volume_type = volume["Type"].as_str().unwrap_or_default();
            let mut volume_errors = Vec::new();
            if !matches!(volume_type, "host" | "csi") {
                volume_errors.push(format!("volume has unrecognized type {volume_type}"));
            }
            if volume["Source"].as_str().unwrap_or_default().is_empty() {
                volume_errors.push("volume has an empty source".to_owned());
            }
            if !volume_errors.is_empty() {
                errors.push(format!("Task group volume validation for {name} failed: {}", multierror(&volume_errors)));
            }
        }
    }
    for task in &tasks {
        let task_errors = validate_task(task, group);
        if !task_errors.is_empty() {
            let task_name = task["Name"].as_str().unwrap_or_default();
            errors.push(format!("Task {task_name} validation failed: {}", multierror(&task_errors)));
        }
    }
    errors
}

fn validate_restart(policy: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let mode = policy["Mode"].as_str().unwrap_or_default();
    let attempts = policy["Attempts"].as_i64().unwrap_or(0);
    let interval = policy["Interval"].as_i64().unwrap_or(0);
    let delay = policy["Delay"].as_i64().unwrap_or(0);
    if !matches!(mode, "delay" | "fail") {
        errors.push(format!("Unsupported restart mode: {mode:?}"));
    }
    if attempts == 0 && mode != "fail" {
        errors.push(format!("Restart policy {mode:?} with {attempts} attempts is ambiguous"));
    }
    if interval < 5 * SECOND {
        errors
            .push(format!("Interval can not be less than 5s (got {})", super::duration::go_duration_string(interval)));
    }
    if attempts.saturating_mul(delay) > interval {
        errors.push(format!(
            "Nomad can't restart the TaskGroup {attempts} times in an interval of {} with a delay of {}",
            super::duration::go_duration_string(interval),
            super::duration::go_duration_string(delay)
        ));
    }
    errors
}

fn validate_reschedule(policy: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let attempts = policy["Attempts"].as_i64().unwrap_or(0);
    let unlimited = policy["Unlimited"].as_bool().unwrap_or(false);
    if !(attempts > 0 || unlimited) {
        return errors;
    }
    let interval = policy["Interval"].as_i64().unwrap_or(0);
    let delay = policy["Delay"].as_i64().unwrap_or(0);
    let max_delay = policy["MaxDelay"].as_i64().unwrap_or(0);
    let function = policy["DelayFunction"].as_str().unwrap_or_default();
    let text = super::duration::go_duration_string;
    if attempts > 0 {
        if interval <= 0 {
            errors.push("Interval must be a non zero value if Attempts > 0".to_owned());
        }
        if unlimited {
            errors.push(format!(
                "Reschedule Policy with Attempts = {attempts}, Interval = {}, and Unlimited = true is ambiguous",
                text(interval)
            ));
        }
    }
    if delay < 5 * SECOND {
        errors.push(format!("Delay cannot be less than 5s (got {})", text(delay)));
    }
    if !matches!(function, "constant" | "exponential" | "fibonacci") {
        errors.push(format!(
            "Invalid delay function {function:?}, must be one of [\"constant\" \"exponential\" \"fibonacci\"]"
        ));
    } else if function != "constant" {
        if max_delay < 5 * SECOND {
            errors.push(format!("Max Delay cannot be less than 5s (got {})", text(max_delay)));
        }
        if max_delay < delay {
            errors.push(format!("Max Delay cannot be less than Delay {} (got {})", text(delay), text(max_delay)));
        }
    }
    errors
}

fn validate_task(task: &Value, group: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let name = task["Name"].as_str().unwrap_or_default();
    if name.is_empty() {
        errors.push("Missing task name".to_owned());
    }
    if name.contains('/') || name.contains('\\') {
        errors.push("Task name cannot include slashes".to_owned());
    } else if name.contains('\0') {
        errors.push("Task name cannot include null characters".to_owned());
    }
    if task["Driver"].as_str().unwrap_or_default().is_empty() {
        errors.push("Missing task driver".to_owned());
    }
    if task["KillTimeout"].as_i64().unwrap_or(0) < 0 {
        errors.push("KillTimeout must be a positive value".to_owned());
    }
    if task["ShutdownDelay"].as_i64().unwrap_or(0) < 0 {
        errors.push("ShutdownDelay must be a positive value".to_owned());
    }
    let resources = &task["Resources"];
    let cpu = resources["CPU"].as_i64().unwrap_or(0);
    let cores = resources["Cores"].as_i64().unwrap_or(0);
    let memory = resources["MemoryMB"].as_i64().unwrap_or(0);
    let memory_max = resources["MemoryMaxMB"].as_i64().unwrap_or(0);
    if cpu < 1 && cores == 0 {
        errors.push(format!("minimum CPU value is 1; got {cpu}"));
    }
    if memory < 10 {
        errors.push(format!("minimum MemoryMB value is 10; got {memory}"));
    }
    if memory_max != 0 && memory_max < memory {
        errors.push(format!("MemoryMaxMB value ({memory_max}) should be larger than MemoryMB value ({memory})"));
    }
    for (i, constraint) in list(&task["Constraints"]).iter().enumerate() {
        if let Some(err) = validate_constraint(constraint) {
            errors.push(format!("Constraint {} validation failed: {}", i + 1, err));
        }
        let operand = constraint["Operand"].as_str().unwrap_or_default();
        if matches!(operand, "distinct_hosts" | "distinct_property") {
            errors.push(format!("Constraint {} has disallowed Operand at task level: {operand}", i + 1));
        }
    }
    for (i, template) in list(&task["Templates"]).iter().enumerate() {
        let mut template_errors = Vec::new();
        let source = template["SourcePath"].as_str().unwrap_or_default();
        let embedded = template["EmbeddedTmpl"].as_str().unwrap_or_default();
        if source.is_empty() && embedded.is_empty() {
            template_errors.push("Must specify a source path or have an embedded template".to_owned());
        }
        if template["DestPath"].as_str().unwrap_or_default().is_empty() {
            template_errors.push("Must specify a destination for the template".to_owned());
        }
        match template["ChangeMode"].as_str().unwrap_or_default() {
            "noop" | "restart" | "script" => {}
            "signal" => {
                if template["ChangeSignal"].as_str().unwrap_or_default().is_empty() {
                    template_errors.push("Must specify signal value when change mode is signal".to_owned());
                }
                if template["Envvars"].as_bool().unwrap_or(false) {
                    template_errors.push("cannot use signals with env var templates".to_owned());
                }
            }
            other => template_errors.push(format!("Invalid change mode {other:?}")),
        }
        if !template_errors.is_empty() {
            errors.push(format!("Template {} validation failed: {}", i + 1, multierror(&template_errors)));
        }
    }
    for (i, artifact) in list(&task["Artifacts"]).iter().enumerate() {
        if artifact["GetterSource"].as_str().unwrap_or_default().is_empty() {
            errors.push(format!(
                "Artifact {} validation failed: {}",
                i + 1,
                multierror(&["source must be specified".to_owned()])
            ));
        }
    }
    let volumes = group["Volumes"].as_object();
    for (i, mount) in list(&task["VolumeMounts"]).iter().enumerate() {
        let volume = mount["Volume"].as_str().unwrap_or_default();
        if volumes.is_none_or(|v| !v.contains_key(volume)) {
            errors.push(format!("Volume Mount ({i}) references undefined volume {volume}"));
        }
    }
    if let Some(hook) = task["Lifecycle"]["Hook"].as_str()
        && !matches!(hook, "prestart" | "poststart" | "poststop")
    {
        errors.push(format!("invalid hook: {hook}"));
    }
    errors
}

fn validate_constraint(constraint: &Value) -> Option<String> {
    let mut errors = Vec::new();
    let operand = constraint["Operand"].as_str().unwrap_or_default();
    let ltarget = constraint["LTarget"].as_str().unwrap_or_default();
    let rtarget = constraint["RTarget"].as_str().unwrap_or_default();
    let mut require_ltarget = true;
    if operand.is_empty() {
        errors.push("Missing constraint operand".to_owned());
    }
    match operand {
        "distinct_hosts" => require_ltarget = false,
        "set_contains" | "set_contains_all" | "set_contains_any" if rtarget.is_empty() => {
            errors.push("Set contains constraint requires an RTarget".to_owned());
        }
        "regexp" => {
            if let Err(err) = regex::Regex::new(rtarget) {
                errors.push(format!("Regular expression failed to compile: {err}"));
            }
        }
        "is_set" | "is_not_set" if !rtarget.is_empty() => {
            errors.push(format!("Operator {operand:?} does not support an RTarget"));
        }
        "=" | "==" | "is" | "!=" | "not" | "<" | "<=" | ">" | ">=" if rtarget.is_empty() => {
            errors.push(format!("Operator {operand:?} requires an RTarget"));
        }
        "" => {}
        other if !OPERANDS.contains(&other) => errors.push(format!("Unknown constraint type {other:?}")),
        _ => {}
    }
    if require_ltarget && ltarget.is_empty() {
        errors.push("No LTarget provided but is required by constraint".to_owned());
    }
    (!errors.is_empty()).then(|| multierror(&errors))
}

/// The parts of a job that make it a different version: everything but what the server sets.
pub(crate) fn spec_of(job: &Value) -> Value {
    let mut spec = job.clone();
    if let Some(map) = spec.as_object_mut() {
        for key in [
            "Status",
            "StatusDescription",
            "Stable",
            "Version",
            "SubmitTime",
            "CreateIndex",
            "ModifyIndex",
            "JobModifyIndex",
            "NomadTokenID",
        ] {
            map.remove(key);
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_job() -> Value {
        json!({"ID": "j", "Type": "batch", "TaskGroups": [{"Name": "g", "Tasks": [
            {"Name": "t", "Driver": "docker", "Config": {"image": "x"}}
        ]}]})
    }

    #[test]
    fn applies_batch_defaults() {
        let job = canonicalize(&batch_job(), "default").unwrap();
        assert_eq!(job["Name"], "j");
        assert_eq!(job["Priority"], 50);
        assert_eq!(job["Datacenters"], json!(["*"]));
        assert_eq!(job["Meta"], Value::Null);
        let group = &job["TaskGroups"][0];
        assert_eq!(group["Count"], 1);
        assert_eq!(group["RestartPolicy"]["Attempts"], 3);
        assert_eq!(group["ReschedulePolicy"]["Attempts"], 1);
        assert_eq!(group["Update"], Value::Null);
        let task = &group["Tasks"][0];
        assert_eq!(task["KillTimeout"], 5_000_000_000i64);
        assert_eq!(task["Resources"]["CPU"], 100);
        assert_eq!(task["Resources"]["MemoryMB"], 300);
        assert_eq!(task["RestartPolicy"], group["RestartPolicy"]);
        assert!(validate(&job).is_none());
    }

    #[test]
    fn a_missing_driver_is_a_nested_multierror() {
        let mut raw = batch_job();
        raw["TaskGroups"][0]["Tasks"][0]["Driver"] = json!("");
        let job = canonicalize(&raw, "default").unwrap();
        assert_eq!(
            validate(&job).unwrap(),
            "1 error occurred:\n\t* Task group g validation failed: 1 error occurred:\n\t* Task t validation \
             failed: 1 error occurred:\n\t* Missing task driver\n\n\n\n\n\n"
        );
    }

    #[test]
    fn a_wrong_type_is_a_decode_error() {
        let mut raw = batch_job();
        raw["TaskGroups"][0]["Tasks"][0]["KillTimeout"] = json!("5s");
        let err = canonicalize(&raw, "default").unwrap_err();
        assert!(err.0.contains("cannot unmarshal string"), "{}", err.0);
    }
}
