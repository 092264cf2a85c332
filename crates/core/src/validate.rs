//! Validation: from the JSON a caller sent to a [`JobSpec`], or to the list of every problem.
//!
//! Fields are taken one by one from the object, so one bad field never hides another, and what
//! is left at the end is reported as unknown. Each [`Problem`] names the field by its full path
//! (`test.env.FOO`) and says the rule it broke.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{
    Constraint, EnvName, GitRef, JobSpec, RelPath, RepoUrl, ResourceLimits, Resources, TestOptions, VaultSecret,
    Webhook,
};
use crate::duration::Duration;
use crate::image::{RegistryUrl, Repository, Tag};
use crate::secret::SecretPath;

/// Most tests a job may ask for.
pub const MAX_TEST_COMMANDS: usize = 50;
/// Longest test command, in bytes.
pub const MAX_COMMAND_LEN: usize = 32 * 1024;
/// Longest timeout a job may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Largest request body the API accepts.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_TAGS: usize = 50;
const MAX_MAP_ENTRIES: usize = 100;
const MAX_STRING: usize = 8 * 1024;

/// One thing wrong with a request: the field (a dotted path) and the rule it broke.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { field: field.into(), message: message.into() }
    }
}

/// Check a submitted job config. On success every field holds a valid value or its default.
pub fn job_spec(input: &Value) -> Result<JobSpec, Vec<Problem>> {
    let mut v = Validator::default();
    let Some(map) = input.as_object() else {
        return Err(vec![Problem::new("body", "must be a JSON object holding the job config")]);
    };
    let mut obj = Obj { prefix: String::new(), map: map.clone() };

    let owner = v.opt_string(&mut obj, "owner", 256);
    let repo_url = v.required(&mut obj, "repo_url", repo_url);
    let git_ref = v.opt(&mut obj, "git_ref", git_ref).unwrap_or_else(|| GitRef("main".into()));
    let git_credentials_path = v.opt(&mut obj, "git_credentials_path", secret_path);
    let dockerfile_path = v.opt(&mut obj, "dockerfile_path", rel_path).unwrap_or_else(|| RelPath("Dockerfile".into()));
    let context = v.opt(&mut obj, "context", rel_path).unwrap_or_else(RelPath::root);
    let build_args = v.opt(&mut obj, "build_args", |v, f, val| v.env_map(f, val, false)).unwrap_or_default();
    let image_name = v.required(&mut obj, "image_name", |v, f, val| v.parsed::<Repository>(f, val));
    let image_tags = v.opt(&mut obj, "image_tags", image_tags).unwrap_or_default();
    let registry_url = v.required(&mut obj, "registry_url", |v, f, val| v.parsed::<RegistryUrl>(f, val));
    let registry_credentials_path = v.opt(&mut obj, "registry_credentials_path", secret_path);
    let flat_commands = v.opt(&mut obj, "test_commands", test_commands);
    let flat_entry_point = v.opt(&mut obj, "test_entry_point", |v, f, val| v.boolean(f, val));
    let resource_limits = v.opt(&mut obj, "resource_limits", resource_limits).unwrap_or_default();
    let build_timeout = v.opt(&mut obj, "build_timeout", timeout);
    let flat_test_timeout = v.opt(&mut obj, "test_timeout", timeout);
    let webhook = webhook(&mut v, &mut obj);
    let clear_cache = v.opt(&mut obj, "clear_cache", |v, f, val| v.boolean(f, val)).unwrap_or(false);

    let nested = v.opt(&mut obj, "test", test_object).unwrap_or_default();
    v.unknown(obj);

    let test_commands = v.either("test_commands", flat_commands, "test.commands", nested.commands);
    let test_entry_point = v.either("test_entry_point", flat_entry_point, "test.entry_point", nested.entry_point);
    let test_timeout = v.either("test_timeout", flat_test_timeout, "test.timeout", nested.timeout);
    let test_commands = test_commands.unwrap_or_default();
    let test_entry_point = test_entry_point.unwrap_or(false);
    if test_commands.len() + usize::from(test_entry_point) > MAX_TEST_COMMANDS {
        v.problem("test_commands", format!("at most {MAX_TEST_COMMANDS} tests may run per job"));
    }

    // A required field without a value always comes with a problem.
    let (Some(repo_url), Some(image_name), Some(registry_url), true) =
        (repo_url, image_name, registry_url, v.problems.is_empty())
    else {
        return Err(v.problems);
    };
    Ok(JobSpec {
        owner,
        repo_url,
        git_ref,
        git_credentials_path,
        dockerfile_path,
        context,
        build_args,
        image_name,
        image_tags,
        registry_url,
        registry_credentials_path,
        test_commands,
        test_entry_point,
        test: nested.options,
        resource_limits,
        build_timeout,
        test_timeout,
        webhook,
        clear_cache,
    })
}

/// An object being taken apart, with the path of its fields.
struct Obj {
    prefix: String,
    map: Map<String, Value>,
}

impl Obj {
    fn field(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    fn nested(field: &str, map: &Map<String, Value>) -> Obj {
        Obj { prefix: format!("{field}."), map: map.clone() }
    }
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

type Check<T> = fn(&mut Validator, &str, &Value) -> Option<T>;

impl Validator {
    fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(field, message));
    }

    /// Take an optional field; `null` counts as absent.
    fn opt<T>(
        &mut self,
        obj: &mut Obj,
        key: &str,
        check: impl FnOnce(&mut Self, &str, &Value) -> Option<T>,
    ) -> Option<T> {
        match obj.map.remove(key) {
            None | Some(Value::Null) => None,
            Some(value) => check(self, &obj.field(key), &value),
        }
    }

    fn required<T>(
        &mut self,
        obj: &mut Obj,
        key: &str,
        check: impl FnOnce(&mut Self, &str, &Value) -> Option<T>,
    ) -> Option<T> {
        let field = obj.field(key);
        match obj.map.remove(key) {
            None | Some(Value::Null) => {
                self.problem(field, "is required");
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.problem(field, "is required and must not be empty");
                None
            }
            Some(value) => check(self, &field, &value),
        }
    }

    fn unknown(&mut self, obj: Obj) {
        for key in obj.map.keys() {
            let shown: String = key.chars().take(64).collect();
            self.problem(obj.field(&shown), "is not a known field");
        }
    }

    /// The flat seed field or its nested alias, not both.
    fn either<T>(&mut self, flat: &str, a: Option<T>, nested: &str, b: Option<T>) -> Option<T> {
        match (a, b) {
            (Some(_), Some(_)) => {
                self.problem(nested, format!("is an alias of {flat}: give one or the other, not both"));
                None
            }
            (a, b) => a.or(b),
        }
    }

    fn string(&mut self, field: &str, value: &Value, max: usize, multiline: bool) -> Option<String> {
        let Some(s) = value.as_str() else {
            self.problem(field, format!("must be a string, not {}", kind(value)));
            return None;
        };
        if s.len() > max {
            self.problem(field, format!("is longer than {max} bytes"));
            return None;
        }
        let allowed = |c: char| multiline && (c == '\n' || c == '\t' || c == '\r');
        if let Some(c) = s.chars().find(|&c| c.is_control() && !allowed(c)) {
            let what = if multiline { " (only newline and tab are allowed)" } else { "" };
            self.problem(field, format!("must not contain control characters{what}: found {c:?}"));
            return None;
        }
        Some(s.to_owned())
    }

    fn opt_string(&mut self, obj: &mut Obj, key: &str, max: usize) -> Option<String> {
        self.opt(obj, key, |v, f, val| v.string(f, val, max, false))
    }

    fn parsed<T>(&mut self, field: &str, value: &Value) -> Option<T>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let s = self.string(field, value, MAX_STRING, false)?;
        match s.parse::<T>() {
            Ok(parsed) => Some(parsed),
            Err(err) => {
                self.problem(field, err.to_string());
                None
            }
        }
    }

    fn boolean(&mut self, field: &str, value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                self.problem(field, format!("must be true or false, not {}", kind(other)));
                None
            }
        }
    }

    fn object<'a>(&mut self, field: &str, value: &'a Value) -> Option<&'a Map<String, Value>> {
        match value.as_object() {
            Some(map) => Some(map),
            None => {
                self.problem(field, format!("must be an object, not {}", kind(value)));
                None
            }
        }
    }

    fn array<'a>(&mut self, field: &str, value: &'a Value, max: usize) -> Option<&'a Vec<Value>> {
        match value.as_array() {
            Some(items) if items.len() > max => {
                self.problem(field, format!("has {} entries; at most {max} are allowed", items.len()));
                None
            }
            Some(items) => Some(items),
            None => {
                self.problem(field, format!("must be an array, not {}", kind(value)));
                None
            }
        }
    }

    fn env_name(&mut self, field: &str, name: &str) -> Option<EnvName> {
        match check_env_name(name) {
            Ok(()) => Some(EnvName(name.to_owned())),
            Err(message) => {
                self.problem(field, message);
                None
            }
        }
    }

    /// A map of variable names to values (build args, test env).
    fn env_map(&mut self, field: &str, value: &Value, multiline: bool) -> Option<BTreeMap<EnvName, String>> {
        let map = self.object(field, value)?;
        if map.len() > MAX_MAP_ENTRIES {
            self.problem(field, format!("has {} entries; at most {MAX_MAP_ENTRIES} are allowed", map.len()));
            return None;
        }
        let mut out = BTreeMap::new();
        for (name, value) in map {
            let entry = format!("{field}.{}", name.chars().take(64).collect::<String>());
            let name = self.env_name(&entry, name);
            let value = match value {
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                other => self.string(&entry, other, MAX_STRING, multiline),
            };
            if let (Some(name), Some(value)) = (name, value) {
                out.insert(name, value);
            }
        }
        Some(out)
    }

    /// A positive integer, also accepted as a numeric string with an optional unit.
    fn amount(&mut self, field: &str, value: &Value, unit: Unit) -> Option<u32> {
        let number = match value {
            Value::Number(n) => n.as_u64().ok_or(()),
            Value::String(s) => unit.parse(s).ok_or(()),
            _ => Err(()),
        };
        match number {
            Ok(n) if n >= 1 && n <= unit.max() => Some(n as u32),
            Ok(n) => {
                self.problem(
                    field,
                    format!("{n} is out of range: must be between 1 and {} {}", unit.max(), unit.name()),
                );
                None
            }
            Err(()) => {
                self.problem(field, format!("must be a positive number of {} (e.g. {})", unit.name(), unit.example()));
                None
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Mhz,
    Mb,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Mhz => "MHz",
            Unit::Mb => "MB",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Unit::Mhz => "1000",
            Unit::Mb => "2048 or \"2GB\"",
        }
    }

    fn max(self) -> u64 {
        match self {
            Unit::Mhz => 512_000,
            Unit::Mb => 16 * 1024 * 1024,
        }
    }

    fn parse(self, text: &str) -> Option<u64> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, suffix) = text.split_at(split);
        let n: u64 = digits.parse().ok()?;
        let factor = match (self, suffix.trim().to_ascii_lowercase().as_str()) {
            (_, "") => 1,
            (Unit::Mhz, "mhz") => 1,
            (Unit::Mhz, "ghz") => 1000,
            (Unit::Mb, "m" | "mb" | "mib") => 1,
            (Unit::Mb, "g" | "gb" | "gib") => 1024,
            (Unit::Mb, "t" | "tb" | "tib") => 1024 * 1024,
            _ => return None,
        };
        n.checked_mul(factor)
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The rule of an environment variable or build-arg name.
pub(crate) fn check_env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok { Ok(()) } else { Err("must be a variable name: a letter or '_' followed by letters, digits and '_'".into()) }
}

fn repo_url(v: &mut Validator, field: &str, value: &Value) -> Option<RepoUrl> {
    let s = v.string(field, value, 2048, false)?;
    match check_repo_url(&s) {
        Ok(()) => Some(RepoUrl(s)),
        Err(message) => {
            v.problem(field, message);
            None
        }
    }
}

/// The rules of a repository URL.
pub(crate) fn check_repo_url(s: &str) -> Result<(), String> {
    if s.len() > 2048 {
        return Err("is longer than 2048 bytes".into());
    }
    if s.starts_with('-') {
        return Err("must not start with '-'".into());
    }
    if s.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace".into());
    }
    // RFC 3986's characters only (percent-encode the rest): a backtick, a brace or a quote in a
    // URL is no URL, and would only ever be a trap for whatever reads it next.
    if let Some(c) = s.chars().find(|&c| !is_uri_char(c)) {
        return Err(format!("must hold only URL characters (RFC 3986), not {c:?}: percent-encode it"));
    }
    if !s.contains("://") {
        return check_scp_url(s);
    }
    let url = url::Url::parse(s).map_err(|e| format!("is not a valid URL: {e}"))?;
    match url.scheme() {
        "https" | "http" | "ssh" | "git" => {
            let after_scheme = s.split_once("://").map_or("", |(_, rest)| rest);
            if after_scheme.starts_with('/') || url.host_str().is_none_or(str::is_empty) {
                return Err("has no host".into());
            }
            if url.username().starts_with('-') || url.host_str().is_some_and(|h| h.starts_with('-')) {
                return Err("must not have a user or host starting with '-' (ssh would read it as an option)".into());
            }
        }
        "file" => {
            if url.path().len() <= 1 {
                return Err("file:// URL has no path".into());
            }
        }
        other => {
            return Err(format!("has unsupported scheme {other:?}: use https, http, ssh, git or file"));
        }
    }
    if url.password().is_some() {
        return Err("must not carry a password: put credentials in a secret and name it in git_credentials_path".into());
    }
    if url.scheme().starts_with("http") && !url.username().is_empty() {
        return Err(
            "must not carry a user name: put credentials in a secret and name it in git_credentials_path".into()
        );
    }
    Ok(())
}

/// Unreserved, reserved or `%`: the characters a URI may hold.
fn is_uri_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)
}

/// `user@host:path`, the scp-like form git accepts for ssh.
fn check_scp_url(s: &str) -> Result<(), String> {
    let bad = || {
        "is not a repository URL: use https://host/path, ssh://user@host/path, user@host:path or file:///path"
            .to_owned()
    };
    let (user_host, path) = s.split_once(':').ok_or_else(bad)?;
    let (user, host) = user_host.split_once('@').ok_or_else(bad)?;
    let plain =
        |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !plain(user) || !plain(host) || host.starts_with('-') || path.is_empty() || path.starts_with('-') {
        return Err(bad());
    }
    Ok(())
}

fn git_ref(v: &mut Validator, field: &str, value: &Value) -> Option<GitRef> {
    let s = v.string(field, value, 255, false)?;
    match check_git_ref(&s) {
        Ok(()) => Some(GitRef(s)),
        Err(message) => {
            v.problem(field, message);
            None
        }
    }
}

/// The rules of a branch, tag or commit: git's own, and nothing git could read as an option.
pub(crate) fn check_git_ref(s: &str) -> Result<(), String> {
    let message = if s.is_empty() {
        "must not be empty".to_owned()
    } else if s.len() > 255 {
        "is longer than 255 bytes".to_owned()
    } else if s.starts_with('-') {
        "must not start with '-'".into()
    } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "must not contain whitespace".into()
    } else if s.contains("..") {
        "must not contain '..'".into()
    } else if let Some(c) = s.chars().find(|c| matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\')) {
        format!("must not contain {c:?}")
    } else if s.contains("@{") || s == "@" {
        "must not contain '@{' or be '@'".into()
    } else if s.starts_with('/') || s.ends_with('/') || s.contains("//") || s.ends_with('.') || s.ends_with(".lock") {
        "is not a valid git ref (no leading, trailing or double '/', and no trailing '.' or '.lock')".into()
    } else {
        return Ok(());
    };
    Err(message)
}

fn secret_path(v: &mut Validator, field: &str, value: &Value) -> Option<SecretPath> {
    v.parsed(field, value)
}

fn rel_path(v: &mut Validator, field: &str, value: &Value) -> Option<RelPath> {
    let s = v.string(field, value, 1024, false)?;
    match normalize_rel_path(&s) {
        Ok(path) => Some(RelPath(path)),
        Err(message) => {
            v.problem(field, message);
            None
        }
    }
}

/// A path relative to the repository root, normalized (`.` for the root), or why it is not one.
pub(crate) fn normalize_rel_path(s: &str) -> Result<String, String> {
    if s.len() > 1024 {
        return Err("is longer than 1024 bytes".into());
    }
    if s.starts_with('/') {
        return Err("must be relative to the repository root, not absolute".into());
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("must stay inside the repository ('..' leads out of it)".into());
                }
            }
            // A tool reading the path as an argument would take `--secret=...` for its own
            // option; no repository needs a file named like one.
            part if part.starts_with('-') => {
                return Err(format!("must not have a part starting with '-' ({part:?} would read as an option)"));
            }
            part => parts.push(part),
        }
    }
    Ok(if parts.is_empty() { ".".to_owned() } else { parts.join("/") })
}

fn image_tags(v: &mut Validator, field: &str, value: &Value) -> Option<Vec<Tag>> {
    // A single tag may be given as a string.
    let items: Vec<Value> = match value {
        Value::String(_) => vec![value.clone()],
        other => v.array(field, other, MAX_TAGS)?.clone(),
    };
    let mut tags: Vec<Tag> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(tag) = v.parsed::<Tag>(&format!("{field}[{i}]"), item)
            && !tags.contains(&tag)
        {
            tags.push(tag);
        }
    }
    Some(tags)
}

fn test_commands(v: &mut Validator, field: &str, value: &Value) -> Option<Vec<String>> {
    let items = v.array(field, value, MAX_TEST_COMMANDS)?;
    let mut commands = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let entry = format!("{field}[{i}]");
        if let Some(command) = v.string(&entry, item, MAX_COMMAND_LEN, true) {
            if command.trim().is_empty() {
                v.problem(entry, "must not be empty");
            } else {
                commands.push(command);
            }
        }
    }
    Some(commands)
}

fn timeout(v: &mut Validator, field: &str, value: &Value) -> Option<Duration> {
    let parsed = match value {
        Value::Number(n) => match n.as_u64() {
            Some(secs) => Ok(Duration::from_secs(secs)),
            None => Err("must be a positive whole number of seconds or a duration such as 30m".to_owned()),
        },
        Value::String(_) => {
            let s = v.string(field, value, 64, false)?;
            s.parse::<Duration>().map_err(|e| e.to_string())
        }
        other => Err(format!("must be a duration such as 30m, 90s or 1h30m, not {}", kind(other))),
    };
    match parsed {
        Ok(d) if d.as_secs() == 0 => v.problem(field, "must be positive"),
        Ok(d) if d > MAX_TIMEOUT => v.problem(field, format!("{d} is longer than the limit of {MAX_TIMEOUT}")),
        Ok(d) => return Some(d),
        Err(message) => v.problem(field, message),
    }
    None
}

fn resources(v: &mut Validator, field: &str, value: &Value) -> Option<Resources> {
    let map = v.object(field, value)?;
    let mut obj = Obj::nested(field, map);
    let resources = Resources {
        cpu: v.opt(&mut obj, "cpu", |v, f, val| v.amount(f, val, Unit::Mhz)),
        memory: v.opt(&mut obj, "memory", |v, f, val| v.amount(f, val, Unit::Mb)),
        disk: v.opt(&mut obj, "disk", |v, f, val| v.amount(f, val, Unit::Mb)),
    };
    v.unknown(obj);
    Some(resources)
}

fn resource_limits(v: &mut Validator, field: &str, value: &Value) -> Option<ResourceLimits> {
    let map = v.object(field, value)?;
    let mut obj = Obj::nested(field, map);
    let phase: Check<Resources> = resources;
    let limits = ResourceLimits {
        cpu: v.opt(&mut obj, "cpu", |v, f, val| v.amount(f, val, Unit::Mhz)),
        memory: v.opt(&mut obj, "memory", |v, f, val| v.amount(f, val, Unit::Mb)),
        disk: v.opt(&mut obj, "disk", |v, f, val| v.amount(f, val, Unit::Mb)),
        build: v.opt(&mut obj, "build", phase),
        test: v.opt(&mut obj, "test", phase),
        publish: v.opt(&mut obj, "publish", phase),
    };
    v.unknown(obj);
    Some(limits)
}

/// The nested `test` object: aliases of the flat fields, plus the options only it has.
#[derive(Default)]
struct NestedTest {
    commands: Option<Vec<String>>,
    entry_point: Option<bool>,
    timeout: Option<Duration>,
    options: TestOptions,
}

fn test_object(v: &mut Validator, field: &str, value: &Value) -> Option<NestedTest> {
    let map = v.object(field, value)?;
    let mut obj = Obj::nested(field, map);
    let nested = NestedTest {
        commands: v.opt(&mut obj, "commands", test_commands),
        entry_point: v.opt(&mut obj, "entry_point", |v, f, val| v.boolean(f, val)),
        timeout: v.opt(&mut obj, "timeout", timeout),
        options: TestOptions {
            env: v.opt(&mut obj, "env", |v, f, val| v.env_map(f, val, false)).unwrap_or_default(),
            vault_secrets: v.opt(&mut obj, "vault_secrets", vault_secrets).unwrap_or_default(),
            resource_limits: v.opt(&mut obj, "resource_limits", resources),
            constraints: v.opt(&mut obj, "constraints", constraints).unwrap_or_default(),
            gpu_required: v.opt(&mut obj, "gpu_required", |v, f, val| v.boolean(f, val)).unwrap_or(false),
        },
    };
    // Accepted for compatibility with the reference service, where they steer Nomad's Vault
    // stanza; jobforge derives policies itself, so a list is checked but not kept.
    v.opt(&mut obj, "vault_policies", |v, f, val| {
        for (i, item) in v.array(f, val, 20)?.clone().iter().enumerate() {
            v.parsed::<SecretPath>(&format!("{f}[{i}]"), item);
        }
        Some(())
    });
    v.unknown(obj);
    Some(nested)
}

fn vault_secrets(v: &mut Validator, field: &str, value: &Value) -> Option<Vec<VaultSecret>> {
    let items = v.array(field, value, 20)?;
    let mut secrets = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let entry = format!("{field}[{i}]");
        let Some(map) = v.object(&entry, item) else { continue };
        let mut obj = Obj::nested(&entry, map);
        let path = v.required(&mut obj, "path", secret_path);
        let fields = v.required(&mut obj, "fields", |v, f, val| {
            let map = v.object(f, val)?;
            if map.is_empty() {
                v.problem(f, "must name at least one field");
                return None;
            }
            let mut fields = BTreeMap::new();
            for (name, env) in map {
                let entry = format!("{f}.{}", name.chars().take(64).collect::<String>());
                let name_ok = !name.is_empty()
                    && name.len() <= 128
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
                if !name_ok {
                    v.problem(&entry, "secret field names are [A-Za-z0-9_.-]");
                    continue;
                }
                let env = v.string(&entry, env, 128, false).and_then(|env| v.env_name(&entry, &env));
                if let Some(env) = env {
                    fields.insert(name.clone(), env);
                }
            }
            Some(fields)
        });
        v.unknown(obj);
        if let (Some(path), Some(fields)) = (path, fields) {
            secrets.push(VaultSecret { path, fields });
        }
    }
    Some(secrets)
}

const OPERANDS: [&str; 15] = [
    "=",
    "!=",
    ">",
    ">=",
    "<",
    "<=",
    "regexp",
    "version",
    "semver",
    "is_set",
    "is_not_set",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
    "distinct_property",
];

fn constraints(v: &mut Validator, field: &str, value: &Value) -> Option<Vec<Constraint>> {
    let items = v.array(field, value, 20)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let entry = format!("{field}[{i}]");
        let Some(map) = v.object(&entry, item) else { continue };
        let mut obj = Obj::nested(&entry, map);
        let attribute = v.required(&mut obj, "attribute", |v, f, val| v.string(f, val, 256, false));
        let operand = v
            .opt(&mut obj, "operand", |v, f, val| {
                let op = v.string(f, val, 32, false)?;
                if OPERANDS.contains(&op.as_str()) {
                    Some(op)
                } else {
                    v.problem(f, format!("must be one of {}", OPERANDS.join(", ")));
                    None
                }
            })
            .unwrap_or_else(|| "=".into());
        let value = v.opt(&mut obj, "value", |v, f, val| v.string(f, val, 1024, false));
        v.unknown(obj);
        let needs_value = !matches!(operand.as_str(), "is_set" | "is_not_set");
        if needs_value && value.is_none() {
            v.problem(format!("{entry}.value"), format!("is required for operand {operand:?}"));
        }
        if let Some(attribute) = attribute {
            out.push(Constraint { attribute, operand, value });
        }
    }
    Some(out)
}

fn webhook(v: &mut Validator, obj: &mut Obj) -> Option<Webhook> {
    let url = v.opt(obj, "webhook_url", |v, f, val| {
        let s = v.string(f, val, 2048, false)?;
        match url::Url::parse(&s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(s),
            Ok(_) => {
                v.problem(f, "must be an http:// or https:// URL");
                None
            }
            Err(e) => {
                v.problem(f, format!("is not a valid URL: {e}"));
                None
            }
        }
    });
    let secret = v.opt_string(obj, "webhook_secret", 1024).map(crate::secret::SecretValue::new);
    let on_success = v.opt(obj, "webhook_on_success", |v, f, val| v.boolean(f, val)).unwrap_or(false);
    let on_failure = v.opt(obj, "webhook_on_failure", |v, f, val| v.boolean(f, val)).unwrap_or(false);
    let headers = v
        .opt(obj, "webhook_headers", |v, f, val| {
            let map = v.object(f, val)?;
            let mut headers = BTreeMap::new();
            for (name, value) in map.iter().take(MAX_MAP_ENTRIES) {
                let entry = format!("{f}.{}", name.chars().take(64).collect::<String>());
                let token = !name.is_empty()
                    && name.len() <= 128
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !token {
                    v.problem(&entry, "is not a valid HTTP header name");
                    continue;
                }
                if let Some(value) = v.string(&entry, value, 1024, false) {
                    headers.insert(name.clone(), value);
                }
            }
            Some(headers)
        })
        .unwrap_or_default();
    match url {
        Some(url) => Some(Webhook { url, secret, secret_path: None, on_success, on_failure, headers }),
        None => {
            if secret.is_some() || !headers.is_empty() {
                v.problem(obj.field("webhook_url"), "is required when webhook_secret or webhook_headers is given");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests;
