//! Reading the job a user submits: from a file, stdin or an inline YAML string, merged onto a
//! `--global` config, with `--image-tags` added.
//!
//! The merge is deep: mappings merge key by key, anything else in the job's own config
//! (lists, strings, numbers, an explicit `false` or `null`) replaces the global value. The
//! original CLI's merge was shallow and could never turn a global `true` off.

use std::io::{IsTerminal, Read};
use std::path::Path;

use serde_json::{Map, Value};

use crate::exit::UsageError;

/// Where the job's own config comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum Source<'a> {
    Stdin,
    File(&'a Path),
    Inline(&'a str),
}

impl<'a> Source<'a> {
    /// `-` or nothing is stdin; an existing file is read; text that looks like YAML is the
    /// config itself; anything else names a file that is not there.
    pub fn of(arg: Option<&'a str>) -> Result<Source<'a>, UsageError> {
        match arg {
            None | Some("-") => Ok(Source::Stdin),
            Some(text) if Path::new(text).is_file() => Ok(Source::File(Path::new(text))),
            Some(text)
                if text.contains(':') && (text.contains('\n') || text.contains(": ") || text.starts_with('{')) =>
            {
                Ok(Source::Inline(text))
            }
            Some(text) => {
                Err(UsageError(format!("no job file {text:?} (give a file, `-` for stdin, or the YAML itself)")))
            }
        }
    }

    fn read(&self) -> Result<(String, String), UsageError> {
        match self {
            Source::Stdin => {
                if std::io::stdin().is_terminal() {
                    return Err(UsageError("give the job: a file, `-` for stdin, or the YAML itself".into()));
                }
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| UsageError(format!("cannot read the job from stdin: {e}")))?;
                Ok(("stdin".into(), text))
            }
            Source::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| UsageError(format!("cannot read job file {}: {e}", path.display())))?;
                Ok((format!("job file {}", path.display()), text))
            }
            Source::Inline(text) => Ok(("the inline job".into(), (*text).to_owned())),
        }
    }
}

/// The job to submit.
pub fn load(source: &Source<'_>, global: Option<&Path>, image_tags: &[String]) -> Result<Value, UsageError> {
    let (name, text) = source.read()?;
    let own = parse(&name, &text)?;
    let mut job = match global {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| UsageError(format!("cannot read the global config {}: {e}", path.display())))?;
            let mut base = parse(&format!("global config {}", path.display()), &text)?;
            merge(&mut base, own);
            base
        }
        None => own,
    };
    add_tags(&mut job, image_tags);
    Ok(job)
}

/// A YAML (or JSON) mapping.
pub fn parse(name: &str, text: &str) -> Result<Value, UsageError> {
    let value: Value =
        serde_saphyr::from_str(text).map_err(|e| UsageError(format!("{name} is not valid YAML or JSON: {e}")))?;
    if !value.is_object() {
        return Err(UsageError(format!("{name} must hold a mapping of job fields")));
    }
    Ok(value)
}

/// `over` onto `base`: mappings key by key, everything else replaced.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => merge_maps(base, over),
        (base, over) => *base = over,
    }
}

fn merge_maps(base: &mut Map<String, Value>, over: Map<String, Value>) {
    for (key, value) in over {
        match base.get_mut(&key) {
            Some(existing) => merge(existing, value),
            None => {
                base.insert(key, value);
            }
        }
    }
}

/// `--image-tags`: added after the config's own tags, each once.
fn add_tags(job: &mut Value, tags: &[String]) {
    let tags: Vec<&String> = tags.iter().filter(|t| !t.trim().is_empty()).collect();
    let Some(map) = job.as_object_mut().filter(|_| !tags.is_empty()) else { return };
    let mut all: Vec<Value> = match map.remove("image_tags") {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => Vec::new(),
        Some(one) => vec![one],
    };
    for tag in tags {
        let tag = Value::String(tag.trim().to_owned());
        if !all.contains(&tag) {
            all.push(tag);
        }
    }
    map.insert("image_tags".into(), Value::Array(all));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_merge_is_deep_replaces_lists_and_lets_false_win() {
        let mut base = parse(
            "global",
            "registry_url: r:5000\nclear_cache: true\nimage_tags: [a, b]\nresource_limits: {memory: 1024, build: {cpu: 500, memory: 2048}}\ntest: {env: {A: '1', B: '2'}}\n",
        )
        .unwrap();
        let own = parse(
            "own",
            "image_name: app\nclear_cache: false\nimage_tags: [c]\nresource_limits: {build: {memory: 4096}}\ntest: {env: {B: '3'}}\n",
        )
        .unwrap();
        merge(&mut base, own);
        assert_eq!(
            base,
            json!({
                "registry_url": "r:5000", "image_name": "app", "clear_cache": false, "image_tags": ["c"],
                "resource_limits": {"memory": 1024, "build": {"cpu": 500, "memory": 4096}},
                "test": {"env": {"A": "1", "B": "3"}},
            })
        );
    }

    #[test]
    fn image_tags_from_the_flag_are_added_once() {
        let mut job = json!({"image_tags": ["v1"]});
        add_tags(&mut job, &["v1".into(), "latest".into(), " ".into()]);
        assert_eq!(job["image_tags"], json!(["v1", "latest"]));
        let mut job = json!({"image_tags": "solo"});
        add_tags(&mut job, &["v2".into()]);
        assert_eq!(job["image_tags"], json!(["solo", "v2"]));
        let mut job = json!({});
        add_tags(&mut job, &[]);
        assert_eq!(job, json!({}));
    }

    #[test]
    fn the_source_is_a_file_stdin_or_the_yaml_itself() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("job.yaml");
        std::fs::write(&file, "image_name: app\n").unwrap();
        let path = file.display().to_string();
        assert_eq!(Source::of(Some(&path)).unwrap(), Source::File(&file));
        assert_eq!(Source::of(None).unwrap(), Source::Stdin);
        assert_eq!(Source::of(Some("-")).unwrap(), Source::Stdin);
        assert_eq!(Source::of(Some("image_name: app")).unwrap(), Source::Inline("image_name: app"));
        assert_eq!(Source::of(Some("{\"image_name\": \"app\"}")).unwrap(), Source::Inline("{\"image_name\": \"app\"}"));
        assert!(Source::of(Some("missing.yaml")).unwrap_err().0.contains("no job file \"missing.yaml\""));
        assert!(parse("x", "- a\n- b\n").unwrap_err().0.contains("mapping"));
    }
}
