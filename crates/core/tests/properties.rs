//! Properties of what jobforge reads from callers and from tools, on generated input:
//!
//! - validation answers any JSON (arbitrary values of bounded depth, objects over the required
//!   fields, and mutations of a complete valid config) without panicking; every refusal names a
//!   field, and what it accepts holds no control character outside test commands, nothing a
//!   tool would read as an option, no path leading out of the repository, and survives its
//!   stored form unchanged;
//! - the masker never lets a secret (or its base64 form) through, masks each line of a
//!   multi-line secret in output read line by line, as the pump reads it, and masks both
//!   pieces of a value split over two lines;
//! - the failure diagnosis reads any log, Dockerfile and checkout without panicking, quotes
//!   only text the run printed (or the failure's own message), keeps its excerpt and tail to
//!   their bounds, and points only at lines the Dockerfile has.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Map, Value, json};

use jobforge_core::config::JobSpec;
use jobforge_core::diagnose::{Checkout, EXCERPT_LINES, Evidence, diagnose};
use jobforge_core::failure::{Failure, FailureReason};
use jobforge_core::logs::LogLine;
use jobforge_core::mask::Masker;
use jobforge_core::validate::{Problem, job_spec};
use jobforge_core::{Phase, Stream, Timestamp};

// ---------------------------------------------------------------------------------------------
// Validation

/// Every field name validation knows, at any depth: generated objects use them often, so the
/// values get past "unknown field" into the checks of each field.
const FIELDS: &[&str] = &[
    "owner",
    "repo_url",
    "git_ref",
    "git_credentials_path",
    "dockerfile_path",
    "context",
    "build_args",
    "image_name",
    "image_tags",
    "registry_url",
    "registry_credentials_path",
    "test_commands",
    "test_entry_point",
    "resource_limits",
    "build_timeout",
    "test_timeout",
    "webhook_url",
    "webhook_secret",
    "webhook_on_success",
    "webhook_on_failure",
    "webhook_headers",
    "clear_cache",
    "test",
    "commands",
    "entry_point",
    "timeout",
    "env",
    "vault_secrets",
    "vault_policies",
    "constraints",
    "gpu_required",
    "cpu",
    "memory",
    "disk",
    "build",
    "publish",
    "path",
    "fields",
    "attribute",
    "operand",
    "value",
];

/// Values that are valid somewhere, and values built to break something.
const PIECES: &[&str] = &[
    "main",
    "v1",
    "team/app",
    "Dockerfile",
    "127.0.0.1:5000",
    "https://git.example.com/team/app.git",
    "git@git.example.com:team/app.git",
    "file:///srv/git/app",
    "https://hooks.example.com/x",
    "git/app",
    "30m",
    "2GB",
    "1000",
    "is_set",
    "-x",
    "--upload-pack=touch /tmp/x",
    "..",
    "../..",
    "/etc/passwd",
    "a/../../b",
    "$(id)",
    "`id`",
    "${IFS}",
    "; rm -rf /",
    "a\nb",
    "\r\n",
    "\u{0}",
    "\u{1b}[31m",
    "\u{7f}",
    "\u{85}",
    "\u{202e}",
    "@{-1}",
    "x.lock",
    "A=B",
    "1e400",
    "-5m",
    "18446744073709551616",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(PIECES).prop_map(str::to_owned),
        2 => ".{0,24}",
        1 => "(?s).{0,8}",
        1 => (select(PIECES), ".{0,6}", select(PIECES)).prop_map(|(a, b, c)| format!("{a}{b}{c}")),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => select(FIELDS).prop_map(str::to_owned), 1 => text()]
}

fn object_of<S: Strategy<Value = Value>>(values: S, size: usize) -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), values), 0..size).prop_map(|entries| Value::Object(entries.into_iter().collect()))
}

/// Any JSON value, at most 5 levels deep and about 100 nodes.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array), object_of(inner, 8)]
    })
}

/// A config that sets every field, all valid.
fn complete() -> Value {
    json!({
        "owner": "team-a",
        "repo_url": "https://git.example.com/team/app.git",
        "git_ref": "main",
        "git_credentials_path": "git/app",
        "dockerfile_path": "docker/Dockerfile",
        "context": "app",
        "build_args": {"VERSION": "1.2", "N": 3, "DEBUG": false},
        "image_name": "team/app",
        "image_tags": ["v1", "latest"],
        "registry_url": "registry.example.com:5000/ns",
        "registry_credentials_path": "registry/app",
        "build_timeout": "30m",
        "resource_limits": {"cpu": 1000, "memory": "2GB", "build": {"disk": 4096}, "publish": {"cpu": "1GHz"}},
        "webhook_url": "https://hooks.example.com/x",
        "webhook_secret": "s3cret-hook",
        "webhook_headers": {"X-Team": "a"},
        "webhook_on_failure": true,
        "clear_cache": false,
        "test": {
            "commands": ["make test", "set -e\n\t./check"],
            "timeout": 600,
            "env": {"MODE": "ci"},
            "vault_secrets": [{"path": "app/db", "fields": {"password": "DB_PASSWORD"}}],
            "vault_policies": ["app/db"],
            "constraints": [{"attribute": "${attr.kernel.name}", "value": "linux"}, {"attribute": "x", "operand": "is_set"}],
            "gpu_required": false,
            "resource_limits": {"memory": 512},
        },
    })
}

/// One step into a JSON document.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    At(usize),
}

/// The path of every node of `value`, the root's (empty) first.
fn paths(value: &Value) -> Vec<Vec<Step>> {
    fn walk(value: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        out.push(here.clone());
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    here.push(Step::Key(k.clone()));
                    walk(v, here, out);
                    here.pop();
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    here.push(Step::At(i));
                    walk(v, here, out);
                    here.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn node_mut<'a>(mut value: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    for step in path {
        value = match (value, step) {
            (Value::Object(map), Step::Key(k)) => map.get_mut(k)?,
            (Value::Array(items), Step::At(i)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// One change to a document, its targets chosen among the nodes it has when applied.
#[derive(Clone, Debug)]
enum Mutation {
    /// The value at a node becomes another one.
    Replace(Index, Value),
    /// A node goes.
    Remove(Index),
    /// An object gets a field (or one of its fields a new value).
    Insert(Index, String, Value),
    /// A string gets text inserted at a character position.
    Splice(Index, Index, String),
    /// A string is cut at a character position.
    Cut(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let index = any::<Index>;
    prop_oneof![
        2 => (index(), json_value()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        1 => index().prop_map(Mutation::Remove),
        2 => (index(), key(), json_value()).prop_map(|(at, k, v)| Mutation::Insert(at, k, v)),
        4 => (index(), index(), text()).prop_map(|(at, pos, t)| Mutation::Splice(at, pos, t)),
        1 => (index(), index()).prop_map(|(at, pos)| Mutation::Cut(at, pos)),
    ]
}

fn apply(doc: &mut Value, mutation: Mutation) {
    let all = paths(doc);
    let of_kind = |keep: fn(&Value) -> bool| -> Vec<Vec<Step>> {
        all.iter().filter(|p| node_at(doc, p).is_some_and(keep)).cloned().collect()
    };
    let (objects, strings) = (of_kind(Value::is_object), of_kind(Value::is_string));
    let below_root = &all[1..];
    match mutation {
        Mutation::Replace(at, value) if !below_root.is_empty() => {
            if let Some(node) = node_mut(doc, at.get::<Vec<Step>>(below_root)) {
                *node = value;
            }
        }
        Mutation::Remove(at) if !below_root.is_empty() => {
            let mut target = at.get(below_root).clone();
            let last = target.pop();
            match (node_mut(doc, &target), last) {
                (Some(Value::Object(map)), Some(Step::Key(k))) => {
                    map.remove(&k);
                }
                (Some(Value::Array(items)), Some(Step::At(i))) if i < items.len() => {
                    items.remove(i);
                }
                _ => {}
            }
        }
        Mutation::Insert(at, key, value) if !objects.is_empty() => {
            if let Some(Value::Object(map)) = node_mut(doc, at.get::<Vec<Step>>(&objects)) {
                map.insert(key, value);
            }
        }
        Mutation::Splice(at, pos, text) if !strings.is_empty() => {
            if let Some(Value::String(s)) = node_mut(doc, at.get::<Vec<Step>>(&strings)) {
                *s = embed(s, pos, &text);
            }
        }
        Mutation::Cut(at, pos) if !strings.is_empty() => {
            if let Some(Value::String(s)) = node_mut(doc, at.get::<Vec<Step>>(&strings)) {
                *s = cut(s, pos);
            }
        }
        _ => {}
    }
}

fn node_at<'a>(mut value: &'a Value, path: &[Step]) -> Option<&'a Value> {
    for step in path {
        value = match (value, step) {
            (Value::Object(map), Step::Key(k)) => map.get(k)?,
            (Value::Array(items), Step::At(i)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Every string in a stored spec, keys included, with the field it is under.
fn strings<'a>(value: &'a Value, field: &str, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) => out.push((field.to_owned(), s)),
        Value::Array(items) => items.iter().for_each(|item| strings(item, field, out)),
        Value::Object(map) => {
            for (k, v) in map {
                let inner = if field.is_empty() { k.clone() } else { format!("{field}.{k}") };
                out.push((inner.clone(), k));
                strings(v, &inner, out);
            }
        }
        _ => {}
    }
}

/// What every answer of validation must be.
fn check_answer(input: &Value, answer: Result<JobSpec, Vec<Problem>>) -> Result<(), TestCaseError> {
    let mut spec = match answer {
        Err(problems) => {
            prop_assert!(!problems.is_empty(), "a refusal without a problem for {input}");
            // Only a field named "" (unknown, at the top) is named by the empty path.
            let empty_key = input.as_object().is_some_and(|map| map.contains_key(""));
            for problem in &problems {
                prop_assert!(!problem.message.is_empty(), "{problem:?}");
                prop_assert!(!problem.field.is_empty() || empty_key, "a problem names no field: {problem:?}");
                prop_assert!(problem.field.len() <= 300, "a problem's field is bounded: {problem:?}");
            }
            return Ok(());
        }
        Ok(spec) => spec,
    };
    for named in [spec.repo_url.as_str(), spec.git_ref.as_str()] {
        prop_assert!(!named.starts_with('-'), "{named:?} would read as an option");
    }
    if let Some((host, _)) = spec.repo_url.host() {
        prop_assert!(!host.starts_with('-'), "the host of {} would read as an option", spec.repo_url);
    }
    for path in [spec.dockerfile_path.as_str(), spec.context.as_str()] {
        prop_assert!(!path.starts_with('/'), "{path:?} is absolute");
        prop_assert!(
            path.split('/').all(|part| part != ".." && !part.starts_with('-')),
            "{path:?} leads out or reads as an option"
        );
    }
    for tag in &spec.image_tags {
        prop_assert!(!tag.as_str().starts_with(['-', '.']), "tag {tag}");
    }
    let stored = serde_json::to_value(&spec).expect("a spec serializes");
    let mut found = Vec::new();
    strings(&stored, "", &mut found);
    for (field, s) in found {
        let allowed = |c: char| field == "test_commands" && matches!(c, '\n' | '\t' | '\r');
        prop_assert!(!s.chars().any(|c| c.is_control() && !allowed(c)), "{field}: {s:?} holds a control character");
    }
    let back: JobSpec = serde_json::from_value(stored).map_err(|e| TestCaseError::fail(format!("stored form: {e}")))?;
    // The webhook's secret is held in memory only, never in the stored form.
    if let Some(webhook) = spec.webhook.as_mut() {
        webhook.secret = None;
    }
    prop_assert_eq!(back, spec);
    Ok(())
}

fn required() -> Map<String, Value> {
    let base = json!({
        "repo_url": "https://git.example.com/team/app.git",
        "image_name": "team/app",
        "registry_url": "127.0.0.1:5000",
    });
    base.as_object().cloned().unwrap_or_default()
}

#[test]
fn the_config_the_mutations_start_from_is_valid() {
    let spec = job_spec(&complete()).unwrap();
    assert_eq!(spec.tests().len(), 2);
    assert!(spec.webhook.is_some() && !spec.test.vault_secrets.is_empty() && !spec.build_args.is_empty());
}

proptest! {
    #[test]
    fn validation_answers_any_json_value(input in json_value()) {
        let answer = job_spec(&input);
        check_answer(&input, answer)?;
    }

    #[test]
    fn validation_answers_any_fields_next_to_the_required_ones(extra in object_of(json_value(), 12)) {
        let mut input = required();
        input.extend(extra.as_object().cloned().unwrap_or_default());
        let input = Value::Object(input);
        let answer = job_spec(&input);
        check_answer(&input, answer)?;
    }

    #[test]
    fn validation_answers_any_mutation_of_a_valid_config(mutations in prop::collection::vec(mutation(), 1..6)) {
        let mut input = complete();
        for mutation in mutations {
            apply(&mut input, mutation);
        }
        let answer = job_spec(&input);
        check_answer(&input, answer)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Masking

/// The shortest piece of a split value the masker promises to mask.
const PIECE: usize = 6;

/// A printable secret of at least 4 characters. `*` is left out: the mask is `***`, so text
/// around a masked value holding `*` could spell the value again without revealing anything.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof!["[ -)+-~]{4,32}", "[^*\\p{C}]{4,12}"]
}

/// A secret long enough that either piece of it split in two is one the masker masks.
fn split_secret() -> impl Strategy<Value = String> {
    prop_oneof!["[ -)+-~]{12,32}", "[^*\\p{C}]{12,16}"]
}

/// A line of a multi-line secret: at least 4 printable characters, none blank at its ends.
fn secret_line() -> impl Strategy<Value = String> {
    "[!-)+-~][ -)+-~]{2,20}[!-)+-~]"
}

fn output() -> impl Strategy<Value = String> {
    prop_oneof!["(?s).{0,64}", "[ -~\n]{0,64}", "[a-zA-Z0-9+/=]{0,32}"]
}

/// The character positions of `text`, its end included.
fn bounds(text: &str) -> Vec<usize> {
    text.char_indices().map(|(i, _)| i).chain([text.len()]).collect()
}

/// `text` with `inserted` at a character position chosen by `at`.
fn embed(text: &str, at: Index, inserted: &str) -> String {
    let at = *at.get(&bounds(text));
    format!("{}{inserted}{}", &text[..at], &text[at..])
}

/// `text` up to a character position chosen by `at`.
fn cut(text: &str, at: Index) -> String {
    text[..*at.get(&bounds(text))].to_owned()
}

proptest! {
    #[test]
    fn a_secret_never_survives_masking(secret in secret(), around in output(), at in any::<Index>(), others in prop::collection::vec(secret(), 0..3)) {
        let masker = Masker::from_strs(others.iter().map(String::as_str).chain([secret.as_str()]));
        let masked = masker.mask(&embed(&around, at, &secret));
        prop_assert!(!masked.contains(&secret), "{secret:?} survives in {masked:?}");
        // Twice in a row, and overlapping itself, it is still masked.
        let twice = masker.mask(&embed(&around, at, &format!("{secret}{secret}")));
        prop_assert!(!twice.contains(&secret), "{secret:?} survives in {twice:?}");
    }

    #[test]
    fn a_secret_in_base64_never_survives_masking(secret in secret(), around in output(), at in any::<Index>()) {
        let masker = Masker::from_strs([secret.as_str()]);
        for encoded in [STANDARD.encode(&secret), STANDARD_NO_PAD.encode(&secret)] {
            let masked = masker.mask(&embed(&around, at, &encoded));
            prop_assert!(!masked.contains(&encoded), "{encoded:?} ({secret:?}) survives in {masked:?}");
        }
    }

    /// A line cut at its length limit, or base64 wrapped at 76 columns, leaves a value split
    /// over two lines: the start of it that ends the first line and the end of it that starts
    /// the next are masked (each when it is long enough to tell from ordinary text), so the
    /// lines read together never hold it.
    #[test]
    fn a_secret_split_over_two_lines_is_masked_on_both(
        secret in split_secret(), before in output(), after in output(), at in any::<Index>(), encoded in any::<bool>(),
    ) {
        let masker = Masker::from_strs([secret.as_str()]);
        let value = if encoded { STANDARD.encode(&secret) } else { secret.clone() };
        let cuts: Vec<usize> = bounds(&value).into_iter().filter(|&i| i > 0 && i < value.len()).collect();
        let (head, tail) = value.split_at(*at.get(&cuts));
        let first = masker.mask(&format!("{}{head}", before.lines().last().unwrap_or_default()));
        let second = masker.mask(&format!("{tail}{}", after.lines().next().unwrap_or_default()));
        prop_assert!(head.len() < PIECE || !first.ends_with(head), "{head:?} ends {first:?}");
        prop_assert!(tail.len() < PIECE || !second.starts_with(tail), "{tail:?} starts {second:?}");
        prop_assert!(!format!("{first}{second}").contains(&value), "{value:?} in {first:?} + {second:?}");
    }

    /// Output is masked line by line, so a multi-line secret (a key) is spread over lines:
    /// each of its lines is masked wherever it lands.
    #[test]
    fn each_line_of_a_multiline_secret_is_masked_in_output_read_line_by_line(
        lines in prop::collection::vec(secret_line(), 2..5), around in output(), at in any::<Index>(),
    ) {
        let secret = lines.join("\n");
        let masker = Masker::from_strs([secret.as_str()]);
        let text = embed(&around, at, &secret);
        for line in text.lines() {
            let masked = masker.mask(line);
            for part in &lines {
                prop_assert!(!masked.contains(part.as_str()), "{part:?} survives in line {masked:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Diagnosis

/// One failure recorded from the real tools: its log and the Dockerfile of its checkout.
#[derive(Clone, Debug)]
struct Failed {
    lines: Vec<(Stream, String)>,
    dockerfile: Option<String>,
}

/// The failures recorded from real tools (`src/diagnose/testdata`), the seeds of generated
/// evidence.
struct Recorded {
    failures: Vec<Failed>,
    lines: Vec<(Stream, String)>,
    dockerfiles: Vec<String>,
}

static RECORDED: LazyLock<Recorded> = LazyLock::new(|| {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/diagnose/testdata");
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let failures: Vec<Failed> = logs
        .iter()
        .map(|log| {
            let lines = std::fs::read_to_string(log).unwrap().lines().map(row).collect();
            Failed { lines, dockerfile: std::fs::read_to_string(log.with_extension("Dockerfile")).ok() }
        })
        .collect();
    let lines = failures.iter().flat_map(|f| f.lines.iter().cloned()).collect::<Vec<_>>();
    let dockerfiles = failures.iter().filter_map(|f| f.dockerfile.clone()).collect::<Vec<_>>();
    assert!(failures.len() > 10 && lines.len() > 100 && !dockerfiles.is_empty(), "the recorded output is there");
    Recorded { failures, lines, dockerfiles }
});

/// A recorded row: `out|`, `err|` or `sys|` (a test's index after it), then the line.
fn row(row: &str) -> (Stream, String) {
    let (tag, text) = row.split_once("| ").unwrap_or((row.trim_end_matches('|'), ""));
    let stream = match tag.get(..3) {
        Some("out") => Stream::Stdout,
        Some("err") => Stream::Stderr,
        _ => Stream::System,
    };
    (stream, text.to_owned())
}

/// A change to a recorded log.
#[derive(Clone, Debug)]
enum LineEdit {
    Splice(Index, Index, String),
    Cut(Index, Index),
    Insert(Index, (Stream, String)),
    Remove(Index),
}

fn line_edit() -> impl Strategy<Value = LineEdit> {
    prop_oneof![
        (any::<Index>(), any::<Index>(), log_text()).prop_map(|(at, pos, t)| LineEdit::Splice(at, pos, t)),
        (any::<Index>(), any::<Index>()).prop_map(|(at, pos)| LineEdit::Cut(at, pos)),
        (any::<Index>(), log_line()).prop_map(|(at, line)| LineEdit::Insert(at, line)),
        any::<Index>().prop_map(LineEdit::Remove),
    ]
}

fn edit(lines: &mut Vec<(Stream, String)>, edit: LineEdit) {
    if lines.is_empty() {
        return;
    }
    match edit {
        LineEdit::Splice(at, pos, text) => {
            let line = at.get_mut(lines);
            line.1 = embed(&line.1, pos, &text);
        }
        LineEdit::Cut(at, pos) => {
            let line = at.get_mut(lines);
            line.1 = cut(&line.1, pos);
        }
        LineEdit::Insert(at, line) => lines.insert(at.index(lines.len() + 1), line),
        LineEdit::Remove(at) => {
            lines.remove(at.index(lines.len()));
        }
    }
}

/// Words the diagnosis looks for, to put in generated lines.
const SIGNS: &[&str] = &[
    "$ git -C . fetch --depth 1 --no-tags origin main",
    "$ buildah --root /x bud --file Dockerfile .",
    "$ podman run --rm img sh -c x",
    "$ skopeo copy docker://a docker://b",
    "$ buildah push x",
    "$ buildah pull x",
    "$ ",
    "==> fetching main from x",
    "==> branches of x",
    "==> buildah bud Dockerfile",
    "==> pushing x",
    "==> pulling x",
    "==> ",
    "STEP 1/3: FROM alpine",
    "[2/2] STEP 2/3: RUN false",
    "[",
    "] STEP ",
    "STEP 0/0: ",
    "Error: ",
    "Error: building at STEP \"RUN x\": exit status 127",
    ": exit status ",
    "couldn't find remote ref ",
    "refs/heads/",
    "Authentication failed",
    "Unknown instruction: \"",
    " &imagebuilder",
    "dockerfile_path: ",
    "context: ",
    " does not exist in the repository",
    "(through a symbolic link)",
    "nomad: Driver Failure",
    "placement",
    "Trying to pull",
    "initializing source",
    "executable file not found",
    "\"sh\"",
    "no space left on device",
    "stat: \"",
    "checking on sources",
    "no such file or directory",
    "short-name",
    "no contents",
    "creating build container",
    "--> ",
    "time=\"",
    "ünïcødé ✓",
];

fn stream() -> impl Strategy<Value = Stream> {
    prop_oneof![Just(Stream::Stdout), Just(Stream::Stderr), Just(Stream::System)]
}

fn log_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![2 => select(SIGNS).prop_map(str::to_owned), 1 => ".{0,12}"];
    prop_oneof![
        1 => prop::collection::vec(piece, 0..4).prop_map(|p| p.concat()),
        1 => ".{0,40}",
    ]
}

/// A recorded line, or one cut or spliced from one, or one made of the diagnosis's words.
fn log_line() -> impl Strategy<Value = (Stream, String)> {
    let recorded = || select(RECORDED.lines.clone());
    prop_oneof![
        3 => recorded(),
        2 => (recorded(), any::<Index>(), log_text()).prop_map(|((s, t), at, more)| (s, embed(&t, at, &more))),
        1 => (recorded(), any::<Index>()).prop_map(|((s, t), at)| (s, cut(&t, at))),
        2 => (stream(), log_text()),
    ]
}

fn dockerfile() -> impl Strategy<Value = String> {
    let recorded = || select(RECORDED.dockerfiles.clone());
    let line = prop_oneof![
        select(&["FROM alpine", "RUN false \\", "# escape=`", "RUN <<EOF", "EOF", "COPY a b", "", "# c", "`"][..])
            .prop_map(str::to_owned),
        ".{0,20}",
    ];
    prop_oneof![
        2 => recorded(),
        2 => (recorded(), any::<Index>(), log_text()).prop_map(|(t, at, more)| embed(&t, at, &more)),
        2 => prop::collection::vec(line, 0..12).prop_map(|l| l.join("\n")),
    ]
}

fn files() -> impl Strategy<Value = Vec<String>> {
    let file = prop_oneof![
        select(
            &["Dockerfile", "Dockerfile.dev", "src/", "src/main.c", "hello.txt", ".dockerignore", "app/Containerfile"]
                [..]
        )
        .prop_map(str::to_owned),
        ".{0,12}",
    ];
    prop::collection::vec(file, 0..8)
}

fn checkout() -> impl Strategy<Value = Option<Checkout>> {
    proptest::option::of(
        (proptest::option::of(dockerfile()), files()).prop_map(|(dockerfile, files)| Checkout { dockerfile, files }),
    )
}

/// The log and checkout of a failure: lines from anywhere, or a recorded failure edited.
fn evidence() -> impl Strategy<Value = (Vec<(Stream, String)>, Option<Checkout>)> {
    let recorded =
        (select(RECORDED.failures.clone()), prop::collection::vec(line_edit(), 0..4), files(), any::<bool>()).prop_map(
            |(failed, edits, files, with_checkout)| {
                let mut lines = failed.lines;
                edits.into_iter().for_each(|e| edit(&mut lines, e));
                (lines, with_checkout.then_some(Checkout { dockerfile: failed.dockerfile, files }))
            },
        );
    prop_oneof![(prop::collection::vec(log_line(), 0..40), checkout()), recorded]
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![3 => Just(Phase::Build), 2 => Just(Phase::Test), 1 => Just(Phase::Publish)]
}

fn reason() -> impl Strategy<Value = FailureReason> {
    prop_oneof![
        8 => Just(FailureReason::ExitCode),
        1 => Just(FailureReason::Timeout),
        1 => Just(FailureReason::Interrupted),
        1 => Just(FailureReason::Backend),
        1 => Just(FailureReason::Registry),
        1 => Just(FailureReason::Secret),
        1 => Just(FailureReason::Killed),
    ]
}

fn exit_code() -> impl Strategy<Value = Option<i32>> {
    proptest::option::of(prop_oneof![select(&[1, 2, 125, 126, 127, 137][..]), any::<i32>()])
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        select(&["Dockerfile", "Dockerfile.missing", "docker/Dockerfile", ".", "app"][..]).prop_map(str::to_owned),
        ".{0,16}"
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn the_diagnosis_reads_any_log_and_quotes_only_what_was_printed(
        (lines, checkout) in evidence(),
        phase in phase(), reason in reason(), exit_code in exit_code(), test in proptest::option::of(0u32..4),
        message in log_text(), dockerfile_path in name(), context in name(),
        credentials in any::<(bool, bool)>(), tail_lines in 0usize..50,
    ) {
        let lines: Vec<LogLine> = lines
            .into_iter()
            .enumerate()
            .map(|(i, (stream, text))| LogLine { seq: i as u64 + 1, ts: Timestamp::now(), phase, test, stream, text })
            .collect();
        let mut failure = Failure::new(phase, reason, message.clone());
        failure.exit_code = exit_code;
        failure.test = test;
        let evidence = Evidence {
            failure: &failure,
            lines: &lines,
            checkout: checkout.as_ref(),
            dockerfile_path: &dockerfile_path,
            context: &context,
            git_credentials: credentials.0,
            registry_credentials: credentials.1,
            tail_lines,
        };
        let diagnosis = diagnose(&evidence);

        prop_assert!(diagnosis.excerpt.len() <= EXCERPT_LINES);
        for quoted in &diagnosis.excerpt {
            let printed = lines.iter().any(|l| l.text.contains(quoted.as_str())) || message.contains(quoted.as_str());
            prop_assert!(printed && !quoted.trim().is_empty(), "the excerpt quotes {quoted:?}, which no line holds");
        }
        let own: Vec<&str> = lines.iter().filter(|l| l.stream != Stream::System).map(|l| l.text.as_str()).collect();
        prop_assert_eq!(&diagnosis.log_tail, &own[own.len().saturating_sub(tail_lines)..].to_vec());
        if let Some(spot) = &diagnosis.dockerfile {
            let text = checkout.as_ref().and_then(|c| c.dockerfile.as_deref());
            let count = text.map_or(0, |t| t.lines().count());
            prop_assert!(spot.line >= 1 && spot.line as usize <= count, "line {} of a {count}-line Dockerfile", spot.line);
            prop_assert_eq!(&spot.path, &dockerfile_path);
        }
        let mut failed = failure.clone();
        diagnosis.apply(&mut failed);
        prop_assert_eq!(failed.phase, phase);
    }
}
